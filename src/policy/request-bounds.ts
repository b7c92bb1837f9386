import { memberSegment } from '../json-members.js';
import type { AttributeValue, Attributes, DecisionRequest, Principal, RequestContext } from '../types.js';

/**
 * Caps on the size of one request, applied to every request before the engine sees it,
 * whichever transport brought it: the work a check costs is bounded by these, not by
 * what a caller chose to send. The attribute name `constructor` is refused with them
 * (CEL conditions could not read an object holding it), and so are numbers that are not finite. A request over a cap is refused and recorded as
 * `DENIED_INVALID_REQUEST` (see pipeline.ts); gRPC answers it `INVALID_ARGUMENT`.
 *
 * Lengths count UTF-16 code units (characters, for text outside the astral planes).
 */
export interface RequestLimits {
  /** Longest string anywhere in a request: ids, action, type, roles, attribute keys and values. */
  readonly maxStringLength: number;
  /** Longest list: the principal's roles, and any list in the attributes. */
  readonly maxListLength: number;
  /** Most values in one request: every role, attribute, list element and map entry, nested ones included. */
  readonly maxValues: number;
  /** Most characters in one request: every string above, added up. */
  readonly maxTotalLength: number;
}

export const DEFAULT_REQUEST_LIMITS: RequestLimits = Object.freeze({
  maxStringLength: 8_192,
  maxListLength: 1_000,
  maxValues: 10_000,
  maxTotalLength: 1_048_576,
});

/**
 * Why `constructor` is refused as an attribute name: CEL tells an object's type by its
 * `constructor`, so every condition reading an object holding one would fail.
 */
export const CONSTRUCTOR_KEY_PROBLEM = 'cannot be an attribute name, since conditions could not read the object holding it (send it under another name)';
/** Why `__proto__` is refused as an attribute name: any copy made by assignment turns it into the object's prototype, so no key would list it. */
export const PROTO_KEY_PROBLEM = 'cannot be an attribute name (send it under another name)';

/** Why NaN and Infinity are refused as attribute values. */
export const NOT_FINITE_PROBLEM = 'number must be finite (NaN and Infinity are not JSON)';

/** Nesting deeper than this is refused; gRPC's conversion already stops at 32 levels. */
const MAX_DEPTH = 64;

/** What one part of a request (its principal, its context) adds up to. */
interface Tally {
  values: number;
  length: number;
  /** The first cap this part alone breaks, in words naming the field. */
  problem: string | null;
  /** Whether an attribute map of this part holds a member whose value is null. */
  nulls: boolean;
}

/**
 * Measures requests against the limits, in one pass over each, allocating nothing for a
 * request within them. One meter serves many requests, one at a time; it remembers the
 * last principal, context and resource attributes it measured, so the items of a batch,
 * which share them, and the candidates of a search page, which share all but an id,
 * measure them once.
 */
export class RequestMeter {
  private readonly walk: Walk;
  private lastPrincipal: Principal | null = null;
  private readonly principal: Tally = { values: 0, length: 0, problem: null, nulls: false };
  private lastContext: RequestContext | null = null;
  private readonly context: Tally = { values: 0, length: 0, problem: null, nulls: false };
  /** The resource attributes last measured: a search asks every candidate with the same ones, only the id differs. */
  private lastResourceAttributes: Attributes | null = null;
  private readonly resourceAttributes: Tally = { values: 0, length: 0, problem: null, nulls: false };

  constructor(readonly limits: RequestLimits = DEFAULT_REQUEST_LIMITS) {
    this.walk = new Walk(limits);
  }

  /**
   * Why the request is over a limit (`principal.attributes.groups: 6000 items, over the
   * limit of 1000 (requestLimits.maxListLength)`), or null when it is within all of them.
   */
  problem(request: DecisionRequest): string | null {
    if (request.principal !== this.lastPrincipal) this.measurePrincipal(request.principal);
    if (this.principal.problem !== null) return this.principal.problem;
    if (request.context !== this.lastContext) this.measureContext(request.context);
    if (this.context.problem !== null) return this.context.problem;
    const rest = this.walk.reset();
    if (rest.string(request.action, 'action') && rest.string(request.resource.type, 'resource.type')) rest.string(request.resource.id, 'resource.id');
    if (rest.problem !== null) return rest.problem;
    const { values: restValues, length: restLength } = rest;
    if (request.resource.attributes !== this.lastResourceAttributes) this.measureResourceAttributes(request.resource.attributes);
    if (this.resourceAttributes.problem !== null) return this.resourceAttributes.problem;
    const { maxValues, maxTotalLength } = this.limits;
    const values = this.principal.values + this.context.values + restValues + this.resourceAttributes.values;
    if (values > maxValues) return `request: ${values} values, over the limit of ${maxValues} (requestLimits.maxValues)`;
    const length = this.principal.length + this.context.length + restLength + this.resourceAttributes.length;
    if (length > maxTotalLength) return `request: ${length} characters, over the limit of ${maxTotalLength} (requestLimits.maxTotalLength)`;
    return null;
  }

  /**
   * Whether the request last found within the limits (`problem` answered null) holds an
   * attribute whose value is null anywhere in a map: see withoutNullMembers.
   */
  heldNullMembers(): boolean {
    return this.principal.nulls || this.context.nulls || this.resourceAttributes.nulls;
  }

  private measurePrincipal(principal: Principal): void {
    const walk = this.walk.reset();
    if (walk.string(principal.id, 'principal.id') && walk.list(principal.roles.length, 'principal.roles')) {
      const roles = principal.roles;
      for (let i = 0; i < roles.length && walk.string(roles[i]!, 'principal.roles', i); i++) walk.values++;
    }
    if (walk.problem === null) walk.attributes(principal.attributes, 'principal.attributes');
    this.lastPrincipal = principal;
    walk.into(this.principal);
  }

  private measureResourceAttributes(attributes: Attributes): void {
    const walk = this.walk.reset();
    walk.attributes(attributes, 'resource.attributes');
    this.lastResourceAttributes = attributes;
    walk.into(this.resourceAttributes);
  }

  private measureContext(context: RequestContext): void {
    const walk = this.walk.reset();
    walk.attributes(context.attributes, 'context.attributes');
    this.lastContext = context;
    walk.into(this.context);
  }
}

/** Why a string holding half of a UTF-16 surrogate pair is refused (JSON's `"\ud800"` decodes to one). */
const LONE_SURROGATE_PROBLEM = 'holds a lone UTF-16 surrogate (\\uD800-\\uDFFF without its pair), which UTF-8 and the decision log cannot carry; send well-formed text';

/** One pass over part of a request, stopping at the first cap it breaks. */
class Walk {
  values = 0;
  length = 0;
  problem: string | null = null;
  nulls = false;
  /** Keys and indexes from the part's root to the value being read, for naming a field. */
  private readonly path: (string | number)[] = [];

  constructor(private readonly limits: RequestLimits) {}

  reset(): this {
    this.values = 0;
    this.length = 0;
    this.problem = null;
    this.nulls = false;
    this.path.length = 0;
    return this;
  }

  into(tally: Tally): void {
    tally.values = this.values;
    tally.length = this.length;
    tally.problem = this.problem;
    tally.nulls = this.nulls;
  }

  private field(root: string, last?: string | number): string {
    const segments = last === undefined ? this.path : [...this.path, last];
    let out = root;
    for (const s of segments) out += typeof s === 'number' ? `[${s}]` : memberSegment(s);
    return out;
  }

  /** Counts a string; false (with the problem set) when it is too long or not well-formed text. */
  string(value: string, root: string, last?: string | number): boolean {
    this.length += value.length;
    if (value.length > this.limits.maxStringLength) {
      this.problem = `${this.field(root, last)}: ${value.length} characters, over the limit of ${this.limits.maxStringLength} (requestLimits.maxStringLength)`;
      return false;
    }
    // The log stores UTF-8, which cannot hold a lone surrogate: the row would show U+FFFD, not what was decided.
    if (value.isWellFormed()) return true;
    this.problem = `${this.field(root, last)}: ${LONE_SURROGATE_PROBLEM}`;
    return false;
  }

  /** Checks a list's length; false (with the problem set) when it is too long. */
  list(length: number, root: string): boolean {
    if (length <= this.limits.maxListLength) return true;
    this.problem = `${this.field(root)}: ${length} items, over the limit of ${this.limits.maxListLength} (requestLimits.maxListLength)`;
    return false;
  }

  attributes(attributes: Attributes, root: string): void {
    this.map(attributes, root, 0);
  }

  private map(map: { readonly [key: string]: AttributeValue }, root: string, depth: number): boolean {
    for (const key in map) {
      if (!Object.prototype.hasOwnProperty.call(map, key)) continue;
      if (!this.string(key, root, key)) return false;
      if (key === 'constructor') {
        this.problem = `${this.field(root, key)}: ${CONSTRUCTOR_KEY_PROBLEM}`;
        return false;
      }
      // Held as data by JSON.parse (a JWT claim), but any copy made by assignment turns it into a prototype: refused, as every transport refuses it.
      if (key === '__proto__') {
        this.problem = `${this.field(root, key)}: ${PROTO_KEY_PROBLEM}`;
        return false;
      }
      const member = map[key]!;
      if (member === null) this.nulls = true;
      this.path.push(key);
      const ok = this.value(member, root, depth);
      this.path.pop();
      if (!ok) return false;
    }
    return true;
  }

  private value(value: AttributeValue, root: string, depth: number): boolean {
    if (++this.values > this.limits.maxValues) {
      this.problem = `${root}: more than ${this.limits.maxValues} values, over the limit (requestLimits.maxValues)`;
      return false;
    }
    if (typeof value === 'string') return this.string(value, root);
    // NaN and Infinity are no JSON: gRPC's Struct conversion refuses them, and so does every other way in (YAML's .nan in `verdict check`, a test case).
    if (typeof value === 'number' && !Number.isFinite(value)) {
      this.problem = `${this.field(root)}: ${NOT_FINITE_PROBLEM}`;
      return false;
    }
    if (value === null || typeof value !== 'object') return true;
    if (depth >= MAX_DEPTH) {
      this.problem = `${this.field(root)}: nested deeper than ${MAX_DEPTH} levels`;
      return false;
    }
    if (Array.isArray(value)) {
      if (!this.list(value.length, root)) return false;
      for (let i = 0; i < value.length; i++) {
        this.path.push(i);
        const ok = this.value(value[i]!, root, depth + 1);
        this.path.pop();
        if (!ok) return false;
      }
      return true;
    }
    return this.map(value as { readonly [key: string]: AttributeValue }, root, depth + 1);
  }
}
