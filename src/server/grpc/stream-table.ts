// The table of open streams inside each HTTP/2 session of the gRPC port, in
// place of the Map node keeps there.
//
// node finds a session's streams by id in a Map. A Map with as many deletes as
// inserts outgrows its hash table every few hundred streams, and V8 keeps each
// outgrown table (an iterator may still walk it): one that had been promoted to
// the old generation holds every stream open at that moment, and all that the
// stream holds, alive through each young-generation collection until the next
// full one. Under load nearly every stream was promoted that way, and copying
// them was most of the young collections' pauses on the thread that decides
// (README, Benchmarks). This table replaces its bucket array only when the number
// of open streams grows fourfold past it or falls to a sixteenth of it, not as
// streams come and go, and it clears an entry when its stream leaves, so a
// promoted entry holds nothing.
//
// node 20 calls get, set, delete, forEach and size on it (lib/internal/http2/core.js);
// the rest of Map's reading surface is here too. The table goes in only where a
// session's state has exactly that shape and node is a release it was checked
// against; anywhere else the Map stays.

import { randomBytes } from 'node:crypto';
import type http2 from 'node:http2';

interface Entry {
  readonly id: number;
  stream: unknown;
  next: Entry | null;
}

const INITIAL_BUCKETS = 256;
/** Grows when there are this many streams per bucket on average (chains stay short). */
const LOAD = 4;
/** Shrinks (never below INITIAL_BUCKETS) when there is less than one stream per this many buckets. */
const SHRINK = 16;

export class StreamTable {
  private buckets: Array<Entry | null> = new Array<Entry | null>(INITIAL_BUCKETS).fill(null);
  private mask = INITIAL_BUCKETS - 1;
  private readonly seed = randomBytes(4).readUInt32LE(0);
  size = 0;

  get(id: number): unknown {
    for (let entry: Entry | null = this.buckets[slot(id, this.seed, this.mask)]!; entry !== null; entry = entry.next) if (entry.id === id) return entry.stream;
    return undefined;
  }

  set(id: number, stream: unknown): this {
    const bucket = slot(id, this.seed, this.mask);
    for (let entry: Entry | null = this.buckets[bucket]!; entry !== null; entry = entry.next) {
      if (entry.id === id) {
        entry.stream = stream;
        return this;
      }
    }
    this.buckets[bucket] = { id, stream, next: this.buckets[bucket]! };
    this.size += 1;
    if (this.size > this.buckets.length * LOAD) this.resize(this.buckets.length * 2);
    return this;
  }

  delete(id: number): boolean {
    const bucket = slot(id, this.seed, this.mask);
    let previous: Entry | null = null;
    for (let entry: Entry | null = this.buckets[bucket]!; entry !== null; previous = entry, entry = entry.next) {
      if (entry.id !== id) continue;
      if (previous === null) this.buckets[bucket] = entry.next;
      else previous.next = entry.next;
      entry.stream = null;
      entry.next = null;
      this.size -= 1;
      if (this.buckets.length > INITIAL_BUCKETS && this.size < this.buckets.length / SHRINK) this.resize(this.buckets.length / 2);
      return true;
    }
    return false;
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** As Map's: a stream deleted before its turn (one destroy closing another) is not visited. */
  forEach(visit: (stream: unknown, id: number) => void): void {
    for (const entry of this.snapshot()) if (entry.stream !== null) visit(entry.stream, entry.id);
  }

  // The rest of Map's reading surface: node 20 does not call these today, and a release
  // that starts to must find them rather than throw inside every session.
  *entries(): IterableIterator<[number, unknown]> {
    for (const entry of this.snapshot()) if (entry.stream !== null) yield [entry.id, entry.stream];
  }

  *keys(): IterableIterator<number> {
    for (const [id] of this.entries()) yield id;
  }

  *values(): IterableIterator<unknown> {
    for (const [, stream] of this.entries()) yield stream;
  }

  [Symbol.iterator](): IterableIterator<[number, unknown]> {
    return this.entries();
  }

  clear(): void {
    for (const entry of this.snapshot()) {
      entry.stream = null;
      entry.next = null;
    }
    this.buckets = new Array<Entry | null>(INITIAL_BUCKETS).fill(null);
    this.mask = INITIAL_BUCKETS - 1;
    this.size = 0;
  }

  /** The most entries in one bucket (for tests: a lookup walks at most this many). */
  longestChain(): number {
    let longest = 0;
    for (const head of this.buckets) {
      let length = 0;
      for (let entry = head; entry !== null; entry = entry.next) length += 1;
      longest = Math.max(longest, length);
    }
    return longest;
  }

  /** How many buckets there are now (for tests: the table grows with a burst and shrinks after it). */
  get bucketCount(): number {
    return this.buckets.length;
  }

  private snapshot(): Entry[] {
    const entries: Entry[] = [];
    for (const head of this.buckets) for (let entry = head; entry !== null; entry = entry.next) entries.push(entry);
    return entries;
  }

  /** Moves every entry to `count` buckets: twice as many under a burst, half as many after it. */
  private resize(count: number): void {
    const buckets = new Array<Entry | null>(count).fill(null);
    const mask = count - 1;
    for (const head of this.buckets) {
      for (let entry = head; entry !== null; ) {
        const next = entry.next;
        const bucket = slot(entry.id, this.seed, mask);
        entry.next = buckets[bucket]!;
        buckets[bucket] = entry;
        entry = next;
      }
    }
    this.buckets = buckets;
    this.mask = mask;
  }
}

/**
 * The bucket of a stream id. The client chooses the ids (any increasing odd numbers),
 * so they are mixed with this table's random seed first (the finalizer of MurmurHash3,
 * a bijection on 32 bits): ids picked to share low bits, 513 apart or 2^17 apart, do
 * not pile into one bucket and make each lookup a walk through every open stream.
 */
function slot(id: number, seed: number, mask: number): number {
  let h = (id ^ seed) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h & mask;
}

/** The node releases whose session state this was checked against. */
const CHECKED_NODE_MAJORS = new Set(['20']);

/**
 * Puts a StreamTable in each new session of `server`, when node is a release it was
 * checked against and the session's state has the expected shape, and calls
 * `installed` for each session that got one; false (nothing changed) when node is
 * another release.
 */
export function useStreamTables(server: http2.Http2Server | http2.Http2SecureServer, installed: () => void = () => undefined): boolean {
  if (!CHECKED_NODE_MAJORS.has(process.versions.node.split('.')[0]!)) return false;
  server.on('session', (session: http2.ServerHttp2Session) => {
    const state = sessionState(session);
    if (state === null) return;
    state.streams = new StreamTable();
    installed();
  });
  return true;
}

/** The session's internal state, when it holds an empty `streams` map as expected. */
function sessionState(session: http2.ServerHttp2Session): { streams: unknown } | null {
  const state = internalState(session);
  return state !== null && state.streams.size === 0 ? state : null;
}

/** What a session's stream table (node's Map or a StreamTable) offers for reading. */
export interface OpenStreams {
  forEach(visit: (stream: unknown) => void): void;
}

/**
 * The streams a session has open now, read from its internal state (a StreamTable or
 * node's own Map); null where the session does not have the shape node 20 gives it.
 */
export function openStreams(session: http2.ServerHttp2Session): OpenStreams | null {
  return internalState(session)?.streams ?? null;
}

type MapLike = Partial<Record<'get' | 'set' | 'delete' | 'forEach', unknown>> & { size?: unknown };

function internalState(session: http2.ServerHttp2Session): { streams: OpenStreams & { size: number } } | null {
  const key = Object.getOwnPropertySymbols(session).find((symbol) => symbol.description === 'state');
  if (key === undefined) return null;
  const state = (session as unknown as Record<symbol, unknown>)[key];
  if (typeof state !== 'object' || state === null) return null;
  // node's own Map (a SafeMap: its prototype chain is cut, so it is no instanceof Map).
  const streams = (state as { streams?: MapLike }).streams;
  if (typeof streams !== 'object' || streams === null || typeof streams.size !== 'number') return null;
  const mapLike = typeof streams.get === 'function' && typeof streams.set === 'function' && typeof streams.delete === 'function' && typeof streams.forEach === 'function';
  return mapLike ? (state as { streams: OpenStreams & { size: number } }) : null;
}
