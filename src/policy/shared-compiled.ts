// Compiled parts shared by every rule that writes the same thing (conditions,
// matchers, lists): one copy for all of them, and for sets loaded one after another.
// The cache is bounded by what it keeps, not only by how many entries: a policy push
// that changes a large allow-list each time must not leave every old copy alive. A text
// too long to be worth keeping is compiled each time it appears; when the kept texts
// pass the budget, the cache starts over (the sets in use keep what they hold).

/** Texts longer than this are not kept. */
const MAX_KEY_CHARS = 1024;
/** The most characters of key the cache keeps in all, and the most entries. */
const MAX_TOTAL_CHARS = 4 * 1024 * 1024;
const MAX_ENTRIES = 20_000;

export class SharedCompiled<V> {
  private readonly entries = new Map<string, V>();
  private totalChars = 0;

  /** The value kept for `key`, or the one `compile` makes (kept when the key is short enough). */
  get(key: string, compile: () => V): V {
    const kept = this.entries.get(key);
    if (kept !== undefined) return kept;
    const value = compile();
    if (key.length > MAX_KEY_CHARS) return value;
    if (this.entries.size >= MAX_ENTRIES || this.totalChars + key.length > MAX_TOTAL_CHARS) {
      this.entries.clear();
      this.totalChars = 0;
    }
    this.entries.set(key, value);
    this.totalChars += key.length;
    return value;
  }

  get size(): number {
    return this.entries.size;
  }
}
