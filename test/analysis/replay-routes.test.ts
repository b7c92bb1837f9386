import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReplayReport } from '../../src/analysis/replay-report.js';
import { runAudit } from '../../src/cli/audit.js';
import { runReplay } from '../../src/cli/replay.js';
import { queryDecisions, type StoredDecision } from '../../src/decisions/query.js';
import { makeTempDir, removeTempDirs } from '../helpers/policies.js';
import { ensureBuilt, ROOT, startVerdict } from '../helpers/verdict-process.js';

/**
 * A route change replayed for gateway traffic: forward-auth requests to a real
 * server on the shipped policies make the log; each recorded method and path
 * is routed again by the candidate's routes. The oracle is a second real
 * server on the candidate set answering the very same HTTP requests: the
 * replay must flip exactly the requests whose answer changed.
 */

async function replayJson(...argv: string[]): Promise<{ code: number; report: ReplayReport; stdout: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runReplay([...argv, '--json', '--examples', '1000'], { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  if (code !== 0 && code !== 1) throw new Error(`replay exited ${code}: ${stderr}`);
  return { code, report: JSON.parse(stdout) as ReplayReport, stdout };
}

async function replayText(...argv: string[]): Promise<string> {
  let stdout = '';
  await runReplay(argv, { stdout: (s) => (stdout += s), stderr: () => {} });
  return stdout;
}

function forwardAuth(port: number, headers: Record<string, string>): Promise<{ status: number; decisionId: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/forward-auth', method: 'GET', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        const header = res.headers['x-verdict-decision-id'];
        const id = typeof header === 'string' ? header : ((JSON.parse(body || '{}') as { decisionId?: string }).decisionId ?? '');
        resolve({ status: res.statusCode ?? 0, decisionId: id });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

const USER = { 'x-auth-request-org': 'acme', 'x-auth-request-employment': 'employee' };
const MODEL = { 'x-model-org': 'acme', 'x-model-classification': 'internal' };

/** The gateway requests of the log: who asks, and the HTTP request the gateway forwards. */
const REQUESTS: ReadonlyArray<{ readonly name: string; readonly headers: Record<string, string> }> = [
  { name: 'gwen predicts', headers: { ...USER, ...MODEL, 'x-auth-request-user': 'gwen', 'x-auth-request-groups': 'data_scientist', 'x-original-method': 'POST', 'x-original-uri': '/v1/models/fraud-detector-v3/predict' } },
  { name: 'gwen reads', headers: { ...USER, ...MODEL, 'x-auth-request-user': 'gwen', 'x-auth-request-groups': 'data_scientist', 'x-original-method': 'GET', 'x-original-uri': '/v1/models/fraud-detector-v3' } },
  { name: 'gwen reads a globex model', headers: { ...USER, ...MODEL, 'x-model-org': 'globex', 'x-auth-request-user': 'gwen', 'x-auth-request-groups': 'data_scientist', 'x-original-method': 'GET', 'x-original-uri': '/v1/models/globex-ranker' } },
  {
    name: 'ada deletes with a ticket',
    headers: { ...USER, ...MODEL, 'x-model-env': 'staging', 'x-incident-ticket': 'INC-7', 'x-auth-request-user': 'ada', 'x-auth-request-groups': 'admin', 'x-original-method': 'DELETE', 'x-original-uri': '/v1/models/old-model' },
  },
  { name: 'gwen predicts on v2', headers: { ...USER, ...MODEL, 'x-auth-request-user': 'gwen', 'x-auth-request-groups': 'data_scientist', 'x-original-method': 'POST', 'x-original-uri': '/v2/models/fraud-detector-v3/predict' } },
  { name: 'gwen lists things', headers: { ...USER, 'x-thing-org': 'acme', 'x-auth-request-user': 'gwen', 'x-auth-request-groups': 'data_scientist', 'x-original-method': 'GET', 'x-original-uri': '/v2/things/t1' } },
  { name: 'nobody goes nowhere', headers: { ...USER, 'x-auth-request-user': 'gwen', 'x-auth-request-groups': 'data_scientist', 'x-original-method': 'GET', 'x-original-uri': '/nowhere' } },
];

/**
 * The candidate's route edits: GET /v1/models/{model} now means retrain; the
 * DELETE route is gone; a v2 predict route (its attributes constants) and a
 * things route that reads a header (never recorded) are new.
 */
const CANDIDATE_ROUTES = `kind: routes
routes:
  - method: POST
    path: /v1/models/{model}/predict
    action: predict
    resource:
      type: model
      id: "{model}"
      attributes:
        org: "{header.x-model-org}"
        classification: "{header.x-model-classification}"
  - method: [GET, HEAD]
    path: /v1/models/{model}
    action: retrain
    resource:
      type: model
      id: "{model}"
      attributes:
        org: "{header.x-model-org}"
        classification: "{header.x-model-classification}"
  - method: POST
    path: /v2/models/{model}/predict
    action: predict
    resource:
      type: model
      id: "{model}"
      attributes: { org: acme, classification: internal }
  - method: GET
    path: /v2/things/{thing}
    action: read
    resource:
      type: model
      id: "{thing}"
      attributes: { org: "{header.x-thing-org}", classification: internal }
`;

const CONFIG = 'trustedPrincipal:\n  idHeader: x-auth-request-user\n  rolesHeader: x-auth-request-groups\n  attributeHeaders: { org: x-auth-request-org, employment: x-auth-request-employment }\n';

let work: string;
let base: string;
let candidate: string;
let db: string;
let decisions: StoredDecision[];
/** Per request (REQUESTS order): the decision id recorded by the shipped set, and both servers' statuses. */
const recorded: string[] = [];
const before: number[] = [];
const after: number[] = [];

async function serve(policies: string, logFile: string, statuses: number[], ids: string[] | null): Promise<void> {
  const config = join(work, 'verdict.yaml');
  const server = await startVerdict({ policies, db: logFile, args: ['--config', config] });
  try {
    for (const r of REQUESTS) {
      const answer = await forwardAuth(server.httpPort, r.headers);
      statuses.push(answer.status);
      ids?.push(answer.decisionId);
    }
  } finally {
    expect(await server.stop()).toBe(0);
  }
}

beforeAll(async () => {
  ensureBuilt();
  work = makeTempDir('verdict-replay-routes-');
  base = join(work, 'base');
  cpSync(join(ROOT, 'policies'), base, { recursive: true });
  candidate = join(work, 'candidate');
  cpSync(base, candidate, { recursive: true });
  rmSync(join(candidate, 'tests'), { recursive: true });
  writeFileSync(join(candidate, 'routes.yaml'), CANDIDATE_ROUTES);
  writeFileSync(join(work, 'verdict.yaml'), CONFIG);
  db = join(work, 'decisions.db');
  await serve(base, db, before, recorded);
  await serve(candidate, join(work, 'candidate.db'), after, null);
  decisions = queryDecisions(db, { limit: 1000 });
}, 120_000);

afterAll(() => removeTempDirs());

describe('replay routes gateway requests again with the candidate routes', () => {
  it('the log holds each gateway request with its method and path, and the servers disagree where the routes changed', () => {
    expect(decisions).toHaveLength(REQUESTS.length);
    for (const d of decisions) expect(d.details?.http).toEqual(expect.objectContaining({ method: expect.any(String), path: expect.any(String) }));
    expect(before).toEqual([200, 200, 403, 200, 403, 403, 403]);
    expect(after).toEqual([200, 403, 403, 403, 200, 200, 403]);
  });

  it('the shipped set against its own log: nothing flips, nothing is re-routed', async () => {
    const { code, report } = await replayJson('--db', db, '--policies', base);
    expect(code).toBe(0);
    expect(report.routes.rerouted.count).toBe(0);
    expect(report.routes.unrouted.count).toBe(0);
    expect(report.gateway).toBe(4);
    expect(Object.fromEntries(report.refused.map((g) => [g.key, g.count]))).toEqual({ NO_ROUTE: 3 });
  });

  it('flips exactly the requests whose answer a server on the candidate routes changed', async () => {
    const { code, report } = await replayJson('--db', db, '--policies', candidate);
    expect(code).toBe(1);
    // The things route reads a header no row recorded: not replayable, named, never guessed.
    const things = REQUESTS.findIndex((r) => r.name === 'gwen lists things');
    expect(report.notReplayable.unrecorded.count).toBe(1);
    expect(report.notReplayable.unrecorded.examples).toEqual([recorded[things]]);
    expect(report.notReplayable.unrecorded.paths).toEqual({ 'resource.attributes.org': 1 });
    const changed = (from: number, to: number): string[] =>
      REQUESTS.flatMap((_r, i) => (i !== things && before[i] === from && after[i] === to ? [recorded[i] as string] : [])).sort();
    expect([...report.flips.ALLOW_TO_DENY.examples].sort()).toEqual(changed(200, 403));
    expect([...report.flips.DENY_TO_ALLOW.examples].sort()).toEqual(changed(403, 200));
    expect(report.flips.ALLOW_TO_DENY.count).toBe(2);
    expect(report.flips.DENY_TO_ALLOW.count).toBe(1);
    // The DELETE route is gone: the path is reported, and its flip counts under "no route".
    const del = recorded[REQUESTS.findIndex((r) => r.name === 'ada deletes with a ticket')];
    expect(report.routes.unrouted.byRoute).toEqual([{ key: 'DELETE /v1/models/old-model', count: 1, examples: [del] }]);
    expect(report.flips.ALLOW_TO_DENY.byRule).toContainEqual(expect.objectContaining({ rule: 'DELETE /v1/models/old-model', role: 'no route', count: 1 }));
    // GET /v1/models/{model} now asks retrain: both reads are re-routed, the allowed one flips, counted under its new action.
    expect(report.routes.rerouted.count).toBe(3);
    expect(report.flips.ALLOW_TO_DENY.byAction.map((g) => g.key).sort()).toEqual(['delete', 'retrain']);
    // The new v2 route allows what no route mapped before.
    expect(report.flips.DENY_TO_ALLOW.byRule).toEqual([expect.objectContaining({ rule: 'ds-read-predict-own-org', role: 'allows' })]);
    expect(Object.fromEntries(report.refused.map((g) => [g.key, g.count]))).toEqual({ NO_ROUTE: 1 });
    expect(report.gateway).toBe(5);
    const text = await replayText('--db', db, '--policies', candidate);
    expect(text).toMatch(/^ {2}routes {7}3 gateway requests mapped otherwise by the candidate's routes \(e\.g\. /m);
    expect(text).toContain('    no route  DELETE /v1/models/old-model  1');
    expect(text).toContain('  unrecorded route values   1 (resource.attributes.org 1;');
  });

  it('--against: both sets route the recorded requests, so the same set twice flips nothing and the reverse change mirrors', async () => {
    expect((await replayJson('--db', db, '--policies', candidate, '--against', candidate)).code).toBe(0);
    const forward = await replayJson('--db', db, '--policies', candidate);
    const back = await replayJson('--db', db, '--policies', base, '--against', candidate);
    expect([...back.report.flips.DENY_TO_ALLOW.examples].sort()).toEqual([...forward.report.flips.ALLOW_TO_DENY.examples].sort());
    expect([...back.report.flips.ALLOW_TO_DENY.examples].sort()).toEqual([...forward.report.flips.DENY_TO_ALLOW.examples].sort());
  });

  it('an export is routed again as the log is', async () => {
    const file = join(work, 'sample.jsonl');
    expect(await runAudit(['export', '--db', db, '--out', file], { stdout: () => {}, stderr: () => {} })).toBe(0);
    const fromLog = await replayJson('--db', db, '--policies', candidate);
    const fromExport = await replayJson('--export', file, '--policies', candidate);
    expect(fromExport.report.flips).toEqual(fromLog.report.flips);
    expect(fromExport.report.routes).toEqual(fromLog.report.routes);
    expect(readFileSync(file, 'utf8')).toContain('"http"');
  });
});
