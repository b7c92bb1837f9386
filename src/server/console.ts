// The web console (/console): one static page and the read-only JSON and
// event-stream endpoints it reads (/console/api/...), each an Admin call.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AlertReader } from '../analysis/alert.js';
import type { DecisionLog } from '../decisions/log-client.js';
import { DecisionQueryThread } from '../decisions/query-thread.js';
import { decodePageToken, encodePageToken, type RowExclusion, type StoredDecision, type TailDecision } from '../decisions/query.js';
import { VerdictError, messageOf } from '../errors.js';
import { ADMIN_RESOURCE_TYPE, adminCallerOfHttp, type AdminCaller, type AdminGate, type AdminIdentity } from './admin-auth.js';
import type { AuditWatch } from './console-audit.js';
import { CONSOLE_PAGE, CONSOLE_PAGE_CSP } from './console-page.js';
import { DEFAULT_BUCKETS, DEFAULT_LIST_ROWS, MAX_BUCKETS, MAX_LIST_ROWS, MAX_QUERY_CHARS, ParameterError, Parameters, alertQuery, decisionFilters } from './console-query.js';
import type { PolicyStore } from './policy-store.js';

/** The page. */
export const CONSOLE_PATH = '/console';
/** Where its data comes from. */
export const CONSOLE_API_PREFIX = '/console/api/';
/** Every Admin method the console's calls are recorded under starts with this (`ConsoleDecisions`, `ConsoleTail`, ...). */
export const CONSOLE_METHOD_PREFIX = 'Console';
/** The console's own rows, left out of its chart and its live tail (they would otherwise fill both). */
export const CONSOLE_ROWS: RowExclusion = { resourceType: ADMIN_RESOURCE_TYPE, actionPrefix: CONSOLE_METHOD_PREFIX };

/** Live tail: open streams at most, rows kept for a stream that joins, rows read per poll. */
const MAX_STREAMS = 16;
const TAIL_BACKLOG = 50;
const TAIL_BATCH = 200;
/** How often the tail looks for new rows while someone watches (also woken by each commit). */
const TAIL_POLL_MS = 1_000;
const TAIL_HEARTBEAT_MS = 15_000;
/**
 * A stream is ended after this long, when the client certificate it was admitted
 * with expires, and when the admin token it was admitted with is rotated: the page
 * opens another 5 s later, through the gate again, so a withdrawn credential does
 * not keep a stream flowing.
 */
const TAIL_MAX_MS = 10 * 60_000;
/** A stream whose reader falls this far behind (bytes not yet taken by the socket) is closed, not buffered further. */
const STREAM_MAX_PENDING_BYTES = 1024 * 1024;
/** The chart's window when the caller gives none. */
const DEFAULT_CHART_MS = 3_600_000;

export interface ConsoleDependencies {
  readonly gate: AdminGate;
  /** The decision query thread the Admin service reads with (ListDecisions, GetDecision). */
  readonly queries: DecisionQueryThread;
  readonly store: PolicyStore;
  /** Its commits wake the live tail. */
  readonly log: Pick<DecisionLog, 'onCommit'>;
  readonly audit: AuditWatch;
  /** Where stored alerts are read; absent, the alerts panel says alerts are not enabled. */
  readonly alerts?: AlertReader | null;
  /** An unexpected failure answering a call (answered 500 without detail). */
  readonly onError?: (error: unknown) => void;
}

/** A decision as the list and the live tail show it (the full record is one click away): what the tail reads of a row. */
export type DecisionSummary = TailDecision;

/**
 * The console. The page itself (`GET /console`) holds no data and is served to
 * anyone; every `/console/api/...` call passes the admin gate (admin-auth.ts)
 * exactly like a gRPC Admin call and is recorded in the decision log as an
 * Admin call named `Console…`. Reads go to the Admin service's query thread,
 * the live tail's own and the audit trail's, never the thread that answers checks.
 *
 * @example
 * const console = new Console({ gate, queries: admin.queries, store, log, audit, alerts });
 * new OperatorHttpServer({ console: (req, res) => console.handle(req, res) });
 */
export class Console {
  private readonly tail: LiveTail;

  constructor(private readonly deps: ConsoleDependencies) {
    this.tail = new LiveTail(deps.queries.path, deps.log);
  }

  /** Answers GET/HEAD of CONSOLE_PATH and CONSOLE_API_PREFIX…; never throws. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const question = url.indexOf('?');
    const path = question < 0 ? url : url.slice(0, question);
    if (path === CONSOLE_PATH || path === `${CONSOLE_PATH}/`) {
      sendPage(res);
      return;
    }
    try {
      await this.api(req, res, path.startsWith(CONSOLE_API_PREFIX) ? path.slice(CONSOLE_API_PREFIX.length) : null, question < 0 ? '' : url.slice(question + 1));
    } catch (error) {
      if (!(error instanceof VerdictError)) this.deps.onError?.(error);
      if (!res.headersSent) sendError(res, error);
      else res.destroy();
    }
  }

  private async api(req: IncomingMessage, res: ServerResponse, route: string | null, query: string): Promise<void> {
    const endpoint = route === null ? undefined : ENDPOINTS.find((e) => (e.prefix ? route.startsWith(e.name) : route === e.name));
    if (route === null || !endpoint) {
      sendJson(res, 404, { error: `no such console endpoint; use ${ENDPOINTS.map((e) => CONSOLE_API_PREFIX + e.name + (e.prefix ? 'ID' : '')).join(', ')}` });
      return;
    }
    if (query.length > MAX_QUERY_CHARS) {
      await this.admit(req, endpoint.method, '', {});
      sendJson(res, 414, { error: `the query string is longer than ${MAX_QUERY_CHARS} characters` });
      return;
    }
    const target = endpoint.prefix ? safeDecode(route.slice(endpoint.name.length)) : '';
    let params: Parameters;
    try {
      params = new Parameters(new URLSearchParams(query));
    } catch (error) {
      await this.admit(req, endpoint.method, target, {});
      throw error;
    }
    const identity = await this.admit(req, endpoint.method, target, params.record());
    const now = Date.now();
    switch (endpoint.method) {
      case 'ConsolePolicy':
        return this.policy(res, params);
      case 'ConsoleAudit':
        return this.auditState(res, params);
      case 'ConsoleSummary':
        return this.summary(res, params, now);
      case 'ConsoleDecisions':
        return this.decisions(res, params, now);
      case 'ConsoleDecision':
        return this.decision(res, params, target);
      case 'ConsoleAlerts':
        return this.alerts(res, params, now);
      case 'ConsoleTail':
        params.done();
        // A tail ends when what admitted it no longer does (a rotated token, a revoked certificate); one on a certificate's connection ends with the connection when it expires (certificate-expiry.ts).
        return this.tail.open(req, res, (end) => this.deps.gate.whileAdmissionHolds(identity, end));
    }
  }

  /**
   * Passes the admin gate, which records the call. A call that only the
   * loopback rule would admit must also come from a page of this server
   * (no cross-site fetch) and name a loopback host: otherwise a web page the
   * operator visits could reach a console on 127.0.0.1 through DNS rebinding.
   */
  private async admit(req: IncomingMessage, method: string, target: string, parameters: Record<string, string>): Promise<AdminIdentity> {
    let caller: AdminCaller = adminCallerOfHttp(req);
    let refusal: string | null = null;
    if (caller.token === null) {
      // A browser sends a client certificate, like a cookie, with another site's requests too.
      const site = req.headers['sec-fetch-site'];
      const origin = req.headers.origin;
      // Sec-Fetch-Site is what browsers send now; an older one sends only Origin, which must be this server.
      if ((typeof site === 'string' && site !== 'same-origin' && site !== 'none') || (origin !== undefined && !isOriginOf(origin, req.headers.host))) {
        refusal = 'admin: the console API answers its own page only (this request came from another site)';
      } else if (caller.certificate === null && !isLoopbackHost(req.headers.host)) refusal = 'admin: without the admin token, the console is served on a loopback address only; open it as http://127.0.0.1:PORT/console or present the admin token';
      // The gate then refuses (and records) it as it refuses any caller without a credential.
      if (refusal !== null) caller = { ...caller, address: '', certificate: null };
    }
    try {
      return await this.deps.gate.admit(caller, { method, target, parameters });
    } catch (error) {
      if (refusal !== null && error instanceof VerdictError && error.code === 'UNAUTHENTICATED') throw new VerdictError('UNAUTHENTICATED', refusal);
      throw error;
    }
  }

  private policy(res: ServerResponse, params: Parameters): void {
    params.done();
    const status = this.deps.store.status();
    sendJson(res, 200, {
      version: status.version,
      ruleCount: status.ruleCount,
      loadedAt: status.loadedAt.toISOString(),
      lastReloadError: status.lastReloadError,
      lastReloadAttemptAt: status.lastReloadAttemptAt?.toISOString() ?? null,
      watch: status.watch,
    });
  }

  private async auditState(res: ServerResponse, params: Parameters): Promise<void> {
    params.done();
    sendJson(res, 200, await this.deps.audit.current());
  }

  private async summary(res: ServerResponse, params: Parameters, now: number): Promise<void> {
    const filters = decisionFilters(params, now);
    const buckets = params.integer('buckets', DEFAULT_BUCKETS, 1, MAX_BUCKETS);
    params.done();
    const until = filters.until ?? now;
    const since = filters.since ?? until - DEFAULT_CHART_MS;
    const bucketMs = Math.max(1000, Math.ceil((until - since) / buckets / 1000) * 1000);
    // Whole buckets: the first starts at or before `since`, so each bar counts a full bucket.
    const from = Math.floor(since / bucketMs) * bucketMs;
    const counts = await this.deps.queries.counts({ ...filters, since: from, until }, bucketMs, CONSOLE_ROWS);
    sendJson(res, 200, { since: from, until, bucketMs, counts });
  }

  private async decisions(res: ServerResponse, params: Parameters, now: number): Promise<void> {
    const filters = decisionFilters(params, now);
    const limit = params.integer('limit', DEFAULT_LIST_ROWS, 1, MAX_LIST_ROWS);
    const token = params.text('page');
    const own = params.text('own');
    if (own !== undefined && own !== '1' && own !== '0') throw new ParameterError('own', 'must be 1 (include the console\'s own calls) or 0');
    params.done();
    let after = null;
    if (token !== undefined) {
      try {
        after = decodePageToken(token, filters);
      } catch (error) {
        throw new ParameterError('page', messageOf(error).replace(/^page_token /, ''));
      }
    }
    // The console's own calls are left out unless asked for (own=1): each look at the list would add rows to it.
    const page = await this.deps.queries.page(filters, { limit, after, exclude: own === '1' ? null : CONSOLE_ROWS });
    // `since` and `until` as resolved for this answer: a relative one (`1h`) moves with each request, and the page
    // token is bound to the times, so the next page asks with these (the console's own Next does).
    sendJson(res, 200, { decisions: page.decisions.map(summaryOf), next: page.next ? encodePageToken(page.next, filters) : null, since: filters.since ?? null, until: filters.until ?? null });
  }

  private async decision(res: ServerResponse, params: Parameters, id: string): Promise<void> {
    params.done();
    if (id === '' || id.length > 200) throw new ParameterError('id', 'a decision id (at most 200 characters) is required: /console/api/decision/ID');
    const record = await this.deps.queries.get(id);
    if (record === null) {
      sendJson(res, 404, { error: `no decision with id ${id}` });
      return;
    }
    sendJson(res, 200, record);
  }

  private async alerts(res: ServerResponse, params: Parameters, now: number): Promise<void> {
    const query = alertQuery(params, now);
    params.done();
    const reader = this.deps.alerts ?? null;
    if (reader === null) {
      sendJson(res, 200, { enabled: false, alerts: [], message: 'alerts are not enabled on this server' });
      return;
    }
    sendJson(res, 200, { enabled: true, alerts: await reader.list(query) });
  }

  /** Ends every live-tail stream (before the HTTP server closes, so none holds it open). */
  close(): void {
    this.tail.close();
  }
}

interface Endpoint {
  readonly name: string;
  readonly method: 'ConsolePolicy' | 'ConsoleAudit' | 'ConsoleSummary' | 'ConsoleDecisions' | 'ConsoleDecision' | 'ConsoleAlerts' | 'ConsoleTail';
  /** The name is followed by an id. */
  readonly prefix?: boolean;
}

const ENDPOINTS: readonly Endpoint[] = [
  { name: 'policy', method: 'ConsolePolicy' },
  { name: 'audit', method: 'ConsoleAudit' },
  { name: 'summary', method: 'ConsoleSummary' },
  { name: 'decisions', method: 'ConsoleDecisions' },
  { name: 'decision/', method: 'ConsoleDecision', prefix: true },
  { name: 'alerts', method: 'ConsoleAlerts' },
  { name: 'tail', method: 'ConsoleTail' },
];

/**
 * The live tail: one reader of new rows for all open streams, running only
 * while someone watches, woken by commits (and a slow poll, for rows another
 * process committed); each stream gets the last rows on opening, then each new
 * one as a server-sent event. A stream that does not keep up is closed.
 */
class LiveTail {
  private readonly streams = new Set<ServerResponse>();
  /**
   * The tail's own query thread, while someone watches: behind the Admin thread's
   * queue (charts over a large log, one at a time) a new decision waited for every
   * chart asked before it.
   */
  private queries: DecisionQueryThread | null = null;
  private backlog: DecisionSummary[] = [];
  private cursor: number | null = null;
  private reading: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private stopCommits: (() => void) | null = null;
  private active = false;
  /** Streams waiting for their backlog. */
  private joining = 0;

  constructor(
    /** The decision log the tail reads. */
    private readonly logPath: string,
    private readonly log: Pick<DecisionLog, 'onCommit'>,
  ) {}

  /** `revocable`: how to learn that the credential the stream was opened with is withdrawn (returns the way to stop listening). */
  async open(req: IncomingMessage, res: ServerResponse, revocable: (end: () => void) => () => void): Promise<void> {
    if (this.streams.size + this.joining >= MAX_STREAMS) {
      sendJson(res, 429, { error: `at most ${MAX_STREAMS} live tails are open at once; close one` }, { 'retry-after': '10' });
      return;
    }
    res.writeHead(200, { ...API_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', 'x-accel-buffering': 'no' });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    res.flushHeaders();
    let closed = false;
    const ending = setTimeout(() => res.end(), TAIL_MAX_MS);
    ending.unref();
    const stopListening = revocable(() => res.end());
    const leave = (): void => {
      if (closed) return;
      closed = true;
      clearTimeout(ending);
      stopListening();
      if (!this.streams.delete(res)) this.joining--;
      if (this.streams.size === 0 && this.joining === 0) this.stop();
    };
    res.once('close', leave);
    this.joining++;
    if (!this.active) this.start();
    // The backlog first, then every row read after it: the stream joins only once it has the backlog, so no row comes twice.
    await this.read();
    if (closed) return;
    this.joining--;
    if (this.backlog.length > 0) this.send(res, eventsText(this.backlog));
    this.streams.add(res);
  }

  private start(): void {
    this.active = true;
    this.queries = new DecisionQueryThread(this.logPath);
    this.cursor = null;
    this.backlog = [];
    this.timer = setInterval(() => void this.read(), TAIL_POLL_MS);
    this.timer.unref();
    this.heartbeat = setInterval(() => {
      for (const res of this.streams) res.write(': still here\n\n');
    }, TAIL_HEARTBEAT_MS);
    this.heartbeat.unref();
    this.stopCommits = this.log.onCommit(() => void this.read());
  }

  private stop(): void {
    this.active = false;
    if (this.timer) clearInterval(this.timer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.stopCommits?.();
    this.timer = this.heartbeat = this.stopCommits = null;
    // A read still running is answered DECISION_LOG_UNAVAILABLE, which it ignores.
    void this.queries?.close();
    this.queries = null;
  }

  /** One read at a time; a wake-up during a read asks for one more after it. */
  private read(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return this.reading;
    }
    this.reading = (async () => {
      do {
        this.again = false;
        const queries = this.queries;
        if (!this.active || queries === null) return;
        const first = this.cursor === null;
        try {
          const { decisions, cursor } = await queries.tail(this.cursor, first ? TAIL_BACKLOG : TAIL_BATCH, CONSOLE_ROWS);
          this.cursor = cursor;
          const rows = decisions;
          this.backlog = [...this.backlog, ...rows].slice(-TAIL_BACKLOG);
          // Written once per read to each stream: a stream dropped while holding thousands of small writes held the thread for tens of milliseconds.
          if (!first && rows.length > 0) {
            const text = eventsText(rows);
            for (const res of this.streams) this.send(res, text);
          }
          if (decisions.length === TAIL_BATCH) this.again = true;
        } catch {
          // The log may not exist yet or the query thread restarted: the next wake-up tries again.
        }
      } while (this.again);
    })().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  private send(res: ServerResponse, events: string): void {
    if (res.writableLength > STREAM_MAX_PENDING_BYTES) {
      res.destroy();
      return;
    }
    res.write(events);
  }

  close(): void {
    this.stop();
    const streams = [...this.streams];
    this.streams.clear();
    for (const res of streams) res.end();
  }
}

/** Rows as server-sent events, serialised once for every stream. */
function eventsText(rows: readonly DecisionSummary[]): string {
  let text = '';
  for (const row of rows) text += `id: ${row.seq}\nevent: decision\ndata: ${JSON.stringify(row)}\n\n`;
  return text;
}

function summaryOf(d: StoredDecision): DecisionSummary {
  return {
    seq: d.seq,
    decisionId: d.decisionId,
    time: d.time,
    principalId: d.principalId,
    action: d.action,
    resourceType: d.resourceType,
    resourceId: d.resourceId,
    effect: d.effect,
    reason: d.reason,
    ruleIds: d.ruleIds,
    policyVersion: d.policyVersion,
  };
}

/** Headers of every console answer: nothing cached, nothing sniffed, nothing framed, no referrer. */
const API_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
};

function sendPage(res: ServerResponse): void {
  res.writeHead(200, {
    ...API_HEADERS,
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(CONSOLE_PAGE),
    'content-security-policy': CONSOLE_PAGE_CSP,
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
  });
  res.end(res.req.method === 'HEAD' ? undefined : CONSOLE_PAGE);
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...API_HEADERS, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

/** A refusal or failure as JSON with its status; the message only, never a stack. */
function sendError(res: ServerResponse, error: unknown): void {
  if (error instanceof ParameterError) {
    sendJson(res, 400, { error: error.message, parameter: error.parameter });
    return;
  }
  if (error instanceof VerdictError) {
    switch (error.code) {
      case 'UNAUTHENTICATED':
        sendJson(res, 401, { error: error.message }, { 'www-authenticate': 'Bearer realm="verdict-admin"' });
        return;
      case 'PERMISSION_DENIED':
        sendJson(res, 403, { error: error.message });
        return;
      case 'USAGE':
        sendJson(res, 400, { error: error.message });
        return;
      case 'DECISION_LOG_UNAVAILABLE':
        sendJson(res, 503, { error: error.message });
        return;
      default:
        break;
    }
  }
  sendJson(res, 500, { error: 'internal error answering the console; see the server log' });
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new ParameterError('id', 'is not valid percent-encoding');
  }
}

function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined) return false;
  const bracketed = /^\[([^\]]*)\](?::\d+)?$/.exec(host);
  if (host.startsWith('[') && bracketed === null) return false;
  const name = bracketed !== null ? bracketed[1]! : host.replace(/:\d+$/, '');
  return name === 'localhost' || name === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** Whether an Origin header names the host the request was sent to (`null`, from a sandboxed page or a file, never does). */
function isOriginOf(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}
