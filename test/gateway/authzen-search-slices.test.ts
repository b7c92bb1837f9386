import { afterAll, describe, expect, it } from 'vitest';
import { DecidingTurns, InvalidRequest } from '../../src/decide/index.js';
import { MAX_SEARCH_WORK_PER_PAGE, PageTokens, actionsOf, questionValues, readSearch, searchPage, typeListsKept } from '../../src/gateway/authzen-search.js';
import type { Decision, DecisionRequest } from '../../src/types.js';
import { loadFiles, removeTempDirs, rulesDoc } from '../helpers/policies.js';

afterAll(removeTempDirs);

const DOCS = 300;
const { policySet } = loadFiles({
  'rules.yaml': rulesDoc([
    { id: 'readers', effect: 'allow', actions: ['read'], resource: { type: 'doc' } },
    { id: 'anyone-lists', effect: 'allow', actions: ['list'] },
  ]),
  'resources.yaml': { kind: 'resources', resources: Array.from({ length: DOCS }, (_, i) => ({ type: 'doc', id: `d${i}` })) },
});

describe('a search page', () => {
  it('gives the event loop turns between its candidates when deciding them takes long', async () => {
    const query = readSearch('resource', { subject: { type: 'user', id: 'rita' }, action: { name: 'read' }, resource: { type: 'doc' } }, 'api-key:rita');
    if (query instanceof InvalidRequest) throw new Error(query.error.message);
    let asked = 0;
    // A candidate that takes a tenth of a millisecond to decide, as one whose condition runs to its budget would.
    const slowDeny = (_request: DecisionRequest): Decision => {
      asked++;
      for (const until = performance.now() + 0.1; performance.now() < until; );
      return { effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: [], errors: [], policyVersion: policySet.version };
    };
    let askedAtFirstTurn = -1;
    setImmediate(() => (askedAtFirstTurn = asked));
    const page = await searchPage(query, policySet, slowDeny, new PageTokens(), new DecidingTurns().forCall('rita'));
    expect(page.details).toMatchObject({ kind: 'resource', scanned: DOCS, count: 0 });
    // Another caller's turn came after some candidates and before the last.
    expect(askedAtFirstTurn).toBeGreaterThan(0);
    expect(askedAtFirstTurn).toBeLessThan(DOCS);
  });
});

describe('the work of a search page', () => {
  // Each candidate is decided as a check of the whole question: its size times the candidates is the page's work.
  const countingDeny = () => {
    const asked: DecisionRequest[] = [];
    const decide = (request: DecisionRequest): Decision => (asked.push(request), { effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: [], errors: [], policyVersion: policySet.version });
    return { asked, decide };
  };

  it('is bounded by candidates × question size: a question of 9,000 properties pages after a few candidates, and the pages go on where they left off', async () => {
    const properties = Object.fromEntries(Array.from({ length: 9000 }, (_, i) => [`k${i}`, `v${i}`]));
    const body = { subject: { type: 'user', id: 'rita' }, action: { name: 'read' }, resource: { type: 'doc', properties } };
    const query = readSearch('resource', body, 'api-key:rita');
    if (query instanceof InvalidRequest) throw new Error(query.error.message);
    const tokens = new PageTokens();
    const first = countingDeny();
    const page = await searchPage(query, policySet, first.decide, tokens, new DecidingTurns().forCall('rita'));
    const size = questionValues(query.question);
    expect(size).toBeGreaterThan(9000);
    // The values gone through, counted: within the page's work budget, and not all 300 candidates.
    const work = first.asked.reduce((sum, request) => sum + questionValues(request), 0);
    expect(work).toBeLessThanOrEqual(MAX_SEARCH_WORK_PER_PAGE);
    expect(first.asked.length).toBe(Math.floor(MAX_SEARCH_WORK_PER_PAGE / size));
    expect(page.details).toMatchObject({ from: 0, scanned: first.asked.length, more: true });
    const next = readSearch('resource', { ...body, page: { token: page.result.page.next_token } }, 'api-key:rita');
    if (next instanceof InvalidRequest) throw new Error(next.error.message);
    const second = countingDeny();
    const following = await searchPage(next, policySet, second.decide, tokens, new DecidingTurns().forCall('rita'));
    expect(following.details).toMatchObject({ from: first.asked.length, scanned: first.asked.length });
    expect(second.asked[0]!.resource.id).toBe(`d${first.asked.length}`);
  });

  it('leaves a small question its 10,000 candidates a page', async () => {
    const query = readSearch('resource', { subject: { type: 'user', id: 'rita' }, action: { name: 'read' }, resource: { type: 'doc' } }, 'api-key:rita');
    if (query instanceof InvalidRequest) throw new Error(query.error.message);
    const counted = countingDeny();
    const page = await searchPage(query, policySet, counted.decide, new PageTokens(), new DecidingTurns().forCall('rita'));
    expect(counted.asked).toHaveLength(DOCS);
    expect(page.details).toMatchObject({ scanned: DOCS, more: false });
  });
});

describe('searches naming resource types the policies do not know', () => {
  // A cache keyed by the caller's types grew about 8 KiB a search (a new 8,000-character type
  // each time) until the heap ran out; one end user's key could do it.
  it('keep nothing per such type, and answer as for any type no rule names', async () => {
    const decideDeny = (_request: DecisionRequest): Decision => ({ effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: [], errors: [], policyVersion: policySet.version });
    for (const kind of ['resource', 'action'] as const) {
      const query = readSearch(kind, { subject: { type: 'user', id: 'rita' }, action: { name: 'read' }, resource: kind === 'action' ? { type: 'doc', id: 'd1' } : { type: 'doc' } }, 'api-key:rita');
      if (query instanceof InvalidRequest) throw new Error(query.error.message);
      await searchPage(query, policySet, decideDeny, new PageTokens(), new DecidingTurns().forCall('rita'));
    }
    const kept = typeListsKept(policySet);
    expect(kept).toBe(2);
    for (let i = 0; i < 500; i++) {
      const type = `unknown-${i}-${'x'.repeat(100)}`;
      for (const kind of ['resource', 'action'] as const) {
        const query = readSearch(kind, { subject: { type: 'user', id: 'rita' }, action: { name: 'read' }, resource: kind === 'action' ? { type, id: 'r1' } : { type } }, 'api-key:rita');
        if (query instanceof InvalidRequest) throw new Error(query.error.message);
        const page = await searchPage(query, policySet, decideDeny, new PageTokens(), new DecidingTurns().forCall('rita'));
        expect(page.details).toMatchObject({ kind, scanned: kind === 'resource' ? 0 : 1 });
      }
    }
    expect(typeListsKept(policySet)).toBe(kept);
    expect(actionsOf(policySet, 'doc')).toEqual(['list', 'read']);
    expect(actionsOf(policySet, 'unknown-1')).toEqual(['list']);
  });
});
