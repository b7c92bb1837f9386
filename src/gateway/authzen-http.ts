// The AuthZEN Authorization API 1.0 on verdict's HTTP port: authenticate the
// caller (the policy enforcement point), read the body, decide through the decide
// core, answer in AuthZEN terms.

import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LAPSED_CERTIFICATE_MESSAGE, certificateLapsed, connectionPeer, type LapsedConnection } from '../authn/certificate-lapse.js';
import { tlsSocketIdentity } from '../authn/mtls.js';
import { authnDetails } from './adapter.js';
import type { Authenticator, AuthnResult } from '../authn/types.js';
import type { Principal } from '../types.js';
import { BatchRefused, InvalidRequest, RefusedRequest, RequestFieldError, notAPep, selfStatedProperties, unauthenticated, type CallMeta, type CheckInput, type CheckResult, type DecisionPipeline, type SettleOutcome } from '../decide/index.js';
import { VerdictError, messageOf } from '../errors.js';
import { UNREADABLE_REQUEST, readEvaluation, readEvaluations, stopsAfter, toAuthZenDecision } from './authzen.js';
import { PageTokens, readSearch, searchPage, type SearchKind } from './authzen-search.js';
import { nestedDeeperThan, repeatedMember } from '../json-members.js';
import { peerOf } from './forward-auth.js';

/** `POST`: one evaluation. */
export const AUTHZEN_EVALUATION_PATH = '/access/v1/evaluation';
/** `POST`: several evaluations in one call (boxcarring). */
export const AUTHZEN_EVALUATIONS_PATH = '/access/v1/evaluations';
/**
 * `POST`: verdict's own addition beside the AuthZEN paths, what gRPC's Settle does: a
 * PEP that evaluated with a cost (say `max_tokens`) says what the call really used.
 */
export const AUTHZEN_SETTLE_PATH = '/access/v1/settle';
/** `GET`: the policy decision point's metadata document. */
export const AUTHZEN_METADATA_PATH = '/.well-known/authzen-configuration';
/** `POST`: the Search APIs, over the policies' principal and resource directories. */
export const AUTHZEN_SEARCH_PATHS: Readonly<Record<SearchKind, string>> = {
  subject: '/access/v1/search/subject',
  resource: '/access/v1/search/resource',
  action: '/access/v1/search/action',
};
const SEARCH_BY_PATH = new Map<string, SearchKind>(Object.entries(AUTHZEN_SEARCH_PATHS).map(([kind, path]) => [path, kind as SearchKind]));
/** Every path the AuthZEN endpoint answers. */
export const AUTHZEN_PATHS: readonly string[] = [AUTHZEN_EVALUATION_PATH, AUTHZEN_EVALUATIONS_PATH, AUTHZEN_SETTLE_PATH, AUTHZEN_METADATA_PATH, ...SEARCH_BY_PATH.keys()];

export interface AuthZenEndpointOptions {
  /** The largest request body read, in bytes; a larger one is refused (413) and recorded. */
  readonly maxBodyBytes: number;
  /**
   * Whether a verified client certificate alone authenticates the caller: true when
   * the port requires client certificates (mTLS) and no credential-based method
   * (`authn`, `trustedPrincipal`) is configured. Otherwise a credential is required.
   */
  readonly certificateAuthenticates: boolean;
  /**
   * The callers (as the decision log records them: `api-key:orders-service`,
   * `jwt:<sub>`, a certificate's identity) that may ask about any subject. Any other
   * caller may ask only about itself; a question about someone else is refused
   * (`NOT_A_PEP`, answered 403) before it is decided, so it reads no one else's
   * permissions and spends no one else's rate-limit budget.
   */
  readonly peps: ReadonlySet<string>;
  /** Told of failures that are verdict's, not the caller's (the answer is then 500 or 503). */
  readonly onError?: (error: unknown) => void;
  /** Told of each request refused because the connection's client certificate expired while the request arrived. */
  readonly onCertificateLapsed?: (connection: LapsedConnection) => void;
}

/**
 * An authenticated caller: what is recorded, and, for a caller that is not a listed
 * PEP, `self`: the one subject it may ask about, with the facts it is decided with
 * (its credential's roles and attributes). Null for a listed PEP, which may ask
 * about anyone and states the subject's properties.
 */
interface Caller {
  readonly caller: string;
  readonly self: Principal | null;
}

const NO_ROLES: readonly string[] = Object.freeze([]);
const NO_ATTRIBUTES = Object.freeze({});

/** The pipeline calls the endpoint makes. */
export type AuthZenPipeline = Pick<DecisionPipeline, 'check' | 'checkBatch' | 'checkUntil' | 'search' | 'settle'>;

/** The HTTP status and error of each way a Settle is refused (gRPC's codes, in HTTP's terms). */
const SETTLE_REFUSALS: Readonly<Record<Exclude<SettleOutcome['kind'], 'settled'>, { readonly status: number; readonly error: string }>> = {
  invalid: { status: 400, error: 'bad request' },
  unknown: { status: 404, error: 'not found' },
  'settled-already': { status: 409, error: 'already settled' },
  settling: { status: 409, error: 'being settled' },
  expired: { status: 410, error: 'settle window passed' },
  unavailable: { status: 503, error: 'unavailable' },
};
/** The members a settle body may carry. */
const SETTLE_MEMBERS = new Set(['decision_id', 'actual_units']);

const MAX_REQUEST_ID_LENGTH = 256;
/**
 * Arrays and objects nested deeper than this refuse the body before it is parsed: the
 * attribute checks refuse properties past 64 levels, and the request's own structure
 * (evaluations, an item, its resource, properties) adds a few more.
 */
const MAX_BODY_DEPTH = 72;
const MAX_DETAIL_LENGTH = 300;
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$/;

class BodyTooLarge extends Error {}

interface Answer {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * The AuthZEN Authorization API 1.0 on the HTTP port: `POST /access/v1/evaluation`,
 * `POST /access/v1/evaluations`, the searches and `GET /.well-known/authzen-configuration`,
 * and verdict's `POST /access/v1/settle` beside them.
 * Every evaluation takes the decide core's path like a gRPC Check and is recorded;
 * a request that cannot be read (bad JSON, a missing or mistyped field) is recorded
 * as DENIED_INVALID_REQUEST and answered 400 naming the field; a caller that does
 * not authenticate is recorded as DENIED_UNAUTHENTICATED and answered 401. A decision
 * is always answered 200, `{"decision": true|false, "context": {...}}`.
 *
 * @example
 * const authzen = new AuthZenEndpoint(pipeline, authenticator, { maxBodyBytes: 1 << 20, certificateAuthenticates: false });
 * if (authzen.handles(path)) await authzen.handle(req, res);
 */
export class AuthZenEndpoint {
  private readonly tokens = new PageTokens();

  constructor(
    private readonly pipeline: AuthZenPipeline,
    private readonly authenticator: Authenticator,
    private readonly options: AuthZenEndpointOptions,
  ) {}

  /** Whether a path (without its query) is one of the AuthZEN endpoints. */
  handles(path: string): boolean {
    return AUTHZEN_PATHS.includes(path);
  }

  /** Answers one request to an AuthZEN path; never rejects. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    const requestId = requestIdOf(req);
    let answer: Answer;
    let body: string;
    try {
      answer = path === AUTHZEN_METADATA_PATH ? this.metadata(req) : await this.evaluate(req, path, requestId);
      // Inside the try: an answer too large to write is a failure like any other, logged and answered 500.
      body = JSON.stringify(answer.body);
    } catch (error) {
      const code = error instanceof VerdictError ? error.code : null;
      // A caller that went away while its evaluations waited is no server fault: nobody reads this answer.
      if (code !== 'DECISION_LOG_UNAVAILABLE' && code !== 'CANCELLED') this.options.onError?.(error);
      answer =
        code === 'DECISION_LOG_UNAVAILABLE'
          ? { status: 503, body: { error: 'the decision could not be recorded, so no decision is given' } }
          : code === 'CANCELLED'
            ? { status: 499, body: { error: 'the request was cancelled (the connection closed) before it was decided; no decision is given' } }
            : { status: 500, body: { error: 'internal error; no decision is given' } };
      body = JSON.stringify(answer.body);
    }
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      ...answer.headers,
    };
    if (requestId !== null) headers['x-request-id'] = requestId;
    // A body left unread (refused before reading, or too large) is not drained: the connection ends with the answer.
    if (!req.complete) res.shouldKeepAlive = false;
    res.writeHead(answer.status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  /** The metadata document: the endpoints, as URLs on the host the caller asked. */
  private metadata(req: IncomingMessage): Answer {
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') return { status: 405, body: { error: 'only GET is served here' }, headers: { allow: 'GET, HEAD' } };
    const base = baseUrl(req);
    return {
      status: 200,
      body: {
        policy_decision_point: base,
        access_evaluation_endpoint: base + AUTHZEN_EVALUATION_PATH,
        access_evaluations_endpoint: base + AUTHZEN_EVALUATIONS_PATH,
        search_subject_endpoint: base + AUTHZEN_SEARCH_PATHS.subject,
        search_resource_endpoint: base + AUTHZEN_SEARCH_PATHS.resource,
        search_action_endpoint: base + AUTHZEN_SEARCH_PATHS.action,
      },
    };
  }

  /**
   * The refusal of a request whose connection's client certificate expired while its
   * body arrived, before the timer that cuts the connection fired; null otherwise.
   * Nothing is decided or recorded for it, as for any request on a lapsed connection.
   */
  private lapsedCertificate(req: IncomingMessage): Answer | null {
    const lapsedAt = certificateLapsed(req.socket);
    if (lapsedAt === null) return null;
    const expiredAt = new Date(lapsedAt).toISOString();
    this.options.onCertificateLapsed?.({ peer: connectionPeer(req.socket), expiredAt });
    return { status: 401, body: { error: 'unauthenticated', detail: `${LAPSED_CERTIFICATE_MESSAGE} (it expired at ${expiredAt})` }, headers: { connection: 'close' } };
  }

  private async evaluate(req: IncomingMessage, path: string, requestId: string | null): Promise<Answer> {
    if (req.method !== 'POST') {
      req.resume();
      return { status: 405, body: { error: 'only POST is served here' }, headers: { allow: 'POST' } };
    }
    const meta = (caller: string): CallMeta => ({ caller, requestId, details: { http: { method: 'POST', path } } });

    // Who is asking comes first: an unauthenticated caller's body is never read.
    const authn = await this.authenticate(req);
    if (!authn.ok) {
      req.resume();
      const refused = meta(peerOf(req));
      const result = await this.pipeline.check(new RefusedRequest(UNREADABLE_REQUEST, unauthenticated(authn)), { ...refused, details: Object.assign({}, refused.details, authnDetails(authn)) });
      return { status: 401, body: errorBody('unauthenticated', `${authn.reason}: ${authn.message}`, result), headers: { 'www-authenticate': 'Bearer' } };
    }
    const call = meta(authn.caller);
    const confine = (question: CheckInput): CheckInput => confined(question, authn);

    // A body without a Content-Type is not taken for JSON: a cross-site page may POST one
    // (no-cors, no preflight), and where the credential is ambient (a client certificate
    // the browser presents) it would be decided as the operator's question.
    const sentType = req.headers['content-type'];
    const contentType = sentType === undefined ? null : sentType.split(';')[0]!.trim().toLowerCase();
    if (contentType !== 'application/json') {
      const error = RequestFieldError.invalid(
        'content-type',
        sentType === undefined
          ? "missing: send Content-Type: application/json (curl: -H 'Content-Type: application/json'); a body without one is not read"
          : "must be application/json (curl: -H 'Content-Type: application/json')",
      );
      const result = await this.pipeline.check(new InvalidRequest(error, UNREADABLE_REQUEST), call);
      return { status: 415, body: errorBody('unsupported media type', error.message, result) };
    }
    let text: string | null;
    try {
      text = await readBody(req, this.options.maxBodyBytes);
    } catch (error) {
      if (!(error instanceof BodyTooLarge)) throw error;
      const lapsed = this.lapsedCertificate(req);
      if (lapsed !== null) return lapsed;
      const problem = RequestFieldError.invalid('(body)', `larger than ${this.options.maxBodyBytes} bytes`);
      const result = await this.pipeline.check(new InvalidRequest(problem, UNREADABLE_REQUEST), call);
      return { status: 413, body: errorBody('request too large', problem.message, result) };
    }
    const lapsed = this.lapsedCertificate(req);
    if (lapsed !== null) return lapsed;
    if (text === null) {
      const problem = RequestFieldError.invalid('(body)', 'not valid UTF-8; send JSON encoded as UTF-8');
      const result = await this.pipeline.check(new InvalidRequest(problem, UNREADABLE_REQUEST), call);
      return { status: 400, body: errorBody('bad request', problem.message, result) };
    }
    if (nestedDeeperThan(text, MAX_BODY_DEPTH)) {
      const problem = RequestFieldError.invalid('(body)', `nested deeper than ${MAX_BODY_DEPTH} levels of arrays and objects`);
      const result = await this.pipeline.check(new InvalidRequest(problem, UNREADABLE_REQUEST), call);
      return { status: 400, body: errorBody('bad request', problem.message, result) };
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (error) {
      // Deep nesting overflows the parser's stack (RangeError): the same answer as any unreadable body.
      const problem = RequestFieldError.invalid('(body)', `not JSON: ${messageOf(error)}`.slice(0, MAX_DETAIL_LENGTH));
      const result = await this.pipeline.check(new InvalidRequest(problem, UNREADABLE_REQUEST), call);
      return { status: 400, body: errorBody('bad request', problem.message, result) };
    }
    const repeated = repeatedMember(text);
    if (repeated !== null) {
      const problem = RequestFieldError.invalid(repeated, 'given twice in one object; send each member once (parsers disagree on which copy counts)');
      const result = await this.pipeline.check(new InvalidRequest(problem, UNREADABLE_REQUEST), call);
      return { status: 400, body: errorBody('bad request', problem.message, result) };
    }

    if (path === AUTHZEN_SETTLE_PATH) return this.settle(body, call, authn);
    const searched = SEARCH_BY_PATH.get(path);
    if (searched !== undefined) return this.search(searched, body, call, authn);
    if (path === AUTHZEN_EVALUATION_PATH) return this.single(confine(readEvaluation(body)), call);
    const request = readEvaluations(body);
    if (request.kind !== 'many') return this.single(confine(request.question), call);
    const stop = stopsAfter(request.semantic);
    // A client that has hung up is not waited for: its remaining evaluations are neither decided nor recorded.
    const batch = { field: 'evaluations', cancelled: () => req.socket.destroyed };
    const questions = request.questions.map(confine);
    try {
      const results = stop === null ? await this.pipeline.checkBatch(questions, call, batch) : await this.pipeline.checkUntil(questions, call, stop, batch);
      return { status: 200, body: { evaluations: results.map(toAuthZenDecision) } };
    } catch (error) {
      // Refused whole by the pipeline (what it would record is over the budget), recorded once.
      if (error instanceof BatchRefused) return { status: 400, body: errorBody('bad request', error.message, error.result) };
      throw error;
    }
  }

  /**
   * A Settle: `{"decision_id": "...", "actual_units": 1000}` from the listed PEP whose
   * evaluation reserved the cost (a caller asking about itself may not: it would settle
   * its own budget). Recorded either way (pipeline.settle); a member the body should
   * not carry is refused (recorded too), so `actualUnits` is not taken for a settle of nothing.
   */
  private async settle(body: unknown, call: CallMeta, caller: Caller): Promise<Answer> {
    if (caller.self !== null) {
      // The caller a cost was reserved for is the one it limits: settled at 0, its own credential would give it all back.
      const refusal = `NOT_A_PEP: ${caller.caller} may not settle; only a policy enforcement point listed in authzen.peps settles what a call really cost`;
      const outcome = await this.pipeline.settle('', Number.NaN, call, refusal);
      return { status: 403, body: { error: 'forbidden', detail: refusal, settle_id: outcome.settleId } };
    }
    let decisionId = '';
    let actualUnits: number | undefined;
    let stray: string | null = null;
    if (body !== null && typeof body === 'object' && !Array.isArray(body)) {
      const fields = body as Record<string, unknown>;
      stray = Object.keys(fields).find((name) => !SETTLE_MEMBERS.has(name)) ?? null;
      if (typeof fields['decision_id'] === 'string') decisionId = fields['decision_id'];
      // Absent is refused as missing, any other type as not a number: neither is read as 0.
      if ('actual_units' in fields) actualUnits = typeof fields['actual_units'] === 'number' ? fields['actual_units'] : Number.NaN;
    }
    // A member it does not know makes the settle unreadable; recorded as a refused Settle like any other.
    const outcome = await this.pipeline.settle(stray === null ? decisionId : '', stray === null ? actualUnits : Number.NaN, call, stray === null ? undefined : `${stray}: not a member of a settle; send decision_id and actual_units`);
    if (outcome.kind === 'settled') {
      return {
        status: 200,
        body: { settle_id: outcome.settleId, reserved_units: outcome.reservedUnits, actual_units: outcome.actualUnits, limit_ids: outcome.limitIds, remaining: Math.max(0, Math.floor(outcome.remaining)) },
      };
    }
    const { status, error } = SETTLE_REFUSALS[outcome.kind];
    return { status, body: { error, detail: outcome.message, settle_id: outcome.settleId } };
  }

  /** A search: one page of results, recorded as one row (details.search); a bad request or page token is recorded and answered 400. */
  private async search(kind: SearchKind, body: unknown, call: CallMeta, caller: Caller): Promise<Answer> {
    let query = readSearch(kind, body, call.caller);
    if (query instanceof InvalidRequest) return this.single(confined(query, caller), call);
    if (caller.self !== null) {
      // Listing who may do something reveals everyone's permissions: a listed PEP's question only.
      if (kind === 'subject') return this.single(new RefusedRequest({ ...query.question, principal: caller.self }, notAPep(caller.caller, caller.self.id, 'a search over every subject')), call);
      const question = confined(query.question, caller);
      if (question instanceof RefusedRequest) return this.single(question, call);
      query = { ...query, question };
    }
    try {
      const { result, decisionId } = await this.pipeline.search(call, (policySet, decide, slicer) => searchPage(query, policySet, decide, this.tokens, slicer));
      return { status: 200, body: { ...result, context: { decision_id: decisionId } } };
    } catch (error) {
      if (!(error instanceof RequestFieldError)) throw error;
      return this.single(confined(new InvalidRequest(error, query.question), caller), call);
    }
  }

  /** One question: decided and answered 200, or, when it could not be read, recorded and answered 400. */
  private async single(question: Parameters<AuthZenPipeline['check']>[0], call: CallMeta): Promise<Answer> {
    const result = await this.pipeline.check(question, call);
    if (question instanceof InvalidRequest) return { status: 400, body: errorBody('bad request', question.error.message, result) };
    if (question instanceof RefusedRequest) return { status: 403, body: errorBody('forbidden', question.refusal.message, result) };
    return { status: 200, body: toAuthZenDecision(result) };
  }

  /** The caller, by its client certificate or its credential; `caller` is what the decision log records. */
  private async authenticate(req: IncomingMessage): Promise<({ ok: true } & Caller) | Extract<AuthnResult, { ok: false }>> {
    const certificate = tlsSocketIdentity(req.socket);
    const { peps } = this.options;
    if (certificate !== null && this.options.certificateAuthenticates) {
      if (peps.has(certificate)) return { ok: true, caller: certificate, self: null };
      return { ok: true, caller: certificate, self: { id: certificate, roles: NO_ROLES, attributes: NO_ATTRIBUTES } };
    }
    const headers: Record<string, string> = {};
    const repeatedHeaders = new Set<string>();
    for (const [name, values] of Object.entries(req.headersDistinct)) {
      if (values === undefined) continue;
      headers[name] = values.join(', ');
      if (values.length > 1) repeatedHeaders.add(name);
    }
    let result: AuthnResult;
    try {
      result = await this.authenticator.authenticate({ headers, repeatedHeaders });
    } catch (error) {
      // An authenticator that throws has failed to authenticate; the caller is refused, never let through.
      result = { ok: false, reason: 'UNAVAILABLE', message: `authentication could not be completed: ${messageOf(error)}` };
    }
    if (!result.ok) return result;
    const caller = certificate ?? `${result.method}:${result.principal.id}`;
    if (peps.has(caller)) return { ok: true, caller, self: null };
    return { ok: true, caller, self: result.principal };
  }
}

/**
 * A question from a caller that may ask only about itself: about another subject, or
 * stating its own subject.properties, it is refused, recorded, never decided; about
 * itself, it is decided with the credential's roles and attributes (the directory
 * still completes them), with `subject.type` as the attribute `type` unless the
 * credential sets one.
 */
function confined(question: CheckInput, caller: Caller): CheckInput {
  const self = caller.self;
  if (self === null) return question;
  // Refused or not, the row is the caller's own: recorded under another id, it would count as that principal's traffic (alerts, suspension).
  if (question instanceof RefusedRequest) {
    const asked = question.request.principal.id;
    if (asked === self.id) return question;
    const own = { ...question.request, principal: self };
    if (asked !== '') return new RefusedRequest(own, notAPep(caller.caller, self.id, JSON.stringify(asked)));
    return question instanceof InvalidRequest ? new InvalidRequest(question.error, own) : new RefusedRequest(own, question.refusal);
  }
  if (question.principal.id !== self.id) return new RefusedRequest({ ...question, principal: self }, notAPep(caller.caller, self.id, JSON.stringify(question.principal.id)));
  if (statesProperties(question.principal)) return new RefusedRequest({ ...question, principal: self }, selfStatedProperties(caller.caller));
  return { ...question, principal: asCredentialSays(self) };
}

/** Whether an AuthZEN subject carried properties beyond its type (which the reader files as the attribute `type`). */
function statesProperties(principal: Principal): boolean {
  if (principal.roles.length > 0) return true;
  for (const name in principal.attributes) if (name !== 'type') return true;
  return false;
}

/**
 * The caller as its credential (and then the directory) describes it. The `type` it
 * states is not taken: an end user's key asking as `{type: "service"}` was allowed by
 * a rule meant for services. Its type is whatever its credential or directory entry says.
 */
function asCredentialSays(self: Principal): Principal {
  return { id: self.id, roles: self.roles, attributes: self.attributes };
}

function errorBody(error: string, detail: string, result: CheckResult): Record<string, string> {
  return { error, detail, decision_id: result.decisionId };
}

/** The caller's `X-Request-ID`, echoed in the answer and recorded; one longer than 256 characters is ignored. */
function requestIdOf(req: IncomingMessage): string | null {
  const value = req.headers['x-request-id'];
  return typeof value === 'string' && value !== '' && value.length <= MAX_REQUEST_ID_LENGTH ? value : null;
}

/**
 * Reads a request body of at most `limit` bytes as UTF-8; null when it is not UTF-8
 * (decoding would mend such bytes to U+FFFD, so `dana\xff` and `dana\xfe` would be one
 * subject to the rules, the limits and the log).
 */
function readBody(req: IncomingMessage, limit: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      reject(new BodyTooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        // The rest is discarded, not kept; the connection ends with the answer.
        req.resume();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      const bytes = Buffer.concat(chunks);
      resolve(isUtf8(bytes) ? bytes.toString('utf8') : null);
    };
    // The request stream fails only when the caller's connection went before the body was whole:
    // nobody is left to answer, and it is no fault of the server's.
    const onError = (): void => {
      cleanup();
      reject(new VerdictError('CANCELLED', 'the caller closed the connection before its request arrived whole; nothing was decided'));
    };
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/**
 * The base URL of this policy decision point as the caller reached it: the scheme
 * of the connection and the `Host` it asked for, when that is a plain host name or
 * address (anything else is not echoed; the local address is used instead).
 */
function baseUrl(req: IncomingMessage): string {
  const scheme = 'encrypted' in req.socket && req.socket.encrypted ? 'https' : 'http';
  const host = req.headers.host;
  if (host !== undefined && HOST.test(host)) return `${scheme}://${host}`;
  const { localAddress, localPort } = req.socket;
  const address = localAddress === undefined ? 'localhost' : localAddress.includes(':') ? `[${localAddress}]` : localAddress;
  return `${scheme}://${address}:${localPort ?? ''}`;
}
