import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ReplayReport } from '../../src/analysis/replay-report.js';
import { runReplay } from '../../src/cli/replay.js';
import type { DecisionRecord } from '../../src/decisions/record.js';
import { startWriterThread } from '../../src/decisions/writer-thread.js';
import type { Decision, Effect } from '../../src/types.js';
import { defineConformanceSuite } from './suite.js';

/**
 * Replay as a way to a decision: every case's request is recorded twice in a real
 * log (through the writer thread), once as allowed and once as denied, and
 * `verdict replay` runs over it with the set's directory. Which of the two flips
 * gives the effect; the rule group the flip is counted under gives the reason and
 * the deciding rules (`denies`, `erred`, `no longer allows` with no rule, `allows`).
 * Replay reports no condition error messages, so a denial by error lists its
 * rules' errors without one.
 */
defineConformanceSuite(
  'verdict replay',
  async (set) => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-conformance-replay-'));
    const db = join(dir, 'decisions.db');
    const log = await startWriterThread({ path: db, mode: 'durable', checkpoints: null }, null);
    const ids = new Map<string, { allowed: string; denied: string }>();
    const now = Date.now();
    let n = 0;
    const record = (key: string, testCase: (typeof set.cases)[number], effect: Effect): DecisionRecord => {
      n++;
      const r = testCase.request;
      return {
        decisionId: `${key}-${effect}`,
        time: now + n,
        caller: 'conformance',
        requestId: null,
        principalId: r.principal.id,
        action: r.action,
        resourceType: r.resource.type,
        resourceId: r.resource.id,
        effect,
        reason: effect === 'ALLOW' ? 'ALLOWED_BY_RULE' : 'DENIED_BY_DEFAULT',
        ruleIds: [],
        errors: [],
        policyVersion: 'recorded',
        request: { principal: { roles: r.principal.roles, attributes: r.principal.attributes }, resource: { attributes: r.resource.attributes }, context: { attributes: r.context.attributes } },
        latencyUs: 1,
      };
    };
    const keyOf = (c: (typeof set.cases)[number]): string => `${c.file}:${c.line}`;
    for (const c of set.cases) {
      const key = keyOf(c);
      ids.set(key, { allowed: `${key}-ALLOW`, denied: `${key}-DENY` });
      await log.append(record(key, c, 'ALLOW'));
      await log.append(record(key, c, 'DENY'));
    }
    await log.close();
    let stdout = '';
    let stderr = '';
    const code = await runReplay(['--db', db, '--policies', set.dir, '--json', '--examples', '100000', '--workers', '1'], { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
    if (code !== 0 && code !== 1) throw new Error(`replay exited ${code}: ${stderr}`);
    const report = JSON.parse(stdout) as ReplayReport;
    return {
      version: report.candidate.version,
      decide: async (testCase): Promise<Decision> => {
        const { allowed, denied } = ids.get(keyOf(testCase)) as { allowed: string; denied: string };
        const toDeny = report.flips.ALLOW_TO_DENY.byRule.filter((g) => g.examples.includes(allowed));
        const toAllow = report.flips.DENY_TO_ALLOW.byRule.filter((g) => g.examples.includes(denied));
        if (toAllow.length > 0 && toDeny.length === 0) {
          return { effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: toAllow.map((g) => g.rule), errors: [], policyVersion: report.candidate.version };
        }
        if (toDeny.length === 0 || toAllow.length > 0) throw new Error(`replay flipped ${toDeny.length > 0 ? 'both' : 'neither'} of the case's rows`);
        const role = toDeny[0]?.role;
        if (toDeny.some((g) => g.role !== role)) throw new Error(`one flip explained by rules in several roles: ${JSON.stringify(toDeny)}`);
        if (role === 'no longer allows') return { effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: [], errors: [], policyVersion: report.candidate.version };
        const ruleIds = toDeny.map((g) => g.rule);
        return role === 'erred'
          ? { effect: 'DENY', reason: 'DENIED_BY_ERROR', ruleIds, errors: ruleIds.map((ruleId) => ({ ruleId, message: '' })), policyVersion: report.candidate.version }
          : { effect: 'DENY', reason: 'DENIED_BY_RULE', ruleIds, errors: [], policyVersion: report.candidate.version };
      },
      close: async () => rmSync(dir, { recursive: true, force: true }),
    };
  },
  {
    // A gateway case's question comes from its route; replay replays the question a
    // route made, recorded (the routes are the gateway's, and their conformance with it).
    cannotCarry: (testCase) => (testCase.http !== undefined ? 'replay replays the recorded question, not the HTTP request a route maps' : null),
  },
);
