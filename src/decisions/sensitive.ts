import { createHmac } from 'node:crypto';
import { VerdictError } from '../errors.js';
import type { DecisionRecord } from './record.js';

/**
 * Sensitive attributes: request attributes that the decision log stores as a
 * keyed HMAC-SHA256, never raw (as Vault's audit devices do). The key lives
 * outside the database, so a copy of the log alone reveals neither the values
 * nor lets anyone test guesses against them; with the key, equality search
 * still works by hashing the value searched for.
 *
 * A stored value is `hmac-sha256:` followed by the hex HMAC of the value's
 * bytes: a string's UTF-8 bytes, anything else's JSON text. The attribute path
 * is not mixed in, so one email hashes the same wherever it appears and the
 * log can still correlate it across fields.
 *
 * @example
 * const sensitive = new SensitiveAttributes(['principal.attributes.email', 'context.attributes.ip'], key);
 * const stored = sensitive.apply(record); // email and ip replaced by hmac-sha256:…
 */

export const HMAC_PREFIX = 'hmac-sha256:';

const ROOTS = ['principal', 'resource', 'context'] as const;
type Root = (typeof ROOTS)[number];

/** A validated attribute path, e.g. `principal.attributes.email`. */
export interface AttributePath {
  readonly text: string;
  readonly root: Root;
  /** Keys below `attributes`, at least one. */
  readonly keys: readonly string[];
}

/**
 * Parse `principal.attributes.email`, `resource.attributes.owner.email`,
 * `context.attributes.ip`.
 * @throws VerdictError CONFIG_INVALID naming the path and what is wrong
 */
export function parseAttributePath(text: string): AttributePath {
  const parts = text.split('.');
  const [root, attributes, ...keys] = parts;
  const fail = (why: string): VerdictError =>
    new VerdictError('CONFIG_INVALID', `sensitive attribute "${text}": ${why} (expected principal.attributes.NAME, resource.attributes.NAME or context.attributes.NAME)`);
  if (!ROOTS.includes(root as Root)) throw fail(`it must start with ${ROOTS.join(', ')}`);
  if (attributes !== 'attributes' || keys.length === 0) throw fail('only attributes can be hashed: ids, roles and actions are needed to query the log');
  if (keys.some((k) => k === '' || k.includes('"'))) throw fail('every part must be non-empty and free of double quotes');
  return { text, root: root as Root, keys };
}

/** The HMAC of one attribute value, as stored. */
export function hashAttributeValue(key: Uint8Array, value: unknown): string {
  const bytes = typeof value === 'string' ? value : (JSON.stringify(value) ?? 'null');
  return HMAC_PREFIX + createHmac('sha256', key).update(bytes, 'utf8').digest('hex');
}

/** SQLite JSON path of an attribute inside the `request` column, every key quoted. */
export function requestJsonPath(path: AttributePath): string {
  return `$."${path.root}"."attributes".${path.keys.map((k) => `"${k}"`).join('.')}`;
}

export class SensitiveAttributes {
  readonly paths: readonly AttributePath[];
  private readonly key: Buffer;

  /** @throws VerdictError CONFIG_INVALID for a bad path or a key shorter than 32 bytes */
  constructor(paths: readonly string[], key: Uint8Array) {
    if (key.length < 32) throw new VerdictError('CONFIG_INVALID', `the HMAC key is ${key.length} bytes; it needs at least 32`);
    const seen = new Set<string>();
    this.paths = paths.filter((p) => !seen.has(p) && seen.add(p)).map(parseAttributePath);
    this.key = Buffer.from(key);
  }

  hash(value: unknown): string {
    return hashAttributeValue(this.key, value);
  }

  /**
   * The record with every configured attribute that is present replaced by its
   * HMAC. Copies only the objects on the way to a replaced value: the caller's
   * request is left untouched.
   */
  apply(record: DecisionRecord): DecisionRecord {
    let request: DecisionRecord['request'] = record.request;
    for (const path of this.paths) {
      const part = request[path.root] as { readonly attributes: unknown };
      const replaced = this.replaceIn(part.attributes, path.keys, 0);
      if (replaced === undefined) continue;
      request = { ...request, [path.root]: { ...part, attributes: replaced } };
    }
    const details = this.applyToDirectoryFacts(record.details);
    if (request === record.request && details === record.details) return record;
    return { ...record, request, details };
  }

  /**
   * `details.directory.<part>.sent.attributes` holds the values a request sent that the
   * directory's replaced (kept so replay can rebuild the request as sent): an attribute
   * named sensitive is hashed there too, never stored raw.
   */
  private applyToDirectoryFacts(details: DecisionRecord['details']): DecisionRecord['details'] {
    const directory = details?.directory;
    if (details == null || typeof directory !== 'object' || directory === null) return details;
    let parts = directory as Record<string, unknown>;
    for (const path of this.paths) {
      const part = parts[path.root] as { readonly sent?: { readonly attributes?: unknown } } | undefined;
      const sent = part?.sent;
      if (sent === undefined) continue;
      const replaced = this.replaceIn(sent.attributes, path.keys, 0);
      if (replaced === undefined) continue;
      parts = { ...parts, [path.root]: { ...part, sent: { ...sent, attributes: replaced } } };
    }
    return parts === directory ? details : { ...details, directory: parts };
  }

  /** A copy of `node` with the value at keys[i..] hashed, or undefined when that value is absent. */
  private replaceIn(node: unknown, keys: readonly string[], i: number): unknown {
    if (typeof node !== 'object' || node === null || Array.isArray(node)) return undefined;
    const key = keys[i] as string;
    if (!Object.hasOwn(node, key)) return undefined;
    const value = (node as Record<string, unknown>)[key];
    if (value === undefined) return undefined;
    if (i === keys.length - 1) return { ...node, [key]: this.hash(value) };
    const inner = this.replaceIn(value, keys, i + 1);
    return inner === undefined ? undefined : { ...node, [key]: inner };
  }
}

/**
 * A `verdict decisions --attr PATH=VALUE` filter: the raw value (and its number,
 * when it reads as one) for attributes stored raw, and its HMAC under `key` for
 * attributes stored hashed. Both are searched, because which attributes are
 * sensitive is configuration and may have changed over the life of the log.
 * @throws VerdictError CONFIG_INVALID for a malformed path
 */
export function attributeFilter(pathText: string, value: string, key: Uint8Array | null): { jsonPath: string; values: Array<string | number> } {
  const path = parseAttributePath(pathText);
  const values: Array<string | number> = [value];
  if (/^-?\d+(\.\d+)?$/.test(value) && Number.isFinite(Number(value))) values.push(Number(value));
  if (key !== null) values.push(hashAttributeValue(key, value));
  return { jsonPath: requestJsonPath(path), values };
}
