/**
 * What one load computed, kept for the next by a key that names everything it
 * depends on. Entries a load did not use are dropped when the next load ends, so
 * the cache holds one policy set's worth of work, never a history.
 */
export class Reuse<V> {
  private kept = new Map<string, V>();
  private used = new Map<string, V>();

  take(key: string): V | undefined {
    const value = this.used.get(key) ?? this.kept.get(key);
    if (value !== undefined) this.used.set(key, value);
    return value;
  }

  put(key: string, value: V): void {
    this.used.set(key, value);
  }

  /** Keeps what the load that just ended used, and nothing else. */
  endLoad(): void {
    this.kept = this.used;
    this.used = new Map();
  }

  /** A load that stopped part way keeps everything: what it did not reach is still good. */
  abandonLoad(): void {
    for (const [key, value] of this.used) this.kept.set(key, value);
    this.used = new Map();
  }
}
