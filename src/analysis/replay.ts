import { COLUMNS, type RowValue } from '../decisions/columns.js';
import { HMAC_PREFIX } from '../decisions/sensitive.js';
import { evaluate } from '../engine/evaluate.js';
import type { PolicySet } from '../policy/policy-set.js';
import type { Attributes, Decision, DecisionRequest, Effect } from '../types.js';

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
 * - otherwise replayed: principal, action, resource and context exactly as
 *   recorded (for a gateway request, the question its route made of it).
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
export type RuleRole = 'denies' | 'erred' | 'no longer allows' | 'allows';

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
  readonly flips: Record<FlipDirection, FlipTally>;
  /** Rows refused before the rules, by reason (`NO_ROUTE` for a gateway request no route maps). */
  readonly refused: Map<string, Group>;
  readonly admin: Group;
  /** Rows with a masked attribute; byPath counts the paths found masked. */
  readonly masked: Group & { readonly byPath: Map<string, number> };
  /** Rows whose stored request is not a request (a log from elsewhere, or damage). */
  readonly unreadable: Group;
}

export function newTally(): ReplayTally {
  const flip = (): FlipTally => ({ count: 0, examples: [], byRule: new Map(), byPrincipal: new Map(), byAction: new Map(), byResourceType: new Map() });
  return {
    rows: 0,
    replayed: 0,
    unchanged: 0,
    gateway: 0,
    flips: { ALLOW_TO_DENY: flip(), DENY_TO_ALLOW: flip() },
    refused: new Map(),
    admin: { count: 0, examples: [] },
    masked: { count: 0, examples: [], byPath: new Map() },
    unreadable: { count: 0, examples: [] },
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

  constructor(
    private readonly candidate: PolicySet,
    private readonly baseline: PolicySet | null,
    private readonly options: ReplayerOptions,
  ) {}

  add(row: ReplayRow): void {
    const tally = this.tally;
    tally.rows++;
    const refusal = refusalOf(row);
    if (refusal !== null) {
      if (refusal === ADMIN) this.addExample(tally.admin, row);
      else this.addToGroup(tally.refused, refusal, row);
      return;
    }
    const request = typeof row.request === 'string' && (row.effect === 'ALLOW' || row.effect === 'DENY') ? requestOf(row) : null;
    if (request === null) {
      this.addExample(tally.unreadable, row);
      return;
    }
    if (row.request.includes(HMAC_PREFIX)) {
      const paths = maskedPaths(request);
      if (paths === null) {
        this.addExample(tally.unreadable, row);
        return;
      }
      if (paths.length > 0) {
        this.addExample(tally.masked, row);
        for (const path of paths) tally.masked.byPath.set(path, (tally.masked.byPath.get(path) ?? 0) + 1);
        return;
      }
    }
    tally.replayed++;
    if (typeof row.details === 'string' && row.details.includes('"http"')) tally.gateway++;
    const now = evaluate(this.candidate, request);
    const before: Decision | null = this.baseline === null ? null : evaluate(this.baseline, request);
    const beforeEffect = before === null ? (row.effect as Effect) : before.effect;
    if (now.effect === beforeEffect) {
      tally.unchanged++;
      return;
    }
    const direction: FlipDirection = now.effect === 'DENY' ? 'ALLOW_TO_DENY' : 'DENY_TO_ALLOW';
    const flip = tally.flips[direction];
    this.addExample(flip, row);
    this.addToGroup(flip.byPrincipal, row.principalId, row);
    this.addToGroup(flip.byAction, row.action, row);
    this.addToGroup(flip.byResourceType, row.resourceType, row);
    for (const key of ruleKeys(now, before, () => this.recordedRules(row))) this.addToGroup(flip.byRule, key, row);
  }

  /** The last row looked up: a flip adds the same row to several groups. */
  private lastLooked: { readonly row: ReplayRow; readonly decisionId: string; readonly ruleIds: string } | null = null;

  private looked(row: ReplayRow): { readonly decisionId: string; readonly ruleIds: string } {
    if (row.decisionId !== null && row.ruleIds !== null) return { decisionId: row.decisionId, ruleIds: row.ruleIds };
    if (this.lastLooked?.row === row) return this.lastLooked;
    const found = this.options.lookup?.(row.seq);
    this.lastLooked = { row, decisionId: row.decisionId ?? found?.decisionId ?? `seq ${row.seq}`, ruleIds: row.ruleIds ?? found?.ruleIds ?? '[]' };
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

const ADMIN = '\0admin';

/** Why a row never reached the rules (a refusal reason, NO_ROUTE, or ADMIN), or null for a row the rules decided. */
function refusalOf(row: ReplayRow): string | null {
  if (REFUSED_REASONS.has(row.reason)) return row.reason;
  // The engine's default deny names no rule and no error: one with an error is a gateway's "no route".
  if (row.reason === 'DENIED_BY_DEFAULT' && row.errors !== '[]') return 'NO_ROUTE';
  if (row.resourceType === 'verdict.admin' && typeof row.details === 'string') {
    const details = parseJson(row.details);
    if (isObject(details) && details.admin !== undefined) return ADMIN;
  }
  return null;
}

/** The recorded request, or null when the stored request is not one. */
function requestOf(row: ReplayRow): DecisionRequest | null {
  const stored = parseJson(row.request);
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
}
