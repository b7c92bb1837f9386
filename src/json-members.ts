import { cutText } from './cut-text.js';

/**
 * Members named twice in one JSON object. JSON.parse keeps the last copy; other
 * parsers keep the first, or refuse. A body that a gateway, a WAF or a log reads one
 * way and verdict another (`"subject": {"id": "dana"}, …, "subject": {"id": "ada"}`,
 * or the second spelled `"\u0073ubject"`) is refused instead.
 */

/** Below this depth members are not compared: the attribute checks refuse anything that deep anyway. */
const MAX_COMPARED_DEPTH = 64;

/** The longest part of a member's name a path names: a path is for an error message, and a name can be a megabyte. */
const MAX_NAMED_KEY = 40;

/** The key of an object member as a path segment: `.name`, or `["odd key"]`; a long name is cut (`.aaaa…`). */
export function memberSegment(key: string): string {
  const named = cutText(key, MAX_NAMED_KEY);
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${named}` : `[${JSON.stringify(named)}]`;
}

interface Container {
  /** The member names read so far; null for an array, and for an object too deep to compare. */
  readonly names: Set<string> | null;
  readonly isObject: boolean;
  readonly path: string;
  /** An array's current index. */
  index: number;
  /** An object's last member name, and whether the next string is a member name. */
  name: string;
  expectingName: boolean;
}

/**
 * The path of the first member named a second time in its object (`subject.id`,
 * `evaluations[1].resource`), names compared as JSON.parse decodes them; null when
 * there is none. `text` must be valid JSON (JSON.parse has read it): one linear scan
 * with an explicit stack, however deep the text nests.
 */
export function repeatedMember(text: string): string | null {
  const stack: Container[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const start = i++;
      let escaped = false;
      for (;;) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) {
          escaped = true;
          i += 2;
          continue;
        }
        i++;
        if (d === 0x22) break;
      }
      const container = stack[stack.length - 1];
      if (container?.isObject && container.expectingName) {
        container.expectingName = false;
        const name = escaped ? (JSON.parse(text.slice(start, i)) as string) : text.slice(start + 1, i - 1);
        container.name = name;
        if (container.names !== null) {
          if (container.names.has(name)) return (container.path + memberSegment(name)).replace(/^\./, '');
          container.names.add(name);
        }
      }
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      const parent = stack[stack.length - 1];
      const path = parent === undefined ? '' : parent.isObject ? parent.path + memberSegment(parent.name) : `${parent.path}[${parent.index}]`;
      const isObject = c === 0x7b;
      const compared = isObject && stack.length < MAX_COMPARED_DEPTH;
      stack.push({ names: compared ? new Set() : null, isObject, path, index: 0, name: '', expectingName: isObject });
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
    } else if (c === 0x2c) {
      const container = stack[stack.length - 1];
      if (container?.isObject) container.expectingName = true;
      else if (container !== undefined) container.index++;
    }
    i++;
  }
  return null;
}

/**
 * Whether `text` nests arrays and objects more than `limit` deep, found in one linear
 * scan that stops at the first level too deep. Run before JSON.parse: a 1 MB body of
 * half a million nested arrays held the thread that answers every caller for a quarter
 * of a second in JSON.parse and the member scan, only to be refused afterwards.
 */
export function nestedDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // Past the string: a backslash escapes the next character, whatever it is.
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return false;
}
