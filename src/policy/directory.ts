import { foldedId as folded } from '../folded-id.js';
import type { AttributeValue, Attributes, DecisionRequest, Principal, Resource } from '../types.js';

/**
 * The principal and resource directories of a policy set (`principals` and
 * `resources` files): what the policies know of a principal or a resource, by id,
 * to complete the requests that name one. Indexed by id (resources by type, then
 * id), so looking one up is a map lookup whatever the directory's size.
 */

/** Which value a decision uses where a request and the directory disagree on an attribute. */
export type AttributePrecedence = 'directory' | 'request';
/** Which roles a decision uses for a principal the directory knows: its, the request's (when it sends any), or both. */
export type RolesPrecedence = 'directory' | 'request' | 'merge';

export interface DirectoryPrincipal {
  readonly id: string;
  /** Defined in roles files (checked at load); frozen. */
  readonly roles: readonly string[];
  /** Frozen. */
  readonly attributes: Attributes;
  /** The names of `attributes`, frozen. */
  readonly keys: readonly string[];
  /** The principal as the directory alone describes it (its roles and attributes), frozen: what completing a request uses as it is when the request adds nothing. */
  readonly asPrincipal: Principal;
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

export interface DirectoryResource {
  readonly type: string;
  readonly id: string;
  readonly attributes: Attributes;
  readonly keys: readonly string[];
  /** The resource as the directory alone describes it, frozen. */
  readonly asResource: Resource;
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

export interface DirectoryPrecedence {
  readonly roles: RolesPrecedence;
  /** Attributes where the request wins; every other attribute the directory defines is the directory's. */
  readonly requestWins: ReadonlySet<string>;
}

const NO_REQUEST_WINS: ReadonlySet<string> = new Set();
export const DEFAULT_PRECEDENCE: DirectoryPrecedence = Object.freeze({ roles: 'directory', requestWins: NO_REQUEST_WINS });

/**
 * Entries a load indexes or checks between chances to pause (the slice driver pauses
 * only once its slice is spent). Indexing an entry costs about 5 µs (decoding it from
 * the bytes the load thread sent, looking up its position, freezing its attributes):
 * 2,000 at a time ran 7 ms past a 2 ms slice.
 */
export const DIRECTORY_ENTRIES_PER_PAUSE = 50;

const NO_PRINCIPALS: ReadonlyMap<string, DirectoryPrincipal> = new Map();
const NO_RESOURCES: ReadonlyMap<string, ReadonlyMap<string, DirectoryResource>> = new Map();

/**
 * Folded id → the id as the directory spells it. A load adds each id as it adds the
 * entry (the directories stage, in slices): folding 100,000 ids at once held the
 * deciding thread for 30–45 ms of a reload.
 */
export class FoldedIds {
  private readonly index = new Map<string, string>();

  add(id: string): void {
    this.index.set(folded(id), id);
  }

  /** The directory's spelling of an id that folds as `id` does, if any. */
  get(id: string): string | undefined {
    return this.index.get(folded(id));
  }
}

/** The folded indexes of a directory's principals, and of its resources by type. */
export interface DirectoryFolds {
  readonly principals: FoldedIds;
  readonly resources: ReadonlyMap<string, FoldedIds>;
}

const NO_FOLDS: DirectoryFolds = { principals: new FoldedIds(), resources: new Map() };

/**
 * The request's attributes completed with the entry's: the directory's value wins unless
 * the attribute is one where the request does and it sent one. The directory's own
 * frozen object, not a copy, whenever the request sends nothing the directory's
 * values would not replace (nothing at all, or only attributes the directory defines
 * and wins on).
 */
function mergedAttributes(sent: Attributes, keys: readonly string[], own: Attributes, precedence: DirectoryPrecedence): Attributes {
  if (keys.length === 0) return sent;
  const requestWins = precedence.requestWins;
  let covered = true;
  for (const key in sent) {
    if (!Object.hasOwn(own, key) || (requestWins.size > 0 && requestWins.has(key))) {
      covered = false;
      break;
    }
  }
  if (covered) return own;
  let out: Record<string, AttributeValue> | null = null;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (requestWins.size > 0 && requestWins.has(key) && key in sent) continue;
    out ??= { ...sent };
    out[key] = own[key]!;
  }
  // Every attribute the directory defines is one the request sent and wins on: the request's, as sent.
  return out ?? sent;
}

export function mergedRoles(sent: readonly string[], own: readonly string[], precedence: DirectoryPrecedence): readonly string[] {
  switch (precedence.roles) {
    case 'directory':
      return own;
    case 'request':
      return sent.length > 0 ? sent : own;
    case 'merge': {
      if (sent.length === 0) return own;
      if (own.length === 0) return sent;
      const out = [...own];
      for (const role of sent) if (!own.includes(role)) out.push(role);
      return out;
    }
  }
}

/** The principal decided with: the directory's frozen one when it alone decides, the request's when the directory changes nothing, else a new one. */
function completedPrincipal(sent: Principal, entry: DirectoryPrincipal, precedence: DirectoryPrecedence): Principal {
  const roles = mergedRoles(sent.roles, entry.roles, precedence);
  const attributes = mergedAttributes(sent.attributes, entry.keys, entry.attributes, precedence);
  if (roles === entry.roles && attributes === entry.attributes) return entry.asPrincipal;
  if (roles === sent.roles && attributes === sent.attributes) return sent;
  return { id: sent.id, roles, attributes };
}

function completedResource(sent: Resource, entry: DirectoryResource, precedence: DirectoryPrecedence): Resource {
  const attributes = mergedAttributes(sent.attributes, entry.keys, entry.attributes, precedence);
  if (attributes === entry.attributes) return entry.asResource;
  if (attributes === sent.attributes) return sent;
  return { type: sent.type, id: sent.id, attributes };
}

export class Directory {
  static readonly EMPTY = new Directory(NO_PRINCIPALS, NO_RESOURCES, 0, DEFAULT_PRECEDENCE, DEFAULT_PRECEDENCE, NO_FOLDS);

  /** True when neither directory has an entry: requests are decided as sent. */
  readonly empty: boolean;

  constructor(
    /** By id. */
    readonly principals: ReadonlyMap<string, DirectoryPrincipal>,
    /** By type, then id. */
    readonly resources: ReadonlyMap<string, ReadonlyMap<string, DirectoryResource>>,
    /** How many resources, all types together. */
    readonly resourceCount: number,
    readonly principalPrecedence: DirectoryPrecedence,
    /** `roles` plays no part for resources. */
    readonly resourcePrecedence: DirectoryPrecedence,
    /** Every id of `principals` and `resources`, folded (see `principalSpelledOtherwise`). */
    private readonly folds: DirectoryFolds,
  ) {
    this.empty = principals.size === 0 && resourceCount === 0;
    Object.freeze(this);
  }

  /**
   * The request as it is decided: completed from the directories when it names a
   * principal (by id) or a resource (by type and id) they list; else the request
   * itself. Two map lookups when the directories are not empty, none when they are;
   * at most one new request, principal and resource object. Pure: the engine, the
   * decide core, replay and the test cases loaded with the set all complete through it.
   */
  complete(request: DecisionRequest): DecisionRequest {
    if (this.empty) return request;
    const principal = this.principals.get(request.principal.id);
    const resource = this.resources.get(request.resource.type)?.get(request.resource.id);
    if (principal === undefined && resource === undefined) return request;
    const completedP = principal === undefined ? request.principal : completedPrincipal(request.principal, principal, this.principalPrecedence);
    const completedR = resource === undefined ? request.resource : completedResource(request.resource, resource, this.resourcePrecedence);
    if (completedP === request.principal && completedR === request.resource) return request;
    return { principal: completedP, action: request.action, resource: completedR, context: request.context };
  }

  principal(id: string): DirectoryPrincipal | undefined {
    return this.principals.get(id);
  }

  resource(type: string, id: string): DirectoryResource | undefined {
    return this.resources.get(type)?.get(id);
  }

  /**
   * The id of the directory's resource that `id` names to a lenient reader (see
   * `folded`), when `id` is not itself in the directory (`CREDIT-RISK-V2` or
   * `credit-risk-v2 ` for `credit-risk-v2`); undefined otherwise. Decided as sent, such
   * an id is an unknown resource without the directory's facts, while an upstream that
   * looks ids up without regard to case (many SQL collations) serves the known one.
   */
  resourceSpelledOtherwise(type: string, id: string): string | undefined {
    const entries = this.resources.get(type);
    if (entries === undefined || entries.has(id)) return undefined;
    return this.folds.resources.get(type)?.get(id);
  }

  /**
   * The same for principals (`LEO` for `leo`): decided as sent, such an id would go
   * without the roles and attributes the directory gives the one an identity provider
   * or upstream reading it leniently takes it for.
   */
  principalSpelledOtherwise(id: string): string | undefined {
    if (this.principals.size === 0 || this.principals.has(id)) return undefined;
    return this.folds.principals.get(id);
  }
}
