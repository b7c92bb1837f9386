import { isAlias, isCollection, isMap, isNode, isPair, isScalar, LineCounter, parseAllDocuments, type Node } from 'yaml';
import { cutText } from '../cut-text.js';
import { formatPath, type PolicyDiagnostic } from './diagnostic.js';
import { compareUnitsWithText, writeUnits, type TextUnits } from './text-units.js';

/** Where something was written: 1-based line and column. */
export interface Position {
  readonly line: number;
  readonly col: number;
}

/**
 * The positions of the nodes of one YAML (or JSON) value, by path. Plain data
 * (maps of numbers), so it can cross between threads; `locate` reads it the way
 * the YAML document itself would be searched: the node at a path, else its
 * nearest existing ancestor.
 */
export interface PositionTable {
  /** Position of the node at a path, by encoded path (`pathKey`). Replaced, not changed, when `pending` is scanned. */
  nodes: Map<string, number>;
  /** Position of the key of the map entry at a path, by encoded path. */
  keys: Map<string, number>;
  /**
   * JSON whose positions are not in the maps yet (an item of a large JSON list;
   * the maps are then empty and shared): scanned into new maps when a position
   * below the item is first asked for, so a valid 100,000-entry directory builds
   * no per-node tables. The item itself is at `line`:`col`.
   */
  pending?: { readonly text: string; readonly line: number; readonly col: number } | undefined;
  /**
   * The maps as they cross from the policy load thread (the maps are then empty and
   * shared): sorted paths laid end to end as code units, searched where asked. Decoding a role of
   * 100,000 permissions rebuilt 600,000 map entries, 0.8 s on the thread that answers checks.
   */
  packed?: { readonly nodes: PackedPositions; readonly keys: PackedPositions } | undefined;
}

/**
 * A position map as sorted paths laid end to end, where each ends, and the packed
 * position of each. The paths are UTF-16 code units in a typed array, not a string:
 * a role of 100,000 permissions has 25 million characters of paths, and decoding them
 * as a string held the deciding thread for 170–450 ms; a typed array arrives as bytes.
 */
export interface PackedPositions {
  readonly paths: TextUnits;
  readonly ends: Uint32Array;
  readonly values: Float64Array;
}

function packMap(map: ReadonlyMap<string, number>): PackedPositions {
  const sorted = [...map.keys()].sort();
  let length = 0;
  for (const path of sorted) length += path.length;
  const paths: TextUnits = new Uint16Array(length);
  const ends = new Uint32Array(sorted.length);
  const values = new Float64Array(sorted.length);
  let end = 0;
  for (let i = 0; i < sorted.length; i++) {
    const path = sorted[i]!;
    writeUnits(paths, end, path);
    end += path.length;
    ends[i] = end;
    values[i] = map.get(path)!;
  }
  return { paths, ends, values };
}

function packedGet(packed: PackedPositions, path: string): number | undefined {
  let low = 0;
  let high = packed.ends.length - 1;
  while (low <= high) {
    const mid = (low + high) >>> 1;
    const order = compareUnitsWithText(packed.paths, mid === 0 ? 0 : packed.ends[mid - 1]!, packed.ends[mid]!, path);
    if (order === 0) return packed.values[mid];
    if (order < 0) low = mid + 1;
    else high = mid - 1;
  }
  return undefined;
}

/** A table as it crosses threads: its maps packed (a table whose scan is deferred stays as it is). */
export function packedPositions(table: PositionTable): PositionTable {
  if (table.pending !== undefined || table.packed !== undefined) return table;
  return { nodes: NOT_SCANNED, keys: NOT_SCANNED, packed: { nodes: packMap(table.nodes), keys: packMap(table.keys) } };
}

/** A table decoded from its crossing form: the shared empty maps stand in for the ones it never had. */
export function arrivedPositions(table: Pick<PositionTable, 'pending' | 'packed'>): PositionTable {
  return { nodes: NOT_SCANNED, keys: NOT_SCANNED, pending: table.pending, packed: table.packed };
}

/** One document of a policy file, with what is needed to point at its lines. */
export interface SourceDocument {
  readonly file: string;
  /** Index of the document within a multi-document YAML file. */
  readonly index: number;
  /** 1-based position of the node at `path`, or of its nearest existing ancestor. */
  locate(path: readonly PropertyKey[]): Position;
  /** 1-based position of the key of the map entry at `path`: where an unknown key is written. */
  locateKey(path: readonly PropertyKey[]): Position;
}

/** A parsed YAML document: its value and where each of its nodes was written. */
export interface ParsedYamlDocument {
  readonly index: number;
  readonly value: unknown;
  readonly positions: PositionTable;
  /** JSON read with `listOf`: the tables of the items of `list` (relative to each item), not in `positions`. */
  readonly items?: { readonly list: string; readonly tables: Map<number, { positions: PositionTable }> };
}

// Lines and columns packed into one number keep the tables small when they cross threads.
// No policy file passes 64 MiB (read.ts), so neither a line number nor a column passes
// 2^26 + 1 and the packed number stays an exact integer. (At 2^20 a position past the
// first megabyte of a one-line JSON directory was reported at column 1048575.)
const COLUMNS = 2 ** 26 + 2;
const pack = (line: number, col: number): number => Math.max(line, 1) * COLUMNS + Math.min(Math.max(col, 1), COLUMNS - 1);
export const unpack = (packed: number): Position => ({ line: Math.floor(packed / COLUMNS), col: packed % COLUMNS });

/** One path segment as a table key: numbers (sequence indices) and strings (map keys) never collide. */
function segmentKey(segment: unknown): string {
  if (typeof segment === 'string') return JSON.stringify(segment);
  if (typeof segment === 'number') return String(segment);
  return `?${String(segment)}`;
}

/** The table key of a path. */
export function pathKey(path: readonly unknown[], from = 0): string {
  let key = '';
  for (let i = from; i < path.length; i++) key += (i > from ? ',' : '') + segmentKey(path[i]);
  return key;
}

export function emptyPositions(): PositionTable {
  return { nodes: new Map(), keys: new Map() };
}

/**
 * Parses one policy file into its documents. Syntax errors become diagnostics, not
 * exceptions; a document with errors is left out.
 */
export function parseYamlFile(file: string, text: string, diagnostics: PolicyDiagnostic[], listOf?: (value: unknown) => string | null): ParsedYamlDocument[] {
  // JSON (a directory exported from another system, often large) is read natively when it is valid;
  // the YAML parser, which reads JSON too, takes over to report what is wrong with it.
  if (file.endsWith('.json')) {
    const parsed = parseJsonDocument(text, listOf);
    if (parsed !== null) return [parsed];
  }
  const tooDeep = nestingTooDeep(text);
  if (tooDeep !== null) {
    diagnostics.push({ file, ...lineAndColumn(text, tooDeep), path: '', message: `nested deeper than ${MAX_DOCUMENT_DEPTH} levels; no policy document needs that many (flatten the value, or split it)` });
    return [];
  }
  const lineCounter = new LineCounter();
  // Repeated keys are found by shapeOf in one pass: the parser's own check compares each key with every other (60,000 keys took 40 s).
  const parsed = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  const docs = Array.isArray(parsed) ? parsed : [];
  const out: ParsedYamlDocument[] = [];
  for (const doc of docs) {
    for (const error of [...doc.errors, ...doc.warnings]) {
      const { line, col } = lineCounter.linePos(error.pos[0]);
      // The yaml parser reports its own stack running out as an error of the document.
      const message = /Maximum call stack size exceeded/.test(error.message) ? `nested too deep to be read (far more than ${MAX_DOCUMENT_DEPTH} levels); flatten the value, or split it` : firstLine(error.message);
      diagnostics.push({ file, line: Math.max(line, 1), col: Math.max(col, 1), path: '', message });
    }
    if (doc.errors.length > 0) continue;
    if (doc.contents === null) continue; // an empty document, e.g. a trailing `---`
    const shape = shapeOf(doc.contents);
    const where = (offset: number): { line: number; col: number } => {
      const { line, col } = lineCounter.linePos(offset);
      return { line: Math.max(line, 1), col: Math.max(col, 1) };
    };
    if (shape.protoKey !== null) {
      // Read into a plain object, the key would set the object's prototype: its members would match and be listed nowhere.
      diagnostics.push({ file, ...where(shape.protoKey), path: '', message: '"__proto__" cannot be a key or a value in a policy document; use another name' });
      continue;
    }
    if (shape.tooDeep !== null) {
      diagnostics.push({ file, ...where(shape.tooDeep), path: '', message: `nested deeper than ${MAX_DOCUMENT_DEPTH} levels; no policy document needs that many (flatten the value, or split it)` });
      continue;
    }
    if (shape.unreadable !== null) {
      diagnostics.push({ file, ...where(shape.unreadable.offset), path: '', message: shape.unreadable.message });
      continue;
    }
    if (shape.repeatedKeys.length > 0) {
      // Read into an object, the last would win: a repeated `effect` could turn a deny into an allow.
      for (const { offset, key } of shape.repeatedKeys) diagnostics.push({ file, ...where(offset), path: '', message: `Map keys must be unique: ${JSON.stringify(cutText(key, 60))} is given more than once in this mapping` });
      continue;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_EXPANSIONS });
    } catch (error) {
      // The yaml library refuses an alias that would expand past maxAliasCount nodes (a "billion laughs").
      const reason = error instanceof Error ? error.message : String(error);
      diagnostics.push({ file, ...where(shape.firstAlias ?? doc.contents.range?.[0] ?? 0), path: '', message: `YAML aliases expand too far to be read (${firstLine(reason)}); write the values out, or reuse an anchor fewer times` });
      continue;
    }
    const positions = emptyPositions();
    const at = (offset: number): number => {
      const { line, col } = lineCounter.linePos(offset);
      return pack(line, col);
    };
    recordPositions(doc.contents, [], positions, at);
    out.push({ index: out.length, value, positions });
  }
  return out;
}

/**
 * Where `[` and `{` (outside quotes and comments) first nest past MAX_DOCUMENT_DEPTH,
 * or a line opens more than that many block sequences or complex keys at once
 * (`- - - …`), found in one pass before the YAML parser sees the text: its parser
 * keeps about half a gigabyte per megabyte of such nesting, and an 8 MB file of it
 * (under the size limits) ran a load out of memory, or took 13.5 s and 2.1 GB for
 * `- ` written four million times on one line. Quotes and comments are told apart as
 * YAML and JSON write them; a text this scan misreads is still parsed, and the
 * parser's own depth check stands behind it.
 */
export function nestingTooDeep(text: string): number | null {
  let depth = 0;
  let quote = 0;
  // Outside brackets, at the start of a line's content: each `- ` or `? ` there opens one more level.
  let atLineStart = true;
  let opened = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (quote !== 0) {
      if (c === 0x5c && quote === 0x22) i++; // a backslash escape inside "…"
      else if (c === quote) quote = 0;
      continue;
    }
    if (c === 0x0a) {
      atLineStart = true;
      opened = 0;
      continue;
    }
    if (atLineStart && depth === 0) {
      if (c === 0x20 || c === 0x09) continue;
      const next = i + 1 < text.length ? text.charCodeAt(i + 1) : 0x0a;
      if ((c === 0x2d || c === 0x3f) && (next === 0x20 || next === 0x09 || next === 0x0a || next === 0x0d)) {
        if (++opened > MAX_DOCUMENT_DEPTH) return i;
        continue;
      }
    }
    atLineStart = false;
    if (c === 0x22 || c === 0x27) quote = c;
    else if (c === 0x23 && (i === 0 || text.charCodeAt(i - 1) <= 0x20)) {
      const end = text.indexOf('\n', i);
      if (end === -1) break;
      i = end - 1;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_DOCUMENT_DEPTH) return i;
    } else if ((c === 0x5d || c === 0x7d) && depth > 0) depth--;
  }
  return null;
}

/** The 1-based line and column of `offset` in `text`. */
function lineAndColumn(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  for (let at = text.indexOf('\n'); at !== -1 && at < offset; at = text.indexOf('\n', at + 1)) {
    line++;
    start = at + 1;
  }
  return { line, col: offset - start + 1 };
}

/**
 * How deep a policy document's values may nest, in YAML and in JSON alike. Far
 * beyond any policy; it bounds the recursion of reading a document, which a file
 * of 10,000 `[` would otherwise overflow.
 */
export const MAX_DOCUMENT_DEPTH = 64;

/** How many nodes an alias may expand to when a YAML document is read (the yaml library's maxAliasCount). */
const MAX_ALIAS_EXPANSIONS = 100;

/**
 * The offset of the first node nested deeper than MAX_DOCUMENT_DEPTH and of the first
 * alias, found with an explicit stack (the document may be as deep as its text is long).
 */
function shapeOf(root: Node): { tooDeep: number | null; firstAlias: number | null; protoKey: number | null; unreadable: Unreadable | null; repeatedKeys: readonly { offset: number; key: string }[] } {
  let firstAlias: number | null = null;
  const pending: [Node, number][] = [[root, 0]];
  const repeatedKeys: { offset: number; key: string }[] = [];
  const fine = { tooDeep: null, protoKey: null, unreadable: null, repeatedKeys };
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [node, depth] = next;
    if (depth > MAX_DOCUMENT_DEPTH) return { ...fine, tooDeep: node.range?.[0] ?? 0, firstAlias };
    if (isScalar(node) && node.value === '__proto__' && depth > 0) return { ...fine, firstAlias, protoKey: node.range?.[0] ?? 0 };
    if (isScalar(node) && typeof node.value === 'number' && Number.isInteger(node.value) && !Number.isSafeInteger(node.value)) {
      return { ...fine, firstAlias, unreadable: { offset: node.range?.[0] ?? 0, message: `the number ${String(node.value)} is too large to be held exactly (past 2^53, it would be read as another number); write it as a string` } };
    }
    if (isAlias(node)) {
      const offset = node.range?.[0] ?? 0;
      if (firstAlias === null || offset < firstAlias) firstAlias = offset;
      continue;
    }
    if (!isCollection(node)) continue;
    // Keys as the object read from the map would hold them (`1` and "1" are one key there).
    const keys = isMap(node) ? new Set<string>() : null;
    for (const item of node.items) {
      // An alias as a key (`*e : allow` beside `&e effect: deny`) would repeat a key this pass cannot see as one.
      if (isPair(item) && isAlias(item.key)) return { ...fine, firstAlias, unreadable: { offset: item.key.range?.[0] ?? 0, message: 'a key cannot be an alias (*name): write the key out' } };
      // A YAML 1.1 merge key (`<<`) may be given more than once; the mapping's own keys win over what it merges.
      if (keys !== null && isPair(item) && isScalar(item.key) && typeof item.key.value !== 'symbol') {
        const key = item.key.value === null ? '' : String(item.key.value);
        if (keys.has(key) && repeatedKeys.length < MAX_REPEATED_KEYS_REPORTED) repeatedKeys.push({ offset: item.key.range?.[0] ?? 0, key });
        keys.add(key);
      }
      if (isPair(item)) {
        // `? [a, b] : x` would be read as the key "[ a, b ]", with only a warning on stderr.
        if (isCollection(item.key)) return { ...fine, firstAlias, unreadable: { offset: item.key.range?.[0] ?? 0, message: 'a key must be a single value, not a list or a mapping; write the key as text' } };
        if (isNode(item.key)) pending.push([item.key, depth + 1]);
        if (isNode(item.value)) pending.push([item.value, depth + 1]);
      } else if (isNode(item)) pending.push([item, depth + 1]);
    }
  }
  return { ...fine, firstAlias };
}

/** Repeated keys reported per document, at most: each is an error already. */
const MAX_REPEATED_KEYS_REPORTED = 100;

/** Where a document says something it cannot be read as, and what. */
interface Unreadable {
  readonly offset: number;
  readonly message: string;
}

/**
 * Scans JSON text from `from` for the positions of its nodes (the same table the YAML
 * parser's nodes give), starting at 1-based `line` and `col`. The items of the list
 * under the top-level key `deferList` are only checked (repeated keys, nesting): each
 * gets a table in `deferred` holding its position and its source text, scanned when a
 * position inside it is first asked for. False when a key repeats or values nest
 * deeper than MAX_DOCUMENT_DEPTH.
 */
function scanJson(
  text: string,
  from: number,
  to: number,
  startLine: number,
  startCol: number,
  positions: PositionTable,
  deferList: string | null,
  deferred: Map<number, { positions: PositionTable }> | null,
): boolean {
  const n = to;
  let i = from;
  let line = startLine;
  // Columns on the first line are counted from the text's own start column.
  let lineStart = from - (startCol - 1);
  const space = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 10) {
        line++;
        lineStart = ++i;
      } else if (c === 32 || c === 9 || c === 13) i++;
      else break;
    }
  };
  /** Skips a string starting at its quote; returns its text as a path segment (the JSON text itself when it needs no escaping). */
  const string = (): string => {
    const start = i++;
    let escaped = false;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 92) {
        escaped = true;
        i += 2;
      } else if (c === 34) break;
      else i++;
    }
    i++;
    const raw = text.slice(start, i);
    return escaped ? JSON.stringify(JSON.parse(raw) as string) : raw;
  };
  const deferKey = deferList === null ? null : JSON.stringify(deferList);
  /** A value whose positions are not recorded: checked for repeated keys and depth only. */
  /** A string, number, true, false or null: passed over (a string's escapes honoured). */
  const scalar = (c: number): true => {
    if (c === 34) {
      string();
      return true;
    }
    while (i < n) {
      const d = text.charCodeAt(i);
      if (d === 44 || d === 93 || d === 125 || d === 32 || d === 10 || d === 13 || d === 9) break;
      i++;
    }
    return true;
  };
  const skip = (depth: number): boolean => {
    space();
    if (depth > MAX_DOCUMENT_DEPTH) return false;
    const c = text.charCodeAt(i);
    if (c === 123) {
      i++;
      space();
      if (text.charCodeAt(i) === 125) {
        i++;
        return true;
      }
      let seen: string[] | Set<string> = [];
      for (;;) {
        space();
        const key = string();
        if (Array.isArray(seen)) {
          if (seen.includes(key)) return false;
          seen.push(key);
          if (seen.length > 16) seen = new Set(seen);
        } else {
          if (seen.has(key)) return false;
          seen.add(key);
        }
        space();
        i++; // :
        if (!skip(depth + 1)) return false;
        space();
        if (text.charCodeAt(i++) === 125) return true;
      }
    }
    if (c === 91) {
      i++;
      space();
      if (text.charCodeAt(i) === 93) {
        i++;
        return true;
      }
      for (;;) {
        if (!skip(depth + 1)) return false;
        space();
        if (text.charCodeAt(i++) === 93) return true;
      }
    }
    return scalar(c);
  };
  const node = (key: string, depth: number): boolean => {
    space();
    if (depth > MAX_DOCUMENT_DEPTH) return false;
    positions.nodes.set(key, pack(line, i - lineStart + 1));
    const c = text.charCodeAt(i);
    const prefix = key === '' ? '' : `${key},`;
    if (c === 123) {
      i++;
      space();
      if (text.charCodeAt(i) === 125) {
        i++;
        return true;
      }
      for (;;) {
        space();
        const at = pack(line, i - lineStart + 1);
        const child = prefix + string();
        if (positions.keys.has(child)) return false;
        positions.keys.set(child, at);
        space();
        i++; // :
        if (!node(child, depth + 1)) return false;
        space();
        if (text.charCodeAt(i++) === 125) return true;
      }
    }
    if (c === 91) {
      i++;
      space();
      if (text.charCodeAt(i) === 93) {
        i++;
        return true;
      }
      const deferring = deferred !== null && depth === 1 && key === deferKey;
      for (let index = 0; ; index++) {
        if (deferring) {
          // An item of the document's list: its own position now, the rest when asked for.
          space();
          const itemLine = line;
          const itemCol = i - lineStart + 1;
          const start = i;
          if (!skip(depth + 1)) return false;
          deferred.set(index, { positions: { nodes: NOT_SCANNED, keys: NOT_SCANNED, pending: { text: text.slice(start, i), line: itemLine, col: itemCol } } });
        } else if (!node(prefix + index, depth + 1)) return false;
        space();
        if (text.charCodeAt(i++) === 93) return true;
      }
    }
    return scalar(c);
  };
  return node('', 0);
}

/** The maps of every table not scanned yet: empty, never written (a scan gives the table maps of its own). */
const NOT_SCANNED: Map<string, number> = new Map();

/** Fills a table whose positions were deferred (an item of a large JSON list) by scanning its text. */
function settle(table: PositionTable): void {
  const pending = table.pending;
  if (pending === undefined) return;
  table.pending = undefined;
  table.nodes = new Map();
  table.keys = new Map();
  scanJson(pending.text, 0, pending.text.length, pending.line, pending.col, table, null, null);
}

/**
 * A valid JSON file as one document: its value from JSON.parse, the positions of
 * its nodes from one linear scan (the same table the YAML parser's nodes give, far
 * faster for a file of 100,000 directory entries). Null when the text is not valid
 * JSON, repeats a key or nests deeper than MAX_DOCUMENT_DEPTH: the YAML parser then
 * reports the problem. With `listOf` (which list of a document holds its items), the
 * positions inside each item are left to be found when first asked for: `items`
 * holds one table per item, and `positions` the rest.
 */
export function parseJsonDocument(text: string, listOf?: (value: unknown) => string | null): ParsedYamlDocument | null {
  // Left to the YAML parser, which reports where (see shapeOf); spelled with escapes too (`"\u005f_proto__"`).
  if (text.includes('__proto__')) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (text.includes('\\u') && holdsProtoKey(value)) return null;
  const positions = emptyPositions();
  const list = listOf?.(value) ?? null;
  const deferred = list === null ? null : new Map<number, { positions: PositionTable }>();
  if (!scanJson(text, 0, text.length, 1, 1, positions, list, deferred)) return null;
  return { index: 0, value, positions, ...(list !== null && deferred !== null ? { items: { list, tables: deferred } } : {}) };
}

/** Whether a parsed JSON value has a member named `__proto__` anywhere, found with an explicit stack. */
function holdsProtoKey(value: unknown): boolean {
  const pending: unknown[] = [value];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (typeof next !== 'object' || next === null) continue;
    if (Array.isArray(next)) {
      for (const item of next) pending.push(item);
      continue;
    }
    if (Object.hasOwn(next, '__proto__')) return true;
    for (const member of Object.values(next)) pending.push(member);
  }
  return false;
}

/**
 * Records the position of every node reachable the way `Document.getIn` reaches
 * them: through maps (by scalar key) and sequences (by index), never through an alias.
 */
function recordPositions(node: Node, path: unknown[], table: PositionTable, at: (offset: number) => number): void {
  if (node.range) table.nodes.set(pathKey(path), at(node.range[0]));
  if (isAlias(node) || !isCollection(node)) return;
  if (isMap(node)) {
    for (const pair of node.items) {
      if (!isPair(pair) || !isScalar(pair.key)) continue;
      const child = [...path, pair.key.value];
      if (pair.key.range) table.keys.set(pathKey(child), at(pair.key.range[0]));
      if (isNode(pair.value)) recordPositions(pair.value, child, table, at);
    }
    return;
  }
  node.items.forEach((item, i) => {
    if (isNode(item)) recordPositions(item, [...path, i], table, at);
  });
}

/** The position of `path` in a table, or of its nearest recorded ancestor; null when none is recorded. */
export function lookupNode(table: PositionTable, path: readonly PropertyKey[], from = 0): Position | null {
  if (table.pending !== undefined) {
    // The item's own position needs no scan.
    if (path.length <= from) return { line: table.pending.line, col: table.pending.col };
    settle(table);
  }
  for (let depth = path.length; depth >= from; depth--) {
    const key = pathKey(path.slice(0, depth), from);
    const packed = table.packed !== undefined ? packedGet(table.packed.nodes, key) : table.nodes.get(key);
    if (packed !== undefined) return unpack(packed);
  }
  return null;
}

export function lookupKey(table: PositionTable, path: readonly PropertyKey[], from = 0): Position | null {
  if (path.length <= from) return null;
  settle(table);
  const key = pathKey(path, from);
  const packed = table.packed !== undefined ? packedGet(table.packed.keys, key) : table.keys.get(key);
  return packed === undefined ? null : unpack(packed);
}

function firstLine(message: string): string {
  const nl = message.indexOf('\n');
  return nl === -1 ? message : message.slice(0, nl);
}

export function diagnosticAtKey(source: SourceDocument, path: readonly PropertyKey[], message: string): PolicyDiagnostic {
  const { line, col } = source.locateKey(path);
  return { file: source.file, line, col, path: formatPath(path), message };
}

export function diagnosticAt(source: SourceDocument, path: readonly PropertyKey[], message: string): PolicyDiagnostic {
  const { line, col } = source.locate(path);
  return { file: source.file, line, col, path: formatPath(path), message };
}
