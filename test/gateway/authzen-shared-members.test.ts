import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryDecisions } from '../../src/decisions/query.js';
import { MAX_REFUSAL_MESSAGE } from '../../src/decide/refusals.js';
import { InvalidRequest } from '../../src/decide/request.js';
import { readEvaluations } from '../../src/gateway/authzen.js';
import { startGatewayVerdict, type GatewayVerdict } from './support.js';

// The items of one /access/v1/evaluations call take the top-level subject, action,
// resource and context they do not give themselves. Each item used to read and check
// them again: a megabyte of top-level context with a thousand `{}` items was walked a
// thousand times (18 s in which no other caller was answered), and an error naming a
// megabyte-long member was recorded a thousand times (1.1 GB of log from one call).

/** An object whose members are listed through `listed`, counting how often a reader walks it. */
function counted(target: Record<string, unknown>): { value: Record<string, unknown>; walks: () => number } {
  let walks = 0;
  const value = new Proxy(target, {
    ownKeys(object) {
      walks++;
      return Reflect.ownKeys(object);
    },
  });
  return { value, walks: () => walks };
}

describe('reading an evaluations request', () => {
  it('reads and checks each top-level member once, however many items take it', () => {
    const walksFor = (items: number): { context: number; properties: number; last: unknown } => {
      const context = counted({ region: 'eu', limits: Array.from({ length: 1000 }, (_, i) => i) });
      const properties = counted({ roles: ['data_scientist'], org: 'acme' });
      const read = readEvaluations({
        subject: { type: 'user', id: 'dana', properties: properties.value },
        resource: { type: 'model', id: 'fraud-v3' },
        context: context.value,
        // Each item gives only its own action: the subject, resource and context are the defaults.
        evaluations: Array.from({ length: items }, (_, i) => ({ action: { name: i % 2 === 0 ? 'predict' : 'read' } })),
      });
      if (read.kind !== 'many') throw new Error(`expected many, got ${read.kind}`);
      expect(read.questions).toHaveLength(items);
      return { context: context.walks(), properties: properties.walks(), last: read.questions.at(-1) };
    };
    const one = walksFor(1);
    const thousand = walksFor(1000);
    expect(thousand.last).toMatchObject({ principal: { id: 'dana', roles: ['data_scientist'], attributes: { org: 'acme', type: 'user' } }, action: 'read', context: { attributes: { region: 'eu' } } });
    expect(one.context).toBeGreaterThan(0);
    expect(thousand).toMatchObject({ context: one.context, properties: one.properties });
  });

  it('refuses every item that takes a bad top-level member, naming it once as sent, and walks it once', () => {
    const context = counted({ nested: { deep: [1, 2, Infinity] } });
    const read = readEvaluations({ subject: { type: 'user', id: 'dana' }, resource: { type: 'model', id: 'm' }, context: context.value, evaluations: Array.from({ length: 500 }, () => ({ action: { name: 'predict' } })) });
    if (read.kind !== 'many') throw new Error(`expected many, got ${read.kind}`);
    for (const question of read.questions) {
      expect(question).toBeInstanceOf(InvalidRequest);
      expect((question as InvalidRequest).error.message).toBe('context.nested.deep[2]: number must be finite (1e999 and the like overflow a double)');
    }
    // What is recorded of each refused item is what was read before the bad member.
    expect((read.questions[0] as InvalidRequest).request).toMatchObject({ principal: { id: 'dana' }, action: 'predict', resource: { type: 'model', id: 'm' } });
    expect(context.walks()).toBe(1);
  });

  it("names an item's own bad member by the item", () => {
    const read = readEvaluations({ subject: { type: 'user', id: 'dana' }, action: { name: 'predict' }, evaluations: [{ resource: { type: 'model', id: 'a' } }, { resource: { type: 'model', id: 'b', properties: { n: -Infinity } } }] });
    if (read.kind !== 'many') throw new Error(`expected many, got ${read.kind}`);
    expect(read.questions[0]).not.toBeInstanceOf(InvalidRequest);
    expect((read.questions[1] as InvalidRequest).error.message).toBe('evaluations[1].resource.properties.n: number must be finite (1e999 and the like overflow a double)');
  });
});

describe('a serving verdict given an evaluations call whose error would quote a megabyte', () => {
  let verdict: GatewayVerdict;

  beforeAll(async () => {
    verdict = await startGatewayVerdict();
  });
  afterAll(async () => {
    await verdict?.stop();
  });

  it('records and answers each item with the error cut short, and the whole call stays small', async () => {
    // An end user's own key: any authenticated caller can send this.
    const longName = 'a'.repeat(900_000);
    const body = `{"subject":{"type":"user","id":"dana"},"action":{"name":"predict"},"resource":{"type":"model","id":"fraud-detector-v3"},"context":{"${longName}":1e999},"evaluations":[${Array.from({ length: 1000 }, () => '{}').join(',')}]}`;
    const response = await fetch(`http://127.0.0.1:${verdict.verdict.httpPort}/access/v1/evaluations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${verdict.keys.dana}` },
      body,
    });
    const text = await response.text();
    expect(response.status).toBe(200);
    const answer = JSON.parse(text) as { evaluations: { decision: boolean; context: { decision_id: string; error?: { message: string } } }[] };
    expect(answer.evaluations).toHaveLength(1000);
    expect(answer.evaluations.every((e) => !e.decision)).toBe(true);
    expect(answer.evaluations[0]!.context.error?.message).toMatch(/^context\.a{40}…: number must be finite/);
    // A thousand answers of about a kilobyte each at most, not a thousand megabytes.
    expect(text.length).toBeLessThan(1000 * (MAX_REFUSAL_MESSAGE * 3 + 1000));
    const rows = queryDecisions(verdict.db, { principalId: 'dana', limit: 2000 });
    expect(rows).toHaveLength(1000);
    for (const row of rows) {
      expect(row.reason).toBe('DENIED_INVALID_REQUEST');
      expect(row.errors[0]!.message.length).toBeLessThanOrEqual(MAX_REFUSAL_MESSAGE + 1);
    }
  }, 60_000);
});
