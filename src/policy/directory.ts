import type { Attributes, Principal, Resource } from '../types.js';

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
}

export interface DirectoryPrecedence {
  readonly roles: RolesPrecedence;
  /** Attributes where the request wins; every other attribute the directory defines is the directory's. */
  readonly requestWins: ReadonlySet<string>;
}

const NO_REQUEST_WINS: ReadonlySet<string> = new Set();
export const DEFAULT_PRECEDENCE: DirectoryPrecedence = Object.freeze({ roles: 'directory', requestWins: NO_REQUEST_WINS });

const NO_PRINCIPALS: ReadonlyMap<string, DirectoryPrincipal> = new Map();
const NO_RESOURCES: ReadonlyMap<string, ReadonlyMap<string, DirectoryResource>> = new Map();

/** An id as a reader that ignores case (and Unicode compatibility forms) reads it. */
function folded(id: string): string {
  // ASCII is unchanged by normalisation: only other text pays for it.
  return (/[^\u0000-\u007f]/.test(id) ? id.normalize('NFKC') : id).toLowerCase();
}

export class Directory {
  static readonly EMPTY = new Directory(NO_PRINCIPALS, NO_RESOURCES, 0, DEFAULT_PRECEDENCE, DEFAULT_PRECEDENCE);

  /** True when neither directory has an entry: requests are decided as sent. */
  readonly empty: boolean;
  /** Resource ids by type, then by folded id (see `resourceSpelledOtherwise`). */
  private readonly foldedResources: ReadonlyMap<string, ReadonlyMap<string, string>>;

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
  ) {
    this.empty = principals.size === 0 && resourceCount === 0;
    const byType = new Map<string, Map<string, string>>();
    for (const [type, entries] of resources) {
      const ids = new Map<string, string>();
      for (const id of entries.keys()) ids.set(folded(id), id);
      byType.set(type, ids);
    }
    this.foldedResources = byType;
    Object.freeze(this);
  }

  principal(id: string): DirectoryPrincipal | undefined {
    return this.principals.get(id);
  }

  resource(type: string, id: string): DirectoryResource | undefined {
    return this.resources.get(type)?.get(id);
  }

  /**
   * The id of the directory's resource that `id` names to a reader ignoring case, when
   * `id` is not itself in the directory (`CREDIT-RISK-V2` for `credit-risk-v2`);
   * undefined otherwise. Decided as sent, such an id is an unknown resource without the
   * directory's facts, while an upstream that looks ids up without regard to case
   * (many SQL collations) serves the known one.
   */
  resourceSpelledOtherwise(type: string, id: string): string | undefined {
    const entries = this.resources.get(type);
    if (entries === undefined || entries.has(id)) return undefined;
    return this.foldedResources.get(type)?.get(folded(id));
  }
}
