import { INVISIBLE_CHARACTERS } from '../invisible.js';
import type { AttributeValue, Attributes, RequestContext, Resource } from '../types.js';
import type { PolicyDiagnostic } from './diagnostic.js';
import type { StageRun } from './pipeline.js';
import type { RouteSpec } from './schema.js';
import { diagnosticAt, type SourceDocument } from './source.js';

/**
 * HTTP routes: how a gateway's request (method, path, query, headers) becomes a
 * decision request (action, resource, context). Templates are parsed and the
 * matching trie is built once, when the policy set is compiled; a request costs
 * one split of its path and a walk down the trie, with no regular expression
 * built or run.
 */

/** What a route may read of a request, as gateways hand it over. */
export interface HttpRequestFacts {
  /** Upper case, as sent: `POST`. */
  readonly method: string;
  /** The path as sent, still percent-encoded, without the query: `/v1/models/m%201/predict`. */
  readonly path: string;
  /** The query string without its `?`; '' when there is none. */
  readonly query: string;
  /** Header values by lower-case name. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  /**
   * Lower-case names of the headers the request carried more than once. A route
   * that reads one refuses the request: which copy the upstream takes is not ours to guess.
   */
  readonly repeatedHeaders?: ReadonlySet<string>;
  /** The client as the gateway saw it: its address, and its identity when the gateway authenticated the connection (mTLS). */
  readonly source: { readonly address: string | null; readonly principal: string | null };
  /** Values the gateway's own configuration attaches to the request (Envoy's `context_extensions`). */
  readonly extensions: Readonly<Record<string, string>>;
}

/**
 * Where a placeholder takes its value from. A value is required unless its
 * placeholder is marked optional (`{header.x-incident-ticket?}`): a request
 * without a required value is refused; without an optional one, the attribute is
 * left out. Path parameters are always present.
 */
export type PlaceholderSource = { readonly optional: boolean } & (
  | { readonly from: 'path'; readonly name: string; readonly index: number }
  | { readonly from: 'query'; readonly name: string }
  | { readonly from: 'header'; readonly name: string }
  | { readonly from: 'source'; readonly name: 'address' | 'principal' }
  | { readonly from: 'extension'; readonly name: string }
);

/** A value of a route: a constant, or text with placeholders (`{model}`, `models/{model}`). */
type ValueTemplate =
  | { readonly constant: AttributeValue }
  | { readonly parts: readonly (string | PlaceholderSource)[] };

/** The decision request parts a route makes of an HTTP request. */
export interface RoutedRequest {
  readonly action: string;
  readonly resource: Resource;
  readonly context: RequestContext;
  /**
   * Why the route refuses the request, when it does: a required value is absent,
   * or a header or query parameter it reads is repeated. The other parts hold what could be read.
   */
  readonly refusal?: string;
}

/** An attribute a route sets, and whether a request can leave it out: what `verdict validate` checks deny rules against. */
export interface RouteAttribute {
  /** `resource.attributes.env` or `context.attributes.ticket`. */
  readonly path: string;
  /** True when an optional placeholder can leave the attribute out of a request the route does not refuse. */
  readonly mayBeAbsent: boolean;
}

export interface CompiledRoute {
  readonly methods: readonly string[];
  /** The path template as written: `/v1/models/{model}/predict`. */
  readonly path: string;
  readonly action: string;
  readonly resourceType: string;
  readonly description: string | null;
  /** The resource and context attributes the route sets. */
  readonly attributes: readonly RouteAttribute[];
  /** Where the route was written. */
  readonly file: string;
  readonly line: number;
  /** The action, resource and context for a request this route matched; `params` are the path parameters in template order. */
  resolve(request: HttpRequestFacts, params: readonly string[]): RoutedRequest;
  /**
   * For replay, where only the method and path of a request were recorded: the
   * action and resource type, and each value read from the path alone (or a
   * constant) computed as `resolve` would; a value that reads a header, a query
   * parameter, the source or an extension takes `recorded(target)` (`target`
   * as `resource.id`, `resource.attributes.env`, `context.attributes.ticket`),
   * the value the recorded request had there. `missing` names the first such
   * value the route requires that the recorded request lacks.
   */
  resolveRecorded(params: readonly string[], recorded: (target: string) => AttributeValue | undefined): RoutedRequest & { readonly missing?: string };
}

export type RouteMatch =
  | { readonly kind: 'matched'; readonly route: CompiledRoute; readonly params: readonly string[] }
  | { readonly kind: 'unmatched' }
  /** The path cannot be routed safely (bad percent-encoding, an encoded slash, a dot segment); deny it. */
  | { readonly kind: 'invalid'; readonly message: string };

interface TrieNode {
  readonly literals: Map<string, TrieNode>;
  /** Parameter segments, the most literal text first, so `{model}:predict` is tried before `{model}`. */
  readonly params: ParamEdge[];
  readonly routes: Map<string, CompiledRoute>;
}

interface ParamEdge {
  readonly prefix: string;
  readonly suffix: string;
  readonly node: TrieNode;
}

const MAX_SEGMENTS = 64;
const UNMATCHED: RouteMatch = Object.freeze({ kind: 'unmatched' });
const NO_PARAMS: readonly string[] = Object.freeze([]);

function newNode(): TrieNode {
  return { literals: new Map(), params: [], routes: new Map() };
}

/**
 * The routes of a policy set, compiled into a trie of path segments. Matching is
 * deterministic whatever the order of files: a literal segment beats a parameter,
 * and a parameter with more literal text around it (`{model}:predict`) beats one
 * with less (`{model}`).
 *
 * @example
 * const match = policySet.routes.match('POST', '/v1/models/fraud-v3/predict');
 * if (match.kind === 'matched') match.route.resolve(facts, match.params); // { action: 'predict', resource: { type: 'model', id: 'fraud-v3', ... } }
 */
const ROUTES_PER_PAUSE = 256;

export class RouteTable {
  static readonly EMPTY: RouteTable = new RouteTable(newNode(), []);

  private constructor(
    private readonly root: TrieNode,
    readonly routes: readonly CompiledRoute[],
  ) {
    Object.freeze(this);
  }

  /** The table of these routes, pausing every ROUTES_PER_PAUSE of them (5,000 routes took 8–15 ms in one go). */
  static *build(routes: readonly (CompiledRoute & { readonly segments: readonly TemplateSegment[] })[]): StageRun<RouteTable> {
    const root = newNode();
    const kept: CompiledRoute[] = [];
    for (const route of routes) {
      let node = root;
      for (const segment of route.segments) node = segment.kind === 'literal' ? literalChild(node, segment.text) : paramChild(node, segment);
      for (const method of route.methods) if (!node.routes.has(method)) node.routes.set(method, route);
      const { segments: _segments, ...compiled } = route;
      kept.push(Object.freeze(compiled));
      if (kept.length % ROUTES_PER_PAUSE === 0) yield;
    }
    return new RouteTable(root, Object.freeze(kept));
  }

  /** The route for a method and a raw (percent-encoded) path, with its parameters decoded. */
  match(method: string, path: string): RouteMatch {
    const split = splitRequestPath(path);
    if (typeof split === 'string') return { kind: 'invalid', message: split };
    const params: string[] = [];
    const route = walk(this.root, split, 0, method, params);
    if (route === null) return UNMATCHED;
    return { kind: 'matched', route, params: params.length === 0 ? NO_PARAMS : params };
  }
}

function literalChild(node: TrieNode, text: string): TrieNode {
  let child = node.literals.get(text);
  if (!child) node.literals.set(text, (child = newNode()));
  return child;
}

function paramChild(node: TrieNode, segment: ParamSegment): TrieNode {
  const existing = node.params.find((e) => e.prefix === segment.prefix && e.suffix === segment.suffix);
  if (existing) return existing.node;
  const edge: ParamEdge = { prefix: segment.prefix, suffix: segment.suffix, node: newNode() };
  node.params.push(edge);
  node.params.sort(
    (a, b) =>
      b.prefix.length + b.suffix.length - (a.prefix.length + a.suffix.length) ||
      (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0) ||
      (a.suffix < b.suffix ? -1 : a.suffix > b.suffix ? 1 : 0),
  );
  return edge.node;
}

function walk(node: TrieNode, segments: readonly string[], i: number, method: string, params: string[]): CompiledRoute | null {
  if (i === segments.length) return node.routes.get(method) ?? null;
  const segment = segments[i]!;
  const literal = node.literals.get(segment);
  if (literal) {
    const found = walk(literal, segments, i + 1, method, params);
    if (found) return found;
  }
  const edges = node.params;
  for (let e = 0; e < edges.length; e++) {
    const edge = edges[e]!;
    // A parameter is never empty.
    if (segment.length <= edge.prefix.length + edge.suffix.length) continue;
    if (!segment.startsWith(edge.prefix) || !segment.endsWith(edge.suffix)) continue;
    params.push(segment.slice(edge.prefix.length, segment.length - edge.suffix.length));
    const found = walk(edge.node, segments, i + 1, method, params);
    if (found) return found;
    params.pop();
  }
  return null;
}

/**
 * A percent-encoded unreserved character (RFC 3986: letters, digits, `-._~`):
 * there is no reason to encode one, and a gateway matching the raw path
 * (`/v1/models/%67lobex-x` is not `globex-*` to NGINX's map) reads a different
 * resource than the upstream that decodes it.
 */
const ENCODED_UNRESERVED = /%(?:[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9]|2[DEde]|5[Ff]|7[Ee])/;

/**
 * A character a path segment may not hold unencoded (RFC 3986 `pchar`: unreserved,
 * sub-delims, `:`, `@`, and `%` for encoding). A raw `#` passed on by a gateway that
 * forwards the client's URI as it came makes `credit-risk-v2#` the id decided on,
 * while the upstream reads a fragment and serves `credit-risk-v2`. Backslash and NUL
 * have messages of their own below.
 */
const OUTSIDE_PCHAR = /[^A-Za-z0-9\-._~!$&'()*+,;=:@%\\\u0000]/;

/**
 * The decoded segments of a request path, or why it cannot be routed. What the
 * upstream might read differently from us is refused rather than guessed at: an
 * encoded slash or backslash, an encoded unreserved character (`%67` for `g`), a
 * `.` or `..` segment, a `;` (path parameters), a backslash, a NUL, bad percent-encoding,
 * an encoded `%` (`%2563` reads as `c` to an upstream that decodes twice),
 * a character outside RFC 3986's `pchar` left unencoded (`#`, a space, `é`), and once
 * decoded a control character, `?` or `#`, whitespace or a dot at a name's end, an
 * invisible or blank character, or text Unicode compatibility normalisation changes.
 */
export function splitRequestPath(path: string): string[] | string {
  if (!path.startsWith('/')) return `the path must start with "/": ${JSON.stringify(path.slice(0, 100))}`;
  if (path === '/') return [];
  const raw = path.slice(1).split('/');
  if (raw.length > MAX_SEGMENTS) return `the path has more than ${MAX_SEGMENTS} segments`;
  const out = new Array<string>(raw.length);
  for (let i = 0; i < raw.length; i++) {
    let segment = raw[i]!;
    const unencoded = OUTSIDE_PCHAR.exec(segment);
    if (unencoded) return `the path has a raw ${JSON.stringify(unencoded[0])} in segment ${i + 1}, which a path may not hold unencoded (an upstream may read it differently, "#" as the start of a fragment); percent-encode it`;
    if (segment.includes('%')) {
      const encoded = ENCODED_UNRESERVED.exec(segment);
      if (encoded) return `the path has an encoded unreserved character ("${encoded[0]}" in segment ${i + 1}); send it unencoded`;
      try {
        segment = decodeURIComponent(segment);
      } catch {
        return `the path has bad percent-encoding in segment ${i + 1}`;
      }
      if (segment.includes('/') || segment.includes('\\')) return `the path has an encoded slash in segment ${i + 1}`;
      // `%2563redit` decodes to `%63redit` here and to `credit` at an upstream that decodes again.
      if (segment.includes('%')) return `the path has an encoded "%" in segment ${i + 1} (an upstream that decodes the path twice would read another name); send the name without it`;
    }
    if (segment === '.' || segment === '..') return `the path has a dot segment ("${segment}"); send the normalised path`;
    // Java servers strip `;params` from a segment (`fraud-v3;x=1` is fraud-v3 to them), and some servers read `\` as `/`.
    if (segment.includes(';')) return `the path has a ";" in segment ${i + 1} (a path parameter some upstreams strip, reading another resource); send the path without it`;
    if (segment.includes('\\')) return `the path has a backslash in segment ${i + 1} (some upstreams read it as "/"); send the path without it`;
    if (segment.includes('\u0000')) return `the path has a NUL character in segment ${i + 1}`;
    const unclear = unclearSegment(segment);
    if (unclear !== null) return `the path has ${unclear} in segment ${i + 1} (an upstream may read it as another name); send the name without it`;
    out[i] = segment;
  }
  return out;
}

/** Characters no name in a path should hold once decoded: controls, and the URL's own delimiters `?` and `#`. */
const CONTROL_OR_DELIMITER = /[\u0000-\u001f\u007f-\u009f?#]/;
/** Characters that show as nothing or as a blank (the list `verdict decisions` and the console escape). */
const INVISIBLE = new RegExp(`[${INVISIBLE_CHARACTERS}]`, 'u');

/**
 * Why a decoded segment may name something else to an upstream than to the rules, or
 * null. A segment the rules read as an unknown id (and so without the directory's facts
 * for the real one) can reach that one upstream: Windows and IIS drop a trailing dot or
 * space (`credit-risk-v2.`), a URL built from it ends at `?` or `#`, a form that
 * normalises Unicode reads `ｃredit-risk-v2` as `credit-risk-v2`.
 */
function unclearSegment(segment: string): string | null {
  const control = CONTROL_OR_DELIMITER.exec(segment);
  if (control !== null) {
    const c = control[0];
    return c === '?' || c === '#' ? `an encoded "${c}"` : `an encoded control character (U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')})`;
  }
  if (/^\s|\s$/.test(segment)) return 'whitespace at the start or end of a name';
  if (segment.endsWith('.')) return 'a dot at the end of a name';
  // ASCII is unchanged by normalisation: only other text is looked at.
  if (/[^\u0000-\u007f]/.test(segment)) {
    if (INVISIBLE.test(segment)) return 'an invisible or blank character';
    if (segment.normalize('NFKC') !== segment) return `characters Unicode normalisation changes (read as ${JSON.stringify(segment.normalize('NFKC'))})`;
  }
  return null;
}

// ---------------------------------------------------------------- templates

export type TemplateSegment = { readonly kind: 'literal'; readonly text: string } | ParamSegment;

interface ParamSegment {
  readonly kind: 'param';
  readonly prefix: string;
  readonly name: string;
  readonly suffix: string;
}

const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
// `;` and `\` too: a request path holding either is refused (splitRequestPath), so such a route could never match.
const FORBIDDEN_IN_PATH = /[?#%;\s\\]/;
/** Headers whose values are secrets; route values end up in the decision log. */
const CREDENTIAL_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'x-api-key']);

/** Parses a path template; the error says what is wrong and at which character. */
export function parsePathTemplate(path: string): { ok: true; segments: TemplateSegment[] } | { ok: false; message: string } {
  const fail = (message: string) => ({ ok: false as const, message });
  if (!path.startsWith('/')) return fail(`a path template starts with "/": ${JSON.stringify(path)}`);
  if (path === '/') return { ok: true, segments: [] };
  const segments: TemplateSegment[] = [];
  const names = new Set<string>();
  let offset = 1;
  for (const text of path.slice(1).split('/')) {
    const where = `(character ${offset + 1} of the path)`;
    if (text === '') return fail(`empty path segment ${where}: remove the doubled or trailing "/"`);
    if (text === '.' || text === '..') return fail(`"${text}" segment ${where}: write the normalised path`);
    const bad = FORBIDDEN_IN_PATH.exec(text);
    if (bad) {
      const what = bad[0] === '%' ? 'write literal text unencoded' : bad[0] === '?' ? 'queries are not part of a path template; read them with {query.name}' : 'not allowed in a path template';
      return fail(`${JSON.stringify(bad[0])} at character ${offset + bad.index + 1} of the path: ${what}`);
    }
    const open = text.indexOf('{');
    const close = text.indexOf('}');
    if (open === -1 && close === -1) {
      segments.push({ kind: 'literal', text });
    } else {
      if (close === -1) return fail(`unclosed "{" ${where}: a parameter is written {name}`);
      if (open === -1 || close < open) return fail(`unbalanced "}" ${where}: a parameter is written {name}`);
      if (text.indexOf('{', open + 1) !== -1 || text.indexOf('}', close + 1) !== -1) {
        return fail(`more than one parameter in the segment "${text}" ${where}: a segment holds at most one {name}`);
      }
      const name = text.slice(open + 1, close);
      if (!PARAM_NAME.test(name)) return fail(`bad parameter name "{${name}}" ${where}: use letters, digits and _ (not starting with a digit)`);
      if (names.has(name)) return fail(`parameter {${name}} appears twice in the path`);
      names.add(name);
      segments.push({ kind: 'param', prefix: text.slice(0, open), name, suffix: text.slice(close + 1) });
    }
    offset += text.length + 1;
  }
  return { ok: true, segments };
}

/** Two templates with the same shape match exactly the same paths. */
function shapeOf(segments: readonly TemplateSegment[]): string {
  return '/' + segments.map((s) => (s.kind === 'literal' ? s.text : `${s.prefix}{}${s.suffix}`)).join('/');
}

/**
 * Parses a value of a route: a string with placeholders, where `{{` and `}}` stand
 * for literal braces. `pathParams` maps the path's parameter names to their index.
 */
export function parseValueTemplate(
  text: string,
  pathParams: ReadonlyMap<string, number>,
): { ok: true; parts: (string | PlaceholderSource)[] } | { ok: false; message: string } {
  const parts: (string | PlaceholderSource)[] = [];
  let literal = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '}') {
      if (text[i + 1] === '}') {
        literal += '}';
        i++;
        continue;
      }
      return { ok: false, message: `lone "}" at character ${i + 1}: write "}}" for a literal brace` };
    }
    if (ch !== '{') {
      literal += ch;
      continue;
    }
    if (text[i + 1] === '{') {
      literal += '{';
      i++;
      continue;
    }
    const end = text.indexOf('}', i + 1);
    if (end === -1) return { ok: false, message: `unclosed "{" at character ${i + 1}: a placeholder is written {name}` };
    const source = placeholderSource(text.slice(i + 1, end), pathParams);
    if (typeof source === 'string') return { ok: false, message: source };
    if (literal !== '') parts.push(literal);
    literal = '';
    parts.push(source);
    i = end;
  }
  if (literal !== '') parts.push(literal);
  return { ok: true, parts };
}

const PLACEHOLDER_HELP =
  'use {name} for a path parameter, {query.name}, {header.name}, {source.address}, {source.principal} or {extension.name}, with a trailing ? when the request may leave it out';

function placeholderSource(written: string, pathParams: ReadonlyMap<string, number>): PlaceholderSource | string {
  const optional = written.endsWith('?');
  const inner = optional ? written.slice(0, -1) : written;
  if (PARAM_NAME.test(inner)) {
    const index = pathParams.get(inner);
    if (index !== undefined) {
      if (optional) return `{${written}}: a path parameter is always present; write {${inner}}`;
      return { from: 'path', name: inner, index, optional };
    }
    const known = [...pathParams.keys()].map((n) => `{${n}}`).join(', ');
    return `unknown placeholder {${inner}}: the path has ${known === '' ? 'no parameters' : `only ${known}`}`;
  }
  const dot = inner.indexOf('.');
  const kind = dot === -1 ? inner : inner.slice(0, dot);
  const name = dot === -1 ? '' : inner.slice(dot + 1);
  switch (kind) {
    case 'query':
      if (name !== '') return { from: 'query', name, optional };
      break;
    case 'header':
      if (CREDENTIAL_HEADERS.has(name.toLowerCase())) {
        return `{${inner}} carries a credential: it would be stored in the decision log; authentication reads it, routes must not`;
      }
      if (HEADER_NAME.test(name)) return { from: 'header', name: name.toLowerCase(), optional };
      if (name !== '') return `bad header name in {${inner}}: a header name has no spaces or separators`;
      break;
    case 'source':
      if (name === 'address' || name === 'principal') return { from: 'source', name, optional };
      return `unknown placeholder {${inner}}: the source has only {source.address} and {source.principal}`;
    case 'extension':
      if (name !== '') return { from: 'extension', name, optional };
      break;
    default:
      return `unknown placeholder {${inner}}: ${PLACEHOLDER_HELP}`;
  }
  return `placeholder {${inner}} needs a name after "${kind}.", e.g. {${kind}.x-org}`;
}

// ---------------------------------------------------------------- compilation

export interface LocatedRoute {
  readonly spec: RouteSpec;
  readonly source: SourceDocument;
  /** Path of the route within its document, e.g. `['routes', 2]`. */
  readonly path: readonly PropertyKey[];
}

/**
 * Compiles the routes of every routes file into one table, pausing after each route.
 * Problems (bad templates, unknown placeholders, duplicate routes) are pushed to
 * `diagnostics` with file, line and column.
 */
export function* compileRoutes(routes: Iterable<LocatedRoute>, diagnostics: PolicyDiagnostic[]): StageRun<RouteTable> {
  const compiled: (CompiledRoute & { segments: readonly TemplateSegment[] })[] = [];
  const claimed = new Map<string, LocatedRoute>();
  for (const located of routes) {
    yield;
    const { spec, source, path } = located;
    const before = diagnostics.length;
    const report = (at: readonly PropertyKey[], message: string): void => {
      diagnostics.push(diagnosticAt(source, [...path, ...at], message));
    };
    const template = parsePathTemplate(spec.path);
    if (!template.ok) {
      report(['path'], template.message);
      continue;
    }
    const methods = [...new Set(typeof spec.method === 'string' ? [spec.method] : spec.method)];
    const shape = shapeOf(template.segments);
    for (const method of methods) {
      const key = `${method} ${shape}`;
      const earlier = claimed.get(key);
      if (earlier) {
        const at = earlier.source.locate(earlier.path);
        report(['path'], `duplicate route ${method} ${spec.path}: ${method} ${earlier.spec.path} at ${earlier.source.file}:${at.line}:${at.col} matches the same requests`);
      } else claimed.set(key, located);
    }

    const params = new Map<string, number>();
    template.segments.forEach((segment) => {
      if (segment.kind === 'param') params.set(segment.name, params.size);
    });
    const value = (raw: string | number | boolean, at: readonly PropertyKey[]): ValueTemplate | null => {
      if (typeof raw !== 'string') return { constant: raw };
      const parsed = parseValueTemplate(raw, params);
      if (!parsed.ok) {
        report(at, parsed.message);
        return null;
      }
      if (parsed.parts.length === 0) return { constant: '' };
      if (parsed.parts.length === 1 && typeof parsed.parts[0] === 'string') return { constant: parsed.parts[0] };
      return { parts: parsed.parts };
    };
    const attributes = (spec: Readonly<Record<string, string | number | boolean>> | undefined, at: readonly string[]): RouteValue[] =>
      Object.entries(spec ?? {}).flatMap(([name, raw]) => {
        const template = value(raw, [...at, name]);
        return template ? [{ name, path: [...at, name].join('.'), template }] : [];
      });

    const idTemplate = spec.resource.id === undefined ? null : value(spec.resource.id, ['resource', 'id']);
    const id: RouteValue | null = idTemplate === null ? null : { name: 'id', path: 'resource.id', template: idTemplate };
    const resourceAttributes = attributes(spec.resource.attributes, ['resource', 'attributes']);
    const contextAttributes = attributes(spec.context?.attributes, ['context', 'attributes']);
    if (diagnostics.length > before) continue;

    const action = spec.action;
    const resourceType = spec.resource.type;
    const routeName = `${methods.join('|')} ${spec.path}`;
    compiled.push({
      methods: Object.freeze(methods),
      path: spec.path,
      action,
      resourceType,
      description: spec.description ?? null,
      attributes: Object.freeze([...resourceAttributes, ...contextAttributes].map((v) => ({ path: v.path, mayBeAbsent: mayBeAbsent(v.template) }))),
      file: source.file,
      line: source.locate(path).line,
      segments: template.segments,
      resolve(request, params) {
        const problems: string[] = [];
        const read = reader(request, params, routeName, problems);
        const idValue = id === null ? '' : evaluate(id, read);
        const routed: RoutedRequest = {
          action,
          resource: {
            type: resourceType,
            id: typeof idValue === 'string' ? idValue : idValue === undefined ? '' : String(idValue),
            attributes: build(resourceAttributes, read),
          },
          context: { attributes: build(contextAttributes, read) },
        };
        if (problems.length === 0) return routed;
        return { ...routed, refusal: problems[0]! };
      },
      resolveRecorded(params, recorded) {
        let missing: string | undefined;
        const valueOf = (v: RouteValue): AttributeValue | undefined => {
          const template = v.template;
          if ('constant' in template) return template.constant;
          if (template.parts.every((part) => typeof part === 'string' || part.from === 'path')) return evaluate(v, (source) => (source.from === 'path' ? params[source.index] : undefined));
          const value = recorded(v.path);
          if (value === undefined && !mayBeAbsent(template)) missing ??= v.path;
          return value;
        };
        const built = (values: readonly RouteValue[]): Attributes => {
          if (values.length === 0) return EMPTY;
          const out: Record<string, AttributeValue> = {};
          for (const value of values) {
            const v = valueOf(value);
            if (v !== undefined) out[value.name] = v;
          }
          return out;
        };
        const idValue = id === null ? '' : valueOf(id);
        const routed: RoutedRequest = {
          action,
          resource: { type: resourceType, id: typeof idValue === 'string' ? idValue : idValue === undefined ? '' : String(idValue), attributes: built(resourceAttributes) },
          context: { attributes: built(contextAttributes) },
        };
        return missing === undefined ? routed : Object.assign(routed, { missing });
      },
    });
  }
  return yield* RouteTable.build(compiled);
}

/** A value of a route, with where it goes: `resource.attributes.env`. */
interface RouteValue {
  readonly name: string;
  readonly path: string;
  readonly template: ValueTemplate;
}

/** Whether a request the route does not refuse can leave the value out: only through an optional placeholder. */
function mayBeAbsent(template: ValueTemplate): boolean {
  return 'parts' in template && template.parts.some((part) => typeof part !== 'string' && part.optional);
}

function describeSource(source: PlaceholderSource): string {
  switch (source.from) {
    case 'path':
      return `path parameter {${source.name}}`;
    case 'query':
      return `query parameter ${source.name}`;
    case 'header':
      return `${source.name} header`;
    case 'source':
      return `source ${source.name}`;
    case 'extension':
      return `extension ${source.name}`;
  }
}

type Read = (source: PlaceholderSource, target: string) => string | undefined;

/**
 * Reads placeholders of one request; the query is parsed only if a placeholder
 * asks for it. A header or query parameter given more than once reads as absent,
 * and so does a required value the request lacks: each is described in `problems`,
 * and the route refuses the request.
 */
function reader(request: HttpRequestFacts, params: readonly string[], routeName: string, problems: string[]): Read {
  let query: QueryFacts | null = null;
  const raw = (source: PlaceholderSource, target: string): string | undefined => {
    switch (source.from) {
      case 'path':
        return params[source.index];
      case 'query': {
        query ??= readQuery(request.query);
        const cloak = query.cloaked(source.name);
        if (cloak !== null) {
          problems.push(`the request has ${cloak}, and the route ${routeName} reads the query parameter ${source.name} for ${target}: which one counts is ambiguous`);
          return undefined;
        }
        return query.params.get(source.name) ?? undefined;
      }
      case 'header':
        if (request.repeatedHeaders?.has(source.name)) {
          problems.push(`the request has the ${source.name} header more than once, and the route ${routeName} reads it for ${target}: which one counts is ambiguous`);
          return undefined;
        }
        return request.headers[source.name];
      case 'source':
        return request.source[source.name] ?? undefined;
      case 'extension':
        return Object.hasOwn(request.extensions, source.name) ? request.extensions[source.name] : undefined;
    }
  };
  return (source, target) => {
    const value = raw(source, target);
    if (value === undefined && !source.optional && problems.length === 0) {
      problems.push(`the request has no ${describeSource(source)}, which the route ${routeName} requires for ${target} (the gateway must set it)`);
    }
    return value;
  };
}

/** A request's query, and what in it other servers could read as another copy of a parameter. */
interface QueryFacts {
  readonly params: URLSearchParams;
  /** Why `name` is not one value to every reader (a phrase for the problem), or null. */
  cloaked(name: string): string | null;
}

/**
 * The query as verdict reads it (URLSearchParams), and the parameters other servers
 * would read as the same one: a name followed by `[…]` (`region[]`, `region[0]`: PHP,
 * Rails and Express's `qs` make a list of them), a name differing only in case (ASP.NET
 * reads names that way), one PHP reads as it (a leading space, `.` or a space for `_`),
 * and a raw `;` (older Go, Rack and Python servers split on it).
 * Behind NGINX, `?region=us&region[]=eu` was decided on `us` while the upstream read
 * `["us", "eu"]`.
 */
function readQuery(raw: string): QueryFacts {
  const params = new URLSearchParams(raw);
  const copies = new Map<string, number>();
  for (const key of params.keys()) {
    const loose = looseQueryName(key);
    copies.set(loose, (copies.get(loose) ?? 0) + 1);
  }
  const semicolon = raw.includes(';');
  return {
    params,
    cloaked(name) {
      if (semicolon) return 'a ";" in its query, which some servers read as a separator between parameters';
      const count = copies.get(looseQueryName(name)) ?? 0;
      const exact = params.getAll(name).length;
      if (count > 1 || count > exact) {
        return exact > 1 ? `the query parameter ${name} more than once` : `a query parameter other servers read as ${name} (its name differs in case, or ends in [...])`;
      }
      return null;
    },
  };
}

/**
 * A query parameter's name as the loosest server reads it: leading spaces dropped, cut
 * at a `[` that is closed (an unclosed one read as `_`), spaces and dots as `_` (PHP
 * reads `cost.center` and `cost center` as `cost_center`), in lower case.
 */
export function looseQueryName(key: string): string {
  const bracket = key.indexOf('[');
  // PHP reads an unclosed `[` as `_` too (`cost[center` is `cost_center`).
  const base = bracket === -1 ? key : key.indexOf(']', bracket) === -1 ? key.replace('[', '_') : key.slice(0, bracket);
  return base.replace(/^ +/, '').replace(/[ .]/g, '_').toLowerCase();
}

/** A value; undefined when a placeholder it needs is absent from the request. */
function evaluate(value: RouteValue, read: Read): AttributeValue | undefined {
  const template = value.template;
  if ('constant' in template) return template.constant;
  const parts = template.parts;
  if (parts.length === 1) return read(parts[0] as PlaceholderSource, value.path);
  let out = '';
  let absent = false;
  // Every part is read, so a required one is missed even after an absent optional one.
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (typeof part === 'string') out += part;
    else {
      const v = read(part, value.path);
      if (v === undefined) absent = true;
      else out += v;
    }
  }
  return absent ? undefined : out;
}

const EMPTY: Attributes = Object.freeze({});

function build(values: readonly RouteValue[], read: Read): Attributes {
  if (values.length === 0) return EMPTY;
  const out: Record<string, AttributeValue> = {};
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    const v = evaluate(value, read);
    if (v !== undefined) out[value.name] = v;
  }
  return out;
}
