import { COLUMNS, type RowValue } from '../decisions/columns.js';
import { HMAC_PREFIX } from '../decisions/sensitive.js';
import { completeRequest } from '../engine/complete.js';
import { withoutNullMembers } from '../engine/null-members.js';
import { decideAsServed } from '../engine/schema-checked.js';
import type { PolicySet } from '../policy/policy-set.js';
import { needsLostFacts, requestAsSent, type LostFacts } from './replay-directory.js';
import type { AttributeValue, Attributes, Decision, DecisionRequest, Effect } from '../types.js';

/**
 * Replay: re-evaluate recorded requests against a candidate policy set and
 * count the decisions whose effect would flip. Pure over rows (no I/O): the
 * thread that reads the rows (replay-range.ts) or an export feeds them to a
 * Replayer, whose tally crosses threads as plain data and is merged
 * (mergeTallies) into one report.
 *
 * What each row is:
 * - refused before the engine (an invalid request, a failed authentication, a
 *   gateway request no route maps, a rate limit): counted apart by reason,
 *   never evaluated, since the rules did not decide it then either;
 * - an Admin call (`verdict.admin` with `details.admin`): counted apart;
 * - stored with a masked attribute (`hmac-sha256:…`, sensitive.ts): not
 *   replayable, since the value the rules read is gone; counted, never guessed;
 * - otherwise replayed: the request as its caller sent it (the recorded one
 *   with what the directory filled in undone, replay-directory.ts), completed by
 *   each set's own directory, as serving that set would;
 * - recorded before `details.directory` carried what the directory replaced, and
 *   needing it (the set's directory no longer replaces those facts): not
 *   replayable, counted apart;
 * - a gateway request (`details.http`: its method and path), a NO_ROUTE one
 *   too, is routed again by each set's own routes (reroute), so a route edit
 *   shows: its path may now map to another action or resource, or to none.
 */

/** The columns a replay reads, by their key in the column table. */
export const REPLAY_KEYS = ['decisionId', 'principalId', 'action', 'resourceType', 'resourceId', 'effect', 'reason', 'ruleIds', 'errors', 'request', 'details'] as const;
type ReplayKey = (typeof REPLAY_KEYS)[number];

/** The stored columns (columns.ts) a replay reads, in REPLAY_KEYS order. */
export const REPLAY_COLUMNS = REPLAY_KEYS.map((key) => {
  const column = COLUMNS.find((c) => c.key === key);
  if (column === undefined) throw new Error(`no column ${key}`);
  return column;
});

/**
 * A stored row, the columns a replay reads: as stored (JSON columns as text).
 * `decisionId` and `ruleIds`, needed only for the few rows a report names, may
 * be left null by a reader that can look them up (ReplayerOptions.lookup).
 */
export type ReplayRow = { readonly seq: number } & { readonly [K in ReplayKey]: K extends 'details' | 'decisionId' | 'ruleIds' ? string | null : string };

/** The columns of a row a reader left out, looked up by seq. */
export type RowLookup = (seq: number) => { readonly decisionId: string; readonly ruleIds: string } | undefined;

/** Columns a log reader need not read for every row (see ReplayRow). */
export const LOOKED_UP_KEYS: ReadonlySet<ReplayKey> = new Set(['decisionId', 'ruleIds']);

const INDEX_IN_COLUMNS = REPLAY_KEYS.map((key) => COLUMNS.findIndex((c) => c.key === key));

/** The replay columns of a stored row whose values (COLUMNS order) are `values`. */
export function replayRowFromValues(seq: number, values: readonly RowValue[]): ReplayRow {
  const row: Record<string, unknown> = { seq };
  REPLAY_KEYS.forEach((key, k) => {
    row[key] = values[INDEX_IN_COLUMNS[k] as number];
  });
  return row as ReplayRow;
}

export const FLIP_DIRECTIONS = ['ALLOW_TO_DENY', 'DENY_TO_ALLOW'] as const;
export type FlipDirection = (typeof FLIP_DIRECTIONS)[number];

/** A decision named in a report: its place in the log and its id. */
export type Example = readonly [seq: number, decisionId: string];

export interface Group {
  count: number;
  examples: Example[];
}

/** What a rule did in the flips counted under it. */
export type RuleRole = 'denies' | 'erred' | 'no longer allows' | 'allows' | 'no route' | 'refused';

export interface FlipTally {
  count: number;
  examples: Example[];
  /** Key: `role\0rule id`. A flip counts under every rule that explains it. */
  readonly byRule: Map<string, Group>;
  readonly byPrincipal: Map<string, Group>;
  readonly byAction: Map<string, Group>;
  readonly byResourceType: Map<string, Group>;
}

/** Everything a replay counted; plain data (Maps included) that crosses threads as it is. */
export interface ReplayTally {
  rows: number;
  replayed: number;
  unchanged: number;
  /** Replayed rows that were gateway requests (they carry `details.http`). */
  gateway: number;
  /** Gateway rows the candidate's routes map to another action, resource or attributes than recorded (or map where none did). */
  readonly rerouted: Group;
  /** Gateway rows routed before that no route of the candidate maps, by `METHOD path`. */
  readonly unrouted: Group & { readonly byRoute: Map<string, Group> };
  /** Gateway rows a route would read a value of that was never recorded (a header, query parameter…): not replayable; byPath counts the values. */
  readonly unrecorded: Group & { readonly byPath: Map<string, number> };
  readonly flips: Record<FlipDirection, FlipTally>;
  /** Rows refused before the rules, by reason (`NO_ROUTE` for a gateway request no route maps). */
  readonly refused: Map<string, Group>;
  readonly admin: Group;
  /** Rows with a masked attribute; byPath counts the paths found masked. */
  readonly masked: Group & { readonly byPath: Map<string, number> };
  /** Rows whose stored request is not a request (a log from elsewhere, or damage). */
  readonly unreadable: Group;
  /** Rows whose directory facts cannot be undone: recorded without what they replaced, which a set asked needs. */
  readonly directoryFactsLost: Group;
}

export function newTally(): ReplayTally {
  const flip = (): FlipTally => ({ count: 0, examples: [], byRule: new Map(), byPrincipal: new Map(), byAction: new Map(), byResourceType: new Map() });
  return {
    rows: 0,
    replayed: 0,
    unchanged: 0,
    gateway: 0,
    rerouted: { count: 0, examples: [] },
    unrouted: { count: 0, examples: [], byRoute: new Map() },
    unrecorded: { count: 0, examples: [], byPath: new Map() },
    flips: { ALLOW_TO_DENY: flip(), DENY_TO_ALLOW: flip() },
    refused: new Map(),
    admin: { count: 0, examples: [] },
    masked: { count: 0, examples: [], byPath: new Map() },
    unreadable: { count: 0, examples: [] },
    directoryFactsLost: { count: 0, examples: [] },
  };
}

/** Reasons that mean the request never reached the rules. */
const REFUSED_REASONS: ReadonlySet<string> = new Set(['DENIED_INVALID_REQUEST', 'DENIED_UNAUTHENTICATED', 'DENIED_BY_RATE_LIMIT', 'DENIED_BY_SUSPENSION']);
const HMAC_VALUE = new RegExp(`^${HMAC_PREFIX}[0-9a-f]{64}$`);

export interface ReplayerOptions {
  /** Example decision ids kept per group. */
  readonly examples: number;
  /** Where to find a row's decision id and rule ids when the row leaves them null. */
  readonly lookup?: RowLookup;
}

/**
 * Replays rows one at a time against `candidate`, comparing with the recorded
 * effect, or with `baseline`'s when one is given (then both sets answer the
 * same recorded requests, so only the change between them shows).
 *
 * @example
 * const replayer = new Replayer(candidate.policySet, null, { examples: 3 });
 * for (const row of rows) replayer.add(row);
 * const tally = replayer.tally;
 */
export class Replayer {
  readonly tally: ReplayTally = newTally();
  private readonly requests = new RequestDecoder();
  /** Outcomes by stored request text (outcome); null once it proved useless. */
  private decided: Map<string, CachedOutcome> | null = new Map();
  private cacheHits = 0;
  private cacheMisses = 0;

  constructor(
    private readonly candidate: PolicySet,
    private readonly baseline: PolicySet | null,
    private readonly options: ReplayerOptions,
  ) {}

  add(row: ReplayRow): void {
    const tally = this.tally;
    tally.rows++;
    const refusal = refusalOf(row);
    // A gateway request the rules decided, or no route mapped, is routed again; other refusals stay refusals.
    const http = (refusal === null || refusal === NO_ROUTE) && typeof row.details === 'string' && row.details.includes('"http"') ? httpOf(row.details) : null;
    if (refusal !== null && (refusal !== NO_ROUTE || http === null)) {
      if (refusal === ADMIN) this.addExample(tally.admin, row);
      else this.addToGroup(tally.refused, refusal, row);
      return;
    }
    if (http === null) {
      this.count(row, this.outcome(row));
      return;
    }
    const decoded = http !== BAD_HTTP && typeof row.request === 'string' && (row.effect === 'ALLOW' || row.effect === 'DENY') ? this.requests.decode(row) : null;
    const sent = decoded === null ? UNREADABLE_SENT : requestAsSent(decoded, directoryOf(row));
    const unreplayable = sent.kind === 'unreadable' ? UNREADABLE : this.maskedOutcome(row, sent.request);
    if (unreplayable !== null || sent.kind === 'unreadable' || http === BAD_HTTP) {
      this.count(row, unreplayable ?? UNREADABLE);
      return;
    }
    this.addGateway(row, sent.request, sent.lost, http, refusal === NO_ROUTE);
  }

  /**
   * What a row the rules decided comes to, decided once per distinct request:
   * the engine is pure, so a request recorded again (same stored request text,
   * principal, action and resource) is decided as before. The cache stops
   * itself when requests rarely repeat (a distinct context on every row).
   */
  private outcome(row: ReplayRow): Outcome {
    if (typeof row.request !== 'string' || (row.effect !== 'ALLOW' && row.effect !== 'DENY')) return UNREADABLE;
    const cache = this.decided;
    // What the directory filled in is undone from details.directory, so the outcome depends on it too.
    const key = typeof row.details === 'string' && row.details.includes('"directory"') ? `${row.request}\0${row.details}` : row.request;
    if (cache !== null) {
      const hit = cache.get(key);
      if (hit !== undefined && hit.principalId === row.principalId && hit.action === row.action && hit.resourceType === row.resourceType && hit.resourceId === row.resourceId) {
        this.cacheHits++;
        return hit.outcome;
      }
    }
    // A recorded null is decided as absent, as the server decides it now.
    const decoded = this.requests.decode(row);
    const sent = decoded === null ? UNREADABLE_SENT : requestAsSent(withoutNullMembers(decoded), directoryOf(row));
    const outcome = sent.kind === 'unreadable' ? UNREADABLE : (this.maskedOutcome(row, sent.request) ?? this.lostOutcome(sent.request, sent.lost, row) ?? {
      kind: 'decided' as const,
      // The request as sent, completed by each set's own directories, as serving that set would.
      now: decideAsServed(this.candidate, sent.request),
      before: this.baseline === null ? null : decideAsServed(this.baseline, sent.request),
    });
    if (cache !== null) {
      this.cacheMisses++;
      if (this.cacheMisses === CACHE_TRIAL && this.cacheHits < CACHE_TRIAL / 8) this.decided = null;
      else {
        if (cache.size >= MAX_CACHED) cache.clear();
        cache.set(key, { principalId: row.principalId, action: row.action, resourceType: row.resourceType, resourceId: row.resourceId, outcome });
      }
    }
    return outcome;
  }

  /** A row whose directory facts were recorded without what they replaced, which the candidate or baseline would read: its outcome; null when neither would. */
  private lostOutcome(question: DecisionRequest, lost: LostFacts | null, row: ReplayRow): Outcome | null {
    if (lost === null) return null;
    const recordedResource = { type: row.resourceType, id: row.resourceId };
    const needed = needsLostFacts(this.candidate, question, lost, recordedResource) || (this.baseline !== null && needsLostFacts(this.baseline, question, lost, recordedResource));
    return needed ? DIRECTORY_FACTS_LOST : null;
  }

  /** A row with an attribute stored masked (or nested too deep to tell) cannot be replayed: its outcome; null when it can. */
  private maskedOutcome(row: ReplayRow, request: DecisionRequest): Outcome | null {
    // A value the directory replaced is kept in details.directory, masked there too when sensitive.
    if (!row.request.includes(HMAC_PREFIX) && !(typeof row.details === 'string' && row.details.includes(HMAC_PREFIX))) return null;
    const paths = maskedPaths(request);
    if (paths === null) return UNREADABLE;
    return paths.length > 0 ? { kind: 'masked', paths } : null;
  }

  /** Count a row whose outcome is known. */
  private count(row: ReplayRow, outcome: Outcome): void {
    const tally = this.tally;
    if (outcome.kind === 'unreadable') {
      this.addExample(tally.unreadable, row);
      return;
    }
    if (outcome.kind === 'directory-facts-lost') {
      this.addExample(tally.directoryFactsLost, row);
      return;
    }
    if (outcome.kind === 'masked') {
      this.addExample(tally.masked, row);
      for (const path of outcome.paths) tally.masked.byPath.set(path, (tally.masked.byPath.get(path) ?? 0) + 1);
      return;
    }
    tally.replayed++;
    const { now, before } = outcome;
    const beforeEffect = before === null ? (row.effect as Effect) : before.effect;
    if (now.effect === beforeEffect) {
      tally.unchanged++;
      return;
    }
    this.addFlip(row, now.effect, row.action, row.resourceType, () => ruleKeys(now, before, () => this.recordedRules(row)));
  }

  /**
   * A gateway row: its recorded method and path routed by the candidate's
   * routes (and the baseline's), then decided; `unrouted` when no route mapped
   * it when it was recorded.
   */
  private addGateway(row: ReplayRow, request: DecisionRequest, lost: LostFacts | null, http: HttpFacts, unrouted: boolean): void {
    const tally = this.tally;
    const recorded = unrouted ? null : request;
    const now = reroute(this.candidate, http, request, recorded);
    const before = this.baseline === null ? null : reroute(this.baseline, http, request, recorded);
    const missing = now.kind === 'missing' ? now.missing : before?.kind === 'missing' ? before.missing : null;
    if (missing !== null) {
      this.addExample(tally.unrecorded, row);
      tally.unrecorded.byPath.set(missing, (tally.unrecorded.byPath.get(missing) ?? 0) + 1);
      return;
    }
    if (lost !== null) {
      const recordedResource = { type: row.resourceType, id: row.resourceId };
      const needed = (now.kind === 'routed' && needsLostFacts(this.candidate, now.request, lost, recordedResource)) || (before?.kind === 'routed' && this.baseline !== null && needsLostFacts(this.baseline, before.request, lost, recordedResource));
      if (needed) {
        this.addExample(tally.directoryFactsLost, row);
        return;
      }
    }
    const routedBefore = before === null ? !unrouted : before.kind === 'routed';
    if (now.kind !== 'routed' && !routedBefore) {
      // Neither set routes it: a NO_ROUTE refusal still, never reaching the rules.
      this.addToGroup(tally.refused, NO_ROUTE, row);
      return;
    }
    tally.replayed++;
    tally.gateway++;
    if (now.kind === 'routed') {
      if (recorded === null || !sameQuestion(now.request, recorded)) this.addExample(tally.rerouted, row);
    } else {
      const key = `${http.method} ${http.path}`;
      this.addExample(tally.unrouted, row);
      this.addToGroup(tally.unrouted.byRoute, key, row);
    }
    const nowDecision = now.kind === 'routed' ? decideAsServed(this.candidate, now.request) : null;
    const beforeDecision = before?.kind === 'routed' && this.baseline !== null ? decideAsServed(this.baseline, before.request) : null;
    const nowEffect: Effect = nowDecision?.effect ?? 'DENY';
    const beforeEffect: Effect = before === null ? (row.effect as Effect) : (beforeDecision?.effect ?? 'DENY');
    if (nowEffect === beforeEffect) {
      tally.unchanged++;
      return;
    }
    const asked = now.kind === 'routed' ? now.request : request;
    this.addFlip(row, nowEffect, asked.action, asked.resource.type, () =>
      nowDecision === null ? [`no route\0${http.method} ${http.path}`] : ruleKeys(nowDecision, beforeDecision, () => this.recordedRules(row)),
    );
  }

  private addFlip(row: ReplayRow, now: Effect, action: string, resourceType: string, keys: () => readonly string[]): void {
    const direction: FlipDirection = now === 'DENY' ? 'ALLOW_TO_DENY' : 'DENY_TO_ALLOW';
    const flip = this.tally.flips[direction];
    this.addExample(flip, row);
    this.addToGroup(flip.byPrincipal, row.principalId, row);
    this.addToGroup(flip.byAction, action, row);
    this.addToGroup(flip.byResourceType, resourceType, row);
    for (const key of keys()) this.addToGroup(flip.byRule, key, row);
  }

  /** The last row looked up: a flip adds the same row to several groups. */
  private lastLooked: { readonly seq: number; readonly decisionId: string; readonly ruleIds: string } | null = null;

  private looked(row: ReplayRow): { readonly decisionId: string; readonly ruleIds: string } {
    if (row.decisionId !== null && row.ruleIds !== null) return { decisionId: row.decisionId, ruleIds: row.ruleIds };
    if (this.lastLooked?.seq === row.seq) return this.lastLooked;
    const found = this.options.lookup?.(row.seq);
    this.lastLooked = { seq: row.seq, decisionId: row.decisionId ?? found?.decisionId ?? `seq ${row.seq}`, ruleIds: row.ruleIds ?? found?.ruleIds ?? '[]' };
    return this.lastLooked;
  }

  private recordedRules(row: ReplayRow): readonly string[] {
    const ids = parseJson(this.looked(row).ruleIds);
    return Array.isArray(ids) ? ids.filter((id): id is string => typeof id === 'string') : [];
  }

  /** Count a row in `group`, keeping the earliest examples (rows arrive in seq order within a range). */
  private addExample(group: Group, row: ReplayRow): void {
    group.count++;
    if (group.examples.length < this.options.examples) group.examples.push([row.seq, row.decisionId ?? this.looked(row).decisionId]);
  }

  private addToGroup(groups: Map<string, Group>, key: string, row: ReplayRow): void {
    let group = groups.get(key);
    if (group === undefined) {
      group = { count: 0, examples: [] };
      groups.set(key, group);
    }
    this.addExample(group, row);
  }
}

/** What a row the rules decided comes to (not counting its recorded answer). */
type Outcome =
  | { readonly kind: 'unreadable' }
  | { readonly kind: 'masked'; readonly paths: readonly string[] }
  | { readonly kind: 'directory-facts-lost' }
  | { readonly kind: 'decided'; readonly now: Decision; readonly before: Decision | null };

const UNREADABLE: Outcome = { kind: 'unreadable' };
const DIRECTORY_FACTS_LOST: Outcome = { kind: 'directory-facts-lost' };
const UNREADABLE_SENT = { kind: 'unreadable' } as const;

/** `details.directory` of a row, parsed: undefined when it has none, null when its details are not an object. */
function directoryOf(row: ReplayRow): unknown {
  if (typeof row.details !== 'string' || !row.details.includes('"directory"')) return undefined;
  const details = parseJson(row.details);
  return isObject(details) ? details.directory : null;
}

interface CachedOutcome {
  readonly principalId: string;
  readonly action: string;
  readonly resourceType: string;
  readonly resourceId: string;
  readonly outcome: Outcome;
}

/** Distinct requests whose outcome is kept; past this the cache starts again. */
const MAX_CACHED = 1 << 16;
/** Misses after which a cache hit by fewer than one lookup in 8 is dropped. */
const CACHE_TRIAL = 4096;

const ADMIN = '\0admin';
const NO_ROUTE = 'NO_ROUTE';

/** The recorded method and path of a gateway request (`details.http`). */
interface HttpFacts {
  readonly method: string;
  readonly path: string;
}
const BAD_HTTP = Symbol('bad details.http');

/**
 * The longest path the gateway adapter records (gateway/adapter.ts): a
 * recorded path this long may have been cut, so it is not routed again.
 */
const RECORDED_PATH_LENGTH = 2048;

/** `details.http` of a row, null when it has none, BAD_HTTP when it is not a method and a path. */
function httpOf(detailsText: string): HttpFacts | typeof BAD_HTTP | null {
  const details = parseJson(detailsText);
  if (!isObject(details) || details.http === undefined) return null;
  const http = details.http;
  if (!isObject(http) || typeof http.method !== 'string' || typeof http.path !== 'string') return BAD_HTTP;
  return { method: http.method, path: http.path };
}

type Rerouted =
  | { readonly kind: 'routed'; readonly request: DecisionRequest }
  | { readonly kind: 'unrouted' }
  | { readonly kind: 'missing'; readonly missing: string };

const UNROUTED: Rerouted = { kind: 'unrouted' };

/**
 * The question `set`'s routes make of a recorded gateway request: the
 * principal as recorded; action, resource and context from the route that
 * maps its method and path (values the route reads of headers, the query,
 * the source or extensions, never recorded, are taken from `recorded`, the
 * request as its route made it then, or null when no route mapped it).
 */
function reroute(set: PolicySet, http: HttpFacts, request: DecisionRequest, recorded: DecisionRequest | null): Rerouted {
  if (http.path.length >= RECORDED_PATH_LENGTH) return { kind: 'missing', missing: 'http.path (recorded cut)' };
  const method = http.method.toUpperCase();
  const match = set.routes.match(method, http.path);
  if (match.kind !== 'matched') return UNROUTED;
  const routed = match.route.resolveRecorded(match.params, (target) => (recorded === null ? undefined : recordedValue(recorded, target)));
  if (routed.missing !== undefined) return { kind: 'missing', missing: routed.missing };
  return { kind: 'routed', request: { principal: request.principal, action: routed.action, resource: routed.resource, context: routed.context } };
}

/** The value at `target` (`resource.id`, `resource.attributes.x`, `context.attributes.x`) of a recorded request. */
function recordedValue(request: DecisionRequest, target: string): AttributeValue | undefined {
  if (target === 'resource.id') return request.resource.id;
  const attributes = target.startsWith('resource.attributes.') ? request.resource.attributes : target.startsWith('context.attributes.') ? request.context.attributes : null;
  if (attributes === null) return undefined;
  const name = target.slice(target.indexOf('.attributes.') + '.attributes.'.length);
  return Object.hasOwn(attributes, name) ? attributes[name] : undefined;
}

/** Whether two gateway questions are the same: action, resource and context (route values are scalars). */
function sameQuestion(a: DecisionRequest, b: DecisionRequest): boolean {
  return a.action === b.action && a.resource.type === b.resource.type && a.resource.id === b.resource.id && sameScalars(a.resource.attributes, b.resource.attributes) && sameScalars(a.context.attributes, b.context.attributes);
}

function sameScalars(a: Attributes, b: Attributes): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) if (!Object.hasOwn(b, key) || a[key] !== b[key]) return false;
  return true;
}

/** Why a row never reached the rules (a refusal reason, NO_ROUTE, or ADMIN), or null for a row the rules decided. */
function refusalOf(row: ReplayRow): string | null {
  if (REFUSED_REASONS.has(row.reason)) return row.reason;
  // The engine's default deny names no rule and no error: one with an error is a gateway's "no route".
  if (row.reason === 'DENIED_BY_DEFAULT' && row.errors !== '[]') return NO_ROUTE;
  if (row.resourceType === 'verdict.admin' && typeof row.details === 'string') {
    const details = parseJson(row.details);
    if (isObject(details) && details.admin !== undefined) return ADMIN;
  }
  return null;
}

/** The recorded request, or null when the stored request is not one. */
function requestOf(row: ReplayRow): DecisionRequest | null {
  return requestFrom(row, parseJson(row.request));
}

function requestFrom(row: ReplayRow, stored: unknown): DecisionRequest | null {
  if (!isObject(stored)) return null;
  const { principal, resource, context } = stored;
  if (!isObject(principal) || !isObject(resource) || !isObject(context)) return null;
  const roles = principal.roles;
  if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string')) return null;
  if (!isObject(principal.attributes) || !isObject(resource.attributes) || !isObject(context.attributes)) return null;
  return {
    principal: { id: row.principalId, roles: roles as string[], attributes: principal.attributes as Attributes },
    action: row.action,
    resource: { type: row.resourceType, id: row.resourceId, attributes: resource.attributes as Attributes },
    context: { attributes: context.attributes as Attributes },
  };
}

const PRINCIPAL_AT = '{"principal":';
const RESOURCE_AT = ',"resource":';
const CONTEXT_AT = ',"context":';
/** Distinct principal and resource parts kept, each; past this the cache starts again. */
const MAX_PARTS = 1 << 16;

/**
 * Decodes stored requests (`{"principal":P,"resource":R,"context":C}`, as the
 * pipeline records them) without parsing again the principal and resource
 * parts it has already seen: a log repeats its principals and resources, while
 * the context is mostly new each time. A part is cached only after a full parse
 * showed its text to be exactly one complete JSON value; at the same place in
 * another request, such a text can only be read as that same value (JSON
 * values end unambiguously), so a cache hit is what a full parse would give.
 * Anything else (other keys, another order, a context that is not one value)
 * falls back to the full parse. Cached values are shared and never mutated.
 */
export class RequestDecoder {
  private readonly principals = new Map<string, Record<string, unknown>>();
  private readonly resources = new Map<string, Record<string, unknown>>();

  decode(row: ReplayRow): DecisionRequest | null {
    const text = row.request;
    const r = text.startsWith(PRINCIPAL_AT) ? text.indexOf(RESOURCE_AT, PRINCIPAL_AT.length) : -1;
    const c = r === -1 ? -1 : text.indexOf(CONTEXT_AT, r + RESOURCE_AT.length);
    if (c === -1 || text.charCodeAt(text.length - 1) !== 0x7d) return requestOf(row);
    const principalText = text.slice(PRINCIPAL_AT.length, r);
    const resourceText = text.slice(r + RESOURCE_AT.length, c);
    const principal = this.principals.get(principalText);
    const resource = this.resources.get(resourceText);
    if (principal !== undefined && resource !== undefined) {
      const context = parseJson(text.slice(c + CONTEXT_AT.length, -1));
      if (context !== undefined) return requestFrom(row, { principal, resource, context });
    }
    const stored = parseJson(text);
    if (isObject(stored)) {
      if (principal === undefined && isObject(stored.principal) && JSON.stringify(stored.principal) === principalText) remember(this.principals, principalText, stored.principal);
      if (resource === undefined && isObject(stored.resource) && JSON.stringify(stored.resource) === resourceText) remember(this.resources, resourceText, stored.resource);
    }
    return requestFrom(row, stored);
  }
}

function remember(cache: Map<string, Record<string, unknown>>, text: string, value: Record<string, unknown>): void {
  if (cache.size >= MAX_PARTS) cache.clear();
  cache.set(text, value);
}

/** Deeper attributes than this make a row unreadable rather than a deep recursion. */
const MAX_DEPTH = 64;

/**
 * The attribute paths of `request` whose values are stored as an HMAC (array
 * positions as `[]`), or null when the attributes nest deeper than MAX_DEPTH.
 */
function maskedPaths(request: DecisionRequest): string[] | null {
  const paths = new Set<string>();
  const walk = (value: unknown, path: string, depth: number): boolean => {
    if (depth > MAX_DEPTH) return false;
    if (typeof value === 'string') {
      if (HMAC_VALUE.test(value)) paths.add(path);
    } else if (Array.isArray(value)) {
      for (const v of value) if (!walk(v, `${path}[]`, depth + 1)) return false;
    } else if (isObject(value)) {
      for (const [k, v] of Object.entries(value)) if (!walk(v, `${path}.${k}`, depth + 1)) return false;
    }
    return true;
  };
  const ok =
    walk(request.principal.attributes, 'principal.attributes', 0) &&
    walk(request.resource.attributes, 'resource.attributes', 0) &&
    walk(request.context.attributes, 'context.attributes', 0);
  return ok ? [...paths] : null;
}

/**
 * The rules that explain a flip, as `role\0rule id`: the rules behind the new
 * answer, or, when the new answer is a default deny, the rules that allowed
 * before (recorded or baseline) and no longer do.
 */
function ruleKeys(now: Decision, before: Decision | null, recorded: () => readonly string[]): string[] {
  if (now.effect === 'ALLOW') return now.ruleIds.map((id) => `allows\0${id}`);
  if (now.reason === 'DENIED_BY_RULE') return now.ruleIds.map((id) => `denies\0${id}`);
  if (now.reason === 'DENIED_BY_ERROR') return now.ruleIds.map((id) => `erred\0${id}`);
  // The candidate's attribute schema refuses the request (enforcement: reject): grouped under rule `schema`.
  if (now.reason === 'DENIED_INVALID_REQUEST') return now.errors.map((e) => `refused\0${e.ruleId}`);
  const allowedBy = before !== null ? before.ruleIds : recorded();
  return allowedBy.length > 0 ? allowedBy.map((id) => `no longer allows\0${id}`) : ['no longer allows\0(none recorded)'];
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ------------------------------------------------------------------ merging

function mergeGroup(into: Group, from: Group, n: number): void {
  into.count += from.count;
  into.examples = [...into.examples, ...from.examples].sort((a, b) => a[0] - b[0]).slice(0, n);
}

function mergeGroups(into: Map<string, Group>, from: ReadonlyMap<string, Group>, n: number): void {
  for (const [key, group] of from) {
    const mine = into.get(key);
    if (mine === undefined) into.set(key, { count: group.count, examples: [...group.examples] });
    else mergeGroup(mine, group, n);
  }
}

/** Add `from` to `into`: the tallies of ranges replayed apart become the tally of all of them. */
export function mergeTallies(into: ReplayTally, from: ReplayTally, n: number): void {
  into.rows += from.rows;
  into.replayed += from.replayed;
  into.unchanged += from.unchanged;
  into.gateway += from.gateway;
  mergeGroup(into.rerouted, from.rerouted, n);
  mergeGroup(into.unrouted, from.unrouted, n);
  mergeGroups(into.unrouted.byRoute, from.unrouted.byRoute, n);
  mergeGroup(into.unrecorded, from.unrecorded, n);
  for (const [path, count] of from.unrecorded.byPath) into.unrecorded.byPath.set(path, (into.unrecorded.byPath.get(path) ?? 0) + count);
  for (const direction of FLIP_DIRECTIONS) {
    const a = into.flips[direction];
    const b = from.flips[direction];
    mergeGroup(a, b, n);
    mergeGroups(a.byRule, b.byRule, n);
    mergeGroups(a.byPrincipal, b.byPrincipal, n);
    mergeGroups(a.byAction, b.byAction, n);
    mergeGroups(a.byResourceType, b.byResourceType, n);
  }
  mergeGroups(into.refused, from.refused, n);
  mergeGroup(into.admin, from.admin, n);
  mergeGroup(into.masked, from.masked, n);
  for (const [path, count] of from.masked.byPath) into.masked.byPath.set(path, (into.masked.byPath.get(path) ?? 0) + count);
  mergeGroup(into.unreadable, from.unreadable, n);
  mergeGroup(into.directoryFactsLost, from.directoryFactsLost, n);
}
