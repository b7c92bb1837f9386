import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runDecisions } from '../../src/cli/decisions.js';
import { parseTime } from '../../src/cli/time.js';
import type { DecisionRecord } from '../../src/decisions/record.js';
import { openLog, record, tempDb, tempDir } from './helpers.js';

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runDecisions(argv, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

let file: string;
let fixtures: DecisionRecord[];
const now = Date.now();

beforeAll(async () => {
  file = tempDb();
  fixtures = [
    record({ time: now - 3 * 3_600_000, principalId: 'dana', action: 'predict', resourceType: 'model', resourceId: 'fraud-v3', effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: ['allow-ds', 'allow-org'] }),
    record({ time: now - 30 * 60_000, principalId: 'erin', action: 'download', resourceType: 'model', resourceId: 'fraud-v3', effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: [] }),
    record({ time: now - 60_000, principalId: 'mallory\u001b[31m', action: 'predict', resourceType: 'model', resourceId: 'churn:v1', effect: 'DENY', reason: 'DENIED_BY_RATE_LIMIT', ruleIds: ['limit'] }),
  ];
  const log = await openLog(file);
  for (const r of fixtures) await log.append(r);
  await log.close();
});

describe('verdict decisions', () => {
  it('prints an aligned table, newest first, with control characters neutralised', async () => {
    const { code, stdout, stderr } = await run('--db', file);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    const lines = stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^TIME\s+DECISION ID\s+PRINCIPAL\s+ACTION\s+RESOURCE\s+EFFECT\s+REASON\s+RULES$/);
    expect(lines[1]).toContain(fixtures[2]!.decisionId);
    expect(lines[1]).toContain('mallory?[31m');
    expect(lines[1]).toContain('model:churn:v1');
    expect(lines[2]).toMatch(/DENY\s+DENIED_BY_DEFAULT\s+-$/);
    expect(lines[3]).toContain(new Date(fixtures[0]!.time).toISOString());
    expect(lines[3]).toMatch(/allow-ds,allow-org$/);
    // Columns line up: every row's EFFECT starts where the header's does.
    const column = lines[0]!.indexOf('EFFECT');
    for (const line of lines.slice(1)) expect(line.slice(column)).toMatch(/^(ALLOW|DENY) /);
    expect(stdout).not.toContain('\u001b');
  });

  it('prints one JSON object per line with --json', async () => {
    const { code, stdout } = await run('--db', file, '--json');
    expect(code).toBe(0);
    const objects = stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as { decisionId: string; ruleIds: string[]; request: unknown });
    expect(objects.map((o) => o.decisionId)).toEqual([fixtures[2]!.decisionId, fixtures[1]!.decisionId, fixtures[0]!.decisionId]);
    expect(objects[2]).toMatchObject({ ruleIds: ['allow-ds', 'allow-org'], request: fixtures[0]!.request, seq: 1 });
  });

  it('applies filters', async () => {
    const ids = async (...argv: string[]): Promise<string[]> =>
      (await run('--db', file, '--json', ...argv)).stdout.trimEnd().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { decisionId: string }).decisionId);
    const [a, b, c] = fixtures.map((f) => f.decisionId);
    expect(await ids('--principal', 'dana')).toEqual([a]);
    expect(await ids('--resource', 'model:fraud-v3')).toEqual([b, a]);
    expect(await ids('--resource', 'model:churn:v1')).toEqual([c]);
    expect(await ids('--resource', 'model')).toEqual([c, b, a]);
    expect(await ids('--action', 'download')).toEqual([b]);
    expect(await ids('--effect', 'deny')).toEqual([c, b]);
    expect(await ids('--reason', 'denied_by_rate_limit')).toEqual([c]);
    expect(await ids('--since', '1h')).toEqual([c, b]);
    expect(await ids('--until', '10m')).toEqual([b, a]);
    expect(await ids('--since', new Date(now - 3_600_000).toISOString())).toEqual([c, b]);
    expect(await ids('--id', b!)).toEqual([b]);
    expect(await ids('--limit', '1')).toEqual([c]);
    expect(await ids('--rule', 'allow-org')).toEqual([a]);
    expect(await ids('--rule', 'limit')).toEqual([c]);
    // A whole rule id only: neither a prefix nor a substring of one matches.
    expect(await ids('--rule', 'allow')).toEqual([]);
    expect(await ids('--rule', 'allow-ds', '--effect', 'deny')).toEqual([]);
  });

  it('says so when nothing matches, and when the limit cut the list', async () => {
    expect((await run('--db', file, '--principal', 'nobody')).stdout).toBe('No decisions match.\n');
    const limited = await run('--db', file, '--limit', '2');
    expect(limited.code).toBe(0);
    expect(limited.stderr).toContain('the newest 2');
  });

  it('prints help', async () => {
    const { code, stdout } = await run('--help');
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: verdict decisions');
    expect(stdout).toContain('--since TIME');
  });

  it('exits 2 on usage errors, with one line on stderr', async () => {
    for (const argv of [
      ['--bogus'],
      ['--db', file, 'extra'],
      ['--db', file, '--since', 'yesterday'],
      ['--db', file, '--until', '2025-02-30'],
      ['--db', file, '--effect', 'maybe'],
      ['--db', file, '--reason', 'because'],
      ['--db', file, '--limit', '0'],
      ['--db', file, '--resource', ':x'],
      ['--db'],
    ]) {
      const { code, stdout, stderr } = await run(...argv);
      expect(code, argv.join(' ')).toBe(2);
      expect(stdout).toBe('');
      expect(stderr.trimEnd().split('\n'), argv.join(' ')).toHaveLength(1);
      expect(stderr).toMatch(/^verdict decisions: /);
    }
  });

  it('exits 4 with one clear line when the database does not exist or is not a log', async () => {
    const missing = path.join(tempDir(), 'nope.db');
    const result = await run('--db', missing);
    expect(result).toEqual({ code: 4, stdout: '', stderr: `verdict decisions: no decision log at ${missing}\n` });
    const notALog = await run('--db', tempDir());
    expect(notALog.code).toBe(4);
    expect(notALog.stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});

describe('parseTime', () => {
  const at = Date.UTC(2025, 5, 1, 12, 0, 0);
  it('accepts durations ago', () => {
    expect(parseTime('--since', '90s', at)).toBe(at - 90_000);
    expect(parseTime('--since', '15m', at)).toBe(at - 15 * 60_000);
    expect(parseTime('--since', '2h', at)).toBe(at - 2 * 3_600_000);
    expect(parseTime('--since', '7d', at)).toBe(at - 7 * 86_400_000);
    expect(parseTime('--since', '2w', at)).toBe(at - 14 * 86_400_000);
  });
  it('accepts ISO 8601, UTC unless an offset is given', () => {
    expect(parseTime('--since', '2025-06-01', at)).toBe(Date.UTC(2025, 5, 1));
    expect(parseTime('--since', '2025-06-01T14:30', at)).toBe(Date.UTC(2025, 5, 1, 14, 30));
    expect(parseTime('--since', '2025-06-01 14:30:05', at)).toBe(Date.UTC(2025, 5, 1, 14, 30, 5));
    expect(parseTime('--since', '2025-06-01T14:30:00.123456Z', at)).toBe(Date.UTC(2025, 5, 1, 14, 30, 0, 123));
    expect(parseTime('--since', '2025-06-01T14:30+02:00', at)).toBe(Date.UTC(2025, 5, 1, 12, 30));
    expect(parseTime('--since', '2025-06-01T14:30+0200', at)).toBe(Date.UTC(2025, 5, 1, 12, 30));
  });
  it('rejects anything else', () => {
    for (const text of ['', 'now', '15', '15x', '-1h', '2025-13-01', '2025-02-30', '01/06/2025']) {
      expect(() => parseTime('--since', text, at), text).toThrow(expect.objectContaining({ code: 'USAGE' }) as Error);
    }
  });
  it('says which day does not exist, and refuses a duration reaching back before 1970', () => {
    expect(() => parseTime('--until', '2025-02-30T10:00:00Z', at)).toThrow('--until: 2025-02-30 is not a day of the calendar');
    expect(() => parseTime('--since', '999999999w', at)).toThrow('--since 999999999w reaches back before 1970');
    expect(parseTime('--since', '2024-02-29', at)).toBe(Date.UTC(2024, 1, 29));
    // Years 0–99 are years 0–99 (Date.UTC would read them as 1900–1999, where 1900-02-29 does not exist).
    expect(parseTime('--since', '0000-02-29', at)).toBe(Date.parse('0000-02-29T00:00:00Z'));
  });
});

describe('verdict decisions --json and the details of a decision', () => {
  it('shows details where a decision has them, and nothing where it has none', async () => {
    const db = tempDb();
    const detailed = record({ details: { http: { method: 'POST', path: '/v1/models/fraud-v3/predict' } } });
    const plain = record({ time: detailed.time + 1 });
    const log = await openLog(db);
    await log.append(detailed);
    await log.append(plain);
    await log.close();
    const { code, stdout } = await run('--db', db, '--json');
    expect(code).toBe(0);
    const [second, first] = stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(first).toMatchObject({ decisionId: detailed.decisionId, details: { http: { method: 'POST', path: '/v1/models/fraud-v3/predict' } } });
    expect(second?.decisionId).toBe(plain.decisionId);
    expect(second).not.toHaveProperty('details');
  });
});

describe('verdict decisions and invisible characters', () => {
  it('escapes Unicode format characters (zero-width, bidi overrides) and line separators in the table', async () => {
    const db = tempDb();
    const hidden = record({ principalId: 'da\u200Bna', action: 'pre\u202Edict', resourceType: 'model', resourceId: 'fraud\u2066-v3\u2069\u2028x', ruleIds: ['r\u00ADule', 'tag\u{E0041}'] });
    // Characters that render as nothing or as a blank: a variation selector, the combining grapheme joiner, a no-break space, a Hangul filler.
    const blank = record({ principalId: 'd\uFE00a\u034Fna\u00A0\u3164' });
    const log = await openLog(db);
    await log.append(hidden);
    await log.append(blank);
    await log.close();
    const { code, stdout } = await run('--db', db);
    expect(code).toBe(0);
    expect(stdout).toContain('d\\u{FE00}a\\u{034F}na\\u{00A0}\\u{3164}');
    expect(stdout).toContain('da\\u{200B}na');
    expect(stdout).toContain('pre\\u{202E}dict');
    expect(stdout).toContain('model:fraud\\u{2066}-v3\\u{2069}\\u{2028}x');
    expect(stdout).toContain('r\\u{00AD}ule,tag\\u{E0041}');
    expect(stdout).not.toMatch(/[\p{Cf}\u2028\u2029]/u);
    // The table's columns still line up with the escapes in them.
    const lines = stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    for (const line of lines.slice(1)) expect(line.slice(lines[0]!.indexOf('EFFECT'))).toMatch(/^(ALLOW|DENY) /);
    // --json keeps the values exactly as recorded.
    const json = (await run('--db', db, '--json')).stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as { principalId: string });
    expect(json.map((row) => row.principalId).sort()).toEqual(['d\uFE00a\u034Fna\u00A0\u3164', 'da\u200Bna'].sort());
  });
});
