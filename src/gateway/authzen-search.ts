// The AuthZEN Search APIs (subject, resource, action) over the policy set's
// directories: every result, when evaluated, is a permit.

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { InvalidRequest, type BatchSlicer, RequestFieldError, type SearchOutcome } from '../decide/index.js';
import type { DirectoryPrincipal, DirectoryResource } from '../policy/directory.js';
import type { PolicySet } from '../policy/policy-set.js';
import type { Decision, DecisionRequest } from '../types.js';
import { readEvaluation } from './authzen.js';

export const SEARCH_KINDS = ['subject', 'resource', 'action'] as const;
export type SearchKind = (typeof SEARCH_KINDS)[number];

/** Results per page when `page.limit` is not given, and the most a page may ask for. */
export const DEFAULT_PAGE_LIMIT = 100;
export const MAX_PAGE_LIMIT = 1000;
/**
 * The most candidates one page evaluates. A page that reaches it before filling up
 * is answered with what it found and a `next_token` to go on from there, so one call's
 * work is bounded whatever the directory's size and however few candidates are permitted.
 */
export const MAX_CANDIDATES_PER_PAGE = 10_000;
/**
 * The most work one page may do, in values of the question gone through: each candidate
 * is completed from the directories and evaluated as a check of the whole question would
 * be (the meter measures the parts candidates share once), so its cost grows with the
 * question's size (a resource search with 9,000 properties over 30,000 resources took 65 s
 * of CPU in one call; completing 9,000 attributes costs about 4 ms a candidate). A page asks at
 * most this many values' worth of candidates (MAX_CANDIDATES_PER_PAGE at most), about
 * 100 ms of work: a question of up to 20 values is not held back, one of 9,000 pages
 * after 22 candidates.
 */
export const MAX_SEARCH_WORK_PER_PAGE = 200_000;
const MAX_TOKEN_LENGTH = 512;
const SEARCH_KEYS = new Set(['subject', 'action', 'resource', 'context', 'page']);
const PAGE_KEYS = new Set(['token', 'limit', 'properties']);
/** Stands in for the searched member's id while the rest of the request is read: never evaluated. */
const PROBE = '*';

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/** A search request, read: the question with the searched member left open, and the page asked for. */
export interface SearchQuery {
  readonly kind: SearchKind;
  /** The request with the searched member's id (or the action) left empty, as recorded. */
  readonly question: DecisionRequest;
  readonly body: Json;
  readonly limit: number;
  readonly token: string | null;
  /** Binds a page token to this query: the hash of the query without its page. */
  readonly fingerprint: string;
  /** Who asks (the decision log's caller): a page token is good only for the caller it was issued to. */
  readonly caller: string;
}

/** An AuthZEN search response. */
export interface SearchResponse {
  readonly results: readonly Record<string, string>[];
  readonly page: { readonly next_token: string; readonly count: number };
  readonly context: { readonly decision_id: string };
}

/**
 * Reads a search body; a bad one is an InvalidRequest naming the field (recorded
 * and answered 400 by the endpoint).
 */
export function readSearch(kind: SearchKind, body: unknown, caller: string): SearchQuery | InvalidRequest {
  const empty = readEvaluation(null) as InvalidRequest;
  const refuse = (error: RequestFieldError): InvalidRequest => new InvalidRequest(error, empty.request);
  if (!isObject(body)) return refuse(RequestFieldError.invalid('(body)', `must be a JSON object with subject, action and resource`));
  for (const key of Object.keys(body)) {
    if (!SEARCH_KEYS.has(key)) return refuse(RequestFieldError.invalid(key, `not a member of a search request (expected ${[...SEARCH_KEYS].join(', ')})`));
  }
  let limit = DEFAULT_PAGE_LIMIT;
  let token: string | null = null;
  if (body.page !== undefined) {
    if (!isObject(body.page)) return refuse(RequestFieldError.invalid('page', 'must be a JSON object'));
    for (const key of Object.keys(body.page)) {
      if (!PAGE_KEYS.has(key)) return refuse(RequestFieldError.invalid(`page.${key}`, `not a member of page (expected ${[...PAGE_KEYS].join(', ')})`));
    }
    const given = body.page.limit;
    if (given !== undefined) {
      if (typeof given !== 'number' || !Number.isInteger(given) || given < 1 || given > MAX_PAGE_LIMIT) {
        return refuse(RequestFieldError.invalid('page.limit', `must be a whole number from 1 to ${MAX_PAGE_LIMIT}`));
      }
      limit = given;
    }
    if (body.page.token !== undefined && body.page.token !== '') {
      if (typeof body.page.token !== 'string') return refuse(RequestFieldError.invalid('page.token', 'must be the next_token of an earlier response'));
      token = body.page.token;
    }
  }
  // The searched member's id (the action's name) is what is searched for: read the rest with a stand-in.
  const probe: Json = { subject: body.subject, action: body.action, resource: body.resource, ...(body.context === undefined ? {} : { context: body.context }) };
  if (kind === 'subject' && isObject(body.subject)) probe.subject = { ...body.subject, id: PROBE };
  if (kind === 'resource' && isObject(body.resource)) probe.resource = { ...body.resource, id: PROBE };
  if (kind === 'action') probe.action = { name: PROBE };
  const read = readEvaluation(probe);
  if (read instanceof InvalidRequest) return read;
  const open = read as DecisionRequest;
  const question: DecisionRequest = {
    principal: kind === 'subject' ? { ...open.principal, id: '' } : open.principal,
    action: kind === 'action' ? '' : open.action,
    resource: kind === 'resource' ? { ...open.resource, id: '' } : open.resource,
    context: open.context,
  };
  const fingerprint = createHash('sha256').update(JSON.stringify([kind, probe])).digest('base64url');
  return { kind, question, body: probe, limit, token, fingerprint, caller };
}

/**
 * Page tokens: where the next page starts, for which query, which caller and which
 * policy version, signed with a key of this process (HMAC-SHA256), so a token cannot
 * be forged or moved to another query, nor handed to (or taken by) another caller to
 * page on with, and a token from before a policy change is refused.
 */
export class PageTokens {
  private readonly key = randomBytes(32);

  issue(fingerprint: string, caller: string, version: string, offset: number): string {
    const payload = Buffer.from(JSON.stringify({ o: offset, v: versionTag(version), q: fingerprint, c: callerTag(caller) })).toString('base64url');
    return `${payload}.${this.tag(payload)}`;
  }

  /** Where the page starts. @throws RequestFieldError (page.token) for a token that is not one of ours for this query, caller and version */
  open(token: string, fingerprint: string, caller: string, version: string): number {
    const bad = (why: string): RequestFieldError => RequestFieldError.invalid('page.token', why);
    if (token.length > MAX_TOKEN_LENGTH) throw bad('is not a token this server issued');
    const dot = token.indexOf('.');
    if (dot <= 0) throw bad('is not a token this server issued');
    const payload = token.slice(0, dot);
    // Compared as text: base64url decoding ignores stray trailing characters, a token must be exactly as issued.
    const given = Buffer.from(token.slice(dot + 1), 'utf8');
    const expected = Buffer.from(this.tag(payload), 'utf8');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw bad('is not a token this server issued (or it was issued before a restart); start the search again without it');
    const data = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { o: number; v: string; q: string; c: string };
    if (data.c !== callerTag(caller)) throw bad('was issued to another caller; a page token is good only for the caller that started the search, so start it again without the token');
    if (data.q !== fingerprint) throw bad('belongs to another search; send the same subject, action, resource and context as the first page');
    if (data.v !== versionTag(version)) throw bad('was issued under other policies; the policies changed since, so start the search again without it');
    return data.o;
  }

  private tag(payload: string): string {
    return createHmac('sha256', this.key).update(payload).digest().subarray(0, 18).toString('base64url');
  }
}

const versionTag = (version: string): string => createHash('sha256').update(version).digest('base64url').slice(0, 16);
const callerTag = (caller: string): string => createHash('sha256').update(caller).digest('base64url').slice(0, 16);

// Candidates in a fixed order per policy set, built once per set and kept while the set is.
// Lists are kept per resource type the policies know (their directories' types and the
// types their rules name); every other type a caller sends shares one list, so that
// searching with a new type each time adds nothing (a cache keyed by the caller's types
// grew about 8 KiB a search, until the heap ran out).
const principalLists = new WeakMap<PolicySet, readonly DirectoryPrincipal[]>();
const resourceLists = new WeakMap<PolicySet, Map<string, readonly DirectoryResource[]>>();
const actionLists = new WeakMap<PolicySet, Map<string, readonly string[]>>();
const ruleTypes = new WeakMap<PolicySet, ReadonlySet<string>>();
/** The key of the list every type no rule names shares: rules for every type only. */
const UNNAMED_TYPE = Symbol('a type no rule names');
const unnamedTypeActions = new WeakMap<PolicySet, readonly string[]>();
const NO_RESOURCES: readonly DirectoryResource[] = Object.freeze([]);

function principalsOf(set: PolicySet): readonly DirectoryPrincipal[] {
  let list = principalLists.get(set);
  if (!list) principalLists.set(set, (list = [...set.directory.principals.values()]));
  return list;
}

function resourcesOf(set: PolicySet, type: string): readonly DirectoryResource[] {
  const listed = set.directory.resources.get(type);
  if (listed === undefined) return NO_RESOURCES;
  let byType = resourceLists.get(set);
  if (!byType) resourceLists.set(set, (byType = new Map()));
  let list = byType.get(type);
  if (!list) byType.set(type, (list = [...listed.values()]));
  return list;
}

/** The resource types the set's rules name. */
function typesRulesName(set: PolicySet): ReadonlySet<string> {
  let types = ruleTypes.get(set);
  if (!types) {
    const named = new Set<string>();
    for (const rule of set.rules) for (const type of rule.resourceTypes ?? []) named.add(type);
    ruleTypes.set(set, (types = named));
  }
  return types;
}

/** The actions the policies name for a resource type (rules and role grants for it or for every type), sorted; `*` is not an action. */
export function actionsOf(set: PolicySet, type: string): readonly string[] {
  if (!typesRulesName(set).has(type)) {
    let list = unnamedTypeActions.get(set);
    if (!list) unnamedTypeActions.set(set, (list = allowedActions(set, UNNAMED_TYPE)));
    return list;
  }
  let byType = actionLists.get(set);
  if (!byType) actionLists.set(set, (byType = new Map()));
  let list = byType.get(type);
  if (!list) byType.set(type, (list = allowedActions(set, type)));
  return list;
}

function allowedActions(set: PolicySet, type: string | typeof UNNAMED_TYPE): readonly string[] {
  const actions = new Set<string>();
  for (const rule of set.rules) {
    if (rule.effect !== 'ALLOW' || (rule.resourceTypes !== null && (type === UNNAMED_TYPE || !rule.resourceTypes.includes(type)))) continue;
    for (const action of rule.actions) if (action !== '*') actions.add(action);
  }
  return [...actions].sort();
}

/** How many values a question holds (roles and attribute values, nested ones included): what deciding one candidate goes through. */
export function questionValues(question: DecisionRequest): number {
  let values = question.principal.roles.length + 3;
  const stack: unknown[] = [question.principal.attributes, question.resource.attributes, question.context.attributes];
  while (stack.length > 0) {
    const value = stack.pop();
    values += 1;
    if (Array.isArray(value)) for (const item of value) stack.push(item);
    else if (typeof value === 'object' && value !== null) for (const key in value) if (Object.hasOwn(value, key)) stack.push((value as Record<string, unknown>)[key]);
  }
  return values;
}

/** How many candidates one page of `question` may ask: MAX_SEARCH_WORK_PER_PAGE over its size, from 1 to MAX_CANDIDATES_PER_PAGE. */
export function candidatesPerPage(question: DecisionRequest): number {
  return Math.max(1, Math.min(MAX_CANDIDATES_PER_PAGE, Math.floor(MAX_SEARCH_WORK_PER_PAGE / questionValues(question))));
}

/** How many per-type lists are kept for `set` (resources and actions), for tests. */
export function typeListsKept(set: PolicySet): number {
  return (resourceLists.get(set)?.size ?? 0) + (actionLists.get(set)?.size ?? 0);
}

/**
 * One page of a search: candidates from the directories (subjects: every listed
 * principal; resources: every listed resource of the type asked; actions: every
 * action the policies name for the resource's type), in a fixed order, each asked
 * with `decide`; those permitted are the results. Asked in the slices `slicer` gives (the pipeline's DecidingTurns).
 */
export async function searchPage(
  query: SearchQuery,
  set: PolicySet,
  decide: (request: DecisionRequest) => Decision,
  tokens: PageTokens,
  slicer: BatchSlicer,
): Promise<SearchOutcome<Omit<SearchResponse, 'context'>>> {
  const start = query.token === null ? 0 : tokens.open(query.token, query.fingerprint, query.caller, set.version);
  const q = query.question;
  let candidates: number;
  let ask: (i: number) => { request: DecisionRequest; result: Record<string, string> };
  switch (query.kind) {
    case 'subject': {
      const list = principalsOf(set);
      const type = q.principal.attributes.type as string;
      candidates = list.length;
      ask = (i) => ({ request: { ...q, principal: { ...q.principal, id: list[i]!.id } }, result: { type, id: list[i]!.id } });
      break;
    }
    case 'resource': {
      const list = resourcesOf(set, q.resource.type);
      candidates = list.length;
      ask = (i) => ({ request: { ...q, resource: { ...q.resource, id: list[i]!.id } }, result: { type: q.resource.type, id: list[i]!.id } });
      break;
    }
    case 'action': {
      const list = actionsOf(set, q.resource.type);
      candidates = list.length;
      ask = (i) => ({ request: { ...q, action: list[i]! }, result: { name: list[i]! } });
      break;
    }
  }
  if (!Number.isInteger(start) || start < 0 || start > candidates) throw RequestFieldError.invalid('page.token', 'is not a token this server issued');
  const results: Record<string, string>[] = [];
  const ruleIds = new Set<string>();
  let next = start;
  const end = Math.min(candidates, start + candidatesPerPage(q));
  // Up to 10,000 candidates (fewer for a large question), each decided to its condition budget: other callers get turns between them.
  while (next < end && results.length < query.limit) {
    if (slicer.due()) await slicer.pause();
    const { request, result } = ask(next++);
    const decision = decide(request);
    if (decision.effect !== 'ALLOW') continue;
    results.push(result);
    for (const id of decision.ruleIds) ruleIds.add(id);
  }
  const nextToken = next < candidates ? tokens.issue(query.fingerprint, query.caller, set.version, next) : '';
  const found = results.map((r) => r.id ?? r.name!);
  return {
    result: { results, page: { next_token: nextToken, count: results.length } },
    request: q,
    count: results.length,
    ruleIds: [...ruleIds].sort(),
    details: { kind: query.kind, from: start, scanned: next - start, count: results.length, more: nextToken !== '', results: found },
  };
}
