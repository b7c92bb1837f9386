// Replay decides a request as its caller sent it, with the candidate's own directory
// filling it in, as a server of the candidate would (and as shadow mode does): the log
// records the request after the directory filled it in, so without undoing that a
// candidate that drops a principal from its directory was asked with the old
// directory's roles, and a DENY -> ALLOW it causes went unseen.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Replayer, type ReplayRow } from '../../src/analysis/replay.js';
import type { ReplayReport } from '../../src/analysis/replay-report.js';
import { runReplay } from '../../src/cli/replay.js';
import { decisionRecord } from '../../src/decide/record.js';
import { getDecision } from '../../src/decisions/query.js';
import { SensitiveAttributes } from '../../src/decisions/sensitive.js';
import { startWriterThread } from '../../src/decisions/writer-thread.js';
import type { DecisionRequest } from '../../src/types.js';
import { loadValid, makeTempDir, removeTempDirs, writeFiles } from '../helpers/policies.js';
import { checkRequest, ensureBuilt, startVerdict, verdictClient, type VerdictClient, type VerdictProcess } from '../helpers/verdict-process.js';

const ROLES = `kind: roles
roles:
  - name: analyst
    permissions:
      - id: read-models
        actions: [read]
        resources: [model]
  - name: admin
    inherits: [analyst]
    permissions:
      - id: delete-models
        actions: [delete]
        resources: [model]
`;
const LEO_AND_MAYA = `kind: principals
principals:
  - id: leo
    roles: [analyst]
    attributes: { employment: contractor }
  - id: maya
    roles: [analyst]
    attributes: { employment: employee }
`;
const MAYA_ONLY = `kind: principals
principals:
  - id: maya
    roles: [analyst]
    attributes: { employment: employee }
`;
/** The same directory, but the roles a request sends win. */
const REQUEST_ROLES_WIN = `kind: principals
precedence: { roles: request }
principals:
  - id: leo
    roles: [analyst]
    attributes: { employment: contractor }
`;
/** Contractors may not read; the directory says leo is one, whatever the request says. */
const NO_CONTRACTOR_READS = `kind: rules
rules:
  - id: no-contractor-reads
    effect: deny
    actions: [read]
    principal: { attributes: { employment: contractor } }
`;

interface Run {
  readonly code: number;
  readonly report: ReplayReport;
}

async function replay(...argv: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runReplay([...argv, '--json', '--examples', '100'], { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  if (code !== 0 && code !== 1) throw new Error(`replay exited ${code}: ${stderr}`);
  return { code, report: JSON.parse(stdout) as ReplayReport };
}

async function replayText(...argv: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = '';
  const code = await runReplay(argv, { stdout: (s) => (stdout += s), stderr: () => undefined });
  return { code, stdout };
}

let live: string;
let candidate: string;
let requestRolesWin: string;
let contractorsDenied: string;

beforeAll(() => {
  const root = makeTempDir('verdict-replay-directory-');
  live = writeFiles(join(root, 'live'), { 'roles.yaml': ROLES, 'principals.yaml': LEO_AND_MAYA });
  candidate = writeFiles(join(root, 'candidate'), { 'roles.yaml': ROLES, 'principals.yaml': MAYA_ONLY });
  requestRolesWin = writeFiles(join(root, 'request-roles'), { 'roles.yaml': ROLES, 'principals.yaml': REQUEST_ROLES_WIN });
  contractorsDenied = writeFiles(join(root, 'contractors'), { 'roles.yaml': ROLES, 'principals.yaml': LEO_AND_MAYA, 'rules.yaml': NO_CONTRACTOR_READS });
});
afterAll(() => removeTempDirs());

describe('replay of a log a real server wrote, directory facts filled in', () => {
  let server: VerdictProcess;
  let client: VerdictClient;
  let db: string;
  let claimedAdmin: string;
  let sentAttribute: string;

  beforeAll(async () => {
    ensureBuilt();
    db = join(makeTempDir('verdict-replay-directory-db-'), 'd.db');
    server = await startVerdict({ policies: live, db, args: ['--shadow-policies', candidate] });
    client = verdictClient(server.grpcPort);
    const check = (principal: { id: string; roles: string[]; attributes?: Record<string, unknown> }, action: string) =>
      client.call<{ effect: string; decisionId: string }>('Authorization', 'Check', checkRequest({ principal, action, resource: { type: 'model', id: 'm' } }));
    // leo claims admin; the live directory decides him as an analyst.
    const denied = await check({ id: 'leo', roles: ['admin'] }, 'delete');
    expect(denied.effect).toBe('EFFECT_DENY');
    claimedAdmin = denied.decisionId;
    // leo says he is an employee; the live directory says contractor.
    const read = await check({ id: 'leo', roles: [], attributes: { employment: 'employee' } }, 'read');
    expect(read.effect).toBe('EFFECT_ALLOW');
    sentAttribute = read.decisionId;
  }, 60_000);
  afterAll(async () => {
    client?.close();
    expect(await server?.stop()).toBe(0);
  });

  it('records the request as decided and, beside it, what the directory replaced', () => {
    const row = getDecision(db, claimedAdmin)!;
    expect(row.request).toMatchObject({ principal: { roles: ['analyst'], attributes: { employment: 'contractor' } } });
    expect(row.details).toMatchObject({ directory: { principal: { roles: 'directory', ignoredRoles: ['admin'], sent: { roles: ['admin'] } } } });
    // Shadow mode asks the candidate the request as sent: leo is unknown there, and his admin claim allows.
    expect(row.details).toMatchObject({ shadow: { effect: 'ALLOW', ruleIds: ['role:admin:delete-models'] } });
    expect(getDecision(db, sentAttribute)!.details).toMatchObject({ directory: { principal: { overridden: ['employment'], sent: { attributes: { employment: 'employee' } } } } });
  });

  it('shows the DENY -> ALLOW of a candidate without leo in its directory, as shadow mode did', async () => {
    const run = await replay('--db', db, '--policies', candidate);
    expect(run.code).toBe(1);
    expect(run.report.flips.DENY_TO_ALLOW.examples).toEqual([claimedAdmin]);
    expect(run.report.flips.DENY_TO_ALLOW.byRule).toMatchObject([{ rule: 'role:admin:delete-models', role: 'allows' }]);
    expect(run.report.notReplayable.directoryFactsLost.count).toBe(0);
  });

  it('shows the DENY -> ALLOW of a candidate whose directory lets the request\'s roles win', async () => {
    const run = await replay('--db', db, '--policies', requestRolesWin);
    expect(run.report.flips.DENY_TO_ALLOW.examples).toEqual([claimedAdmin]);
  });

  it('completes the request again with the candidate\'s own directory: an overridden attribute is the directory\'s once more', async () => {
    // The request sent employment: employee; the candidate's directory (like the live one) says contractor, and denies.
    const run = await replay('--db', db, '--policies', contractorsDenied);
    expect(run.report.flips.ALLOW_TO_DENY.examples).toEqual([sentAttribute]);
    // Replayed against the live set itself, nothing flips.
    const same = await replay('--db', db, '--policies', live);
    expect(same.code).toBe(0);
    expect(same.report.replayed).toBe(2);
    expect(same.report.unchanged).toBe(2);
  });
});

describe('rows recorded before the log kept what the directory replaced', () => {
  let db: string;
  let oldRow: string;

  beforeAll(async () => {
    db = join(makeTempDir('verdict-replay-directory-old-'), 'd.db');
    const writer = await startWriterThread({ path: db, mode: 'durable', checkpoints: null }, null);
    const request: DecisionRequest = {
      principal: { id: 'leo', roles: ['analyst'], attributes: { employment: 'contractor' } },
      action: 'delete',
      resource: { type: 'model', id: 'm', attributes: {} },
      context: { attributes: {} },
    };
    const record = decisionRecord(
      request,
      { effect: 'DENY', reason: 'DENIED_BY_DEFAULT', ruleIds: [], errors: [], policyVersion: 'sha256:old' },
      { caller: 'ipv4:127.0.0.1:5000', requestId: null },
      Date.now(),
      10,
      // As the server wrote it before `sent`: the admin claim is kept, what else was sent is not.
      { directory: { principal: { roles: 'directory', ignoredRoles: ['admin'], attributes: ['employment'] } } },
    );
    oldRow = record.decisionId;
    await writer.append(record);
    await writer.close();
  });

  it('are counted as not replayable where the candidate needs the lost facts, and fail the gate unless accepted', async () => {
    const run = await replay('--db', db, '--policies', candidate);
    expect(run.report.replayed).toBe(0);
    expect(run.report.unchanged).toBe(0);
    expect(run.report.notReplayable.directoryFactsLost).toEqual({ count: 1, examples: [oldRow] });
    expect(run.code).toBe(1);
    expect((await replay('--db', db, '--policies', candidate, '--allow-flips', 'DENY_TO_ALLOW,ALLOW_TO_DENY')).code).toBe(1);
    expect((await replay('--db', db, '--policies', candidate, '--allow-unreplayable-directory')).code).toBe(0);
    const text = await replayText('--db', db, '--policies', candidate);
    expect(text.stdout).toMatch(/not replayable: directory facts recorded without what they replaced {2}1 \(e\.g\. [0-9a-f-]+\) \(fails the run; --allow-unreplayable-directory accepts them\)/);
  });

  it('are replayed where the candidate\'s directory replaces those facts anyway', async () => {
    const run = await replay('--db', db, '--policies', live);
    expect(run.code).toBe(0);
    expect(run.report).toMatchObject({ replayed: 1, unchanged: 1, notReplayable: { directoryFactsLost: { count: 0 } } });
  });
});

describe('Replayer and the recorded directory facts', () => {
  const row = (details: unknown, request: unknown): ReplayRow => ({
    seq: 1,
    decisionId: 'd-1',
    principalId: 'leo',
    action: 'delete',
    resourceType: 'model',
    resourceId: 'm',
    effect: 'DENY',
    reason: 'DENIED_BY_DEFAULT',
    ruleIds: '[]',
    errors: '[]',
    request: JSON.stringify(request),
    details: JSON.stringify(details),
  });
  const recorded = { principal: { roles: ['analyst'], attributes: { employment: 'contractor' } }, resource: { attributes: {} }, context: { attributes: {} } };

  it('decides the same stored request anew when its directory facts differ (the outcome cache keys on them)', () => {
    const replayer = new Replayer(loadValid(candidate).policySet, null, { examples: 3 });
    replayer.add(row({ directory: { principal: { roles: 'directory', attributes: ['employment'], sent: {} } } }, recorded));
    replayer.add(row({ directory: { principal: { roles: 'directory', ignoredRoles: ['admin'], attributes: ['employment'], sent: { roles: ['admin'] } } } }, recorded));
    expect(replayer.tally.unchanged).toBe(1);
    expect(replayer.tally.flips.DENY_TO_ALLOW.count).toBe(1);
  });

  it('counts a directory part that is not what the server writes as unreadable', () => {
    const replayer = new Replayer(loadValid(candidate).policySet, null, { examples: 3 });
    replayer.add(row({ directory: { principal: { roles: 'directory', attributes: 'employment', sent: {} } } }, recorded));
    replayer.add(row({ directory: { principal: { roles: 'directory', attributes: ['employment'], overridden: ['employment'], sent: {} } } }, recorded));
    expect(replayer.tally.unreadable.count).toBe(2);
  });
});

describe('sensitive attributes and the values the directory replaced', () => {
  it('are hashed in details.directory as in the request', () => {
    const sensitive = new SensitiveAttributes(['principal.attributes.employment'], Buffer.alloc(32, 7));
    const record = decisionRecord(
      { principal: { id: 'leo', roles: [], attributes: { employment: 'contractor' } }, action: 'read', resource: { type: 'model', id: 'm', attributes: {} }, context: { attributes: {} } },
      { effect: 'ALLOW', reason: 'ALLOWED_BY_RULE', ruleIds: [], errors: [], policyVersion: 'v' },
      { caller: 'c', requestId: null },
      Date.now(),
      1,
      { directory: { principal: { roles: 'directory', attributes: ['employment'], overridden: ['employment'], sent: { attributes: { employment: 'employee' } } } } },
    );
    const stored = sensitive.apply(record);
    expect(JSON.stringify(stored)).not.toContain('employee');
    expect(JSON.stringify(stored)).not.toContain('contractor');
    expect(stored.details).toMatchObject({ directory: { principal: { sent: { attributes: { employment: expect.stringMatching(/^hmac-sha256:[0-9a-f]{64}$/) } } } } });
  });
});
