import { describe, expect, it } from 'vitest';
import { newDecisionId } from '../../src/decide/decision-id.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('decision ids', () => {
  it('are UUIDv7 whose first 48 bits are the Unix milliseconds given', () => {
    const ms = 0x0190f5c27a3e;
    const id = newDecisionId(ms);
    expect(id).toMatch(UUID_V7);
    expect(id.slice(0, 13)).toBe('0190f5c2-7a3e');
    expect(newDecisionId(0).slice(0, 13)).toBe('00000000-0000');
    expect(newDecisionId(2 ** 48 - 1).slice(0, 13)).toBe('ffffffff-ffff');
  });

  it('differ from each other and sort by time across the random pool refills', () => {
    const ids: string[] = [];
    for (let i = 0; i < 5_000; i++) ids.push(newDecisionId(1_733_550_000_000 + Math.floor(i / 7)));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(UUID_V7);
    expect([...ids].sort((a, b) => a.slice(0, 13).localeCompare(b.slice(0, 13)))).toEqual(ids);
  });
});
