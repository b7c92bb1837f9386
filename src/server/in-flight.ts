// The requests a server is answering, kept so that a shutdown can reach them.
//
// A linked list, not a Map or Set keyed by the request: V8 keeps the hash table a
// Map has outgrown (an iterator may still be walking it), and once such a table
// has been promoted to the old generation it keeps every entry it held at that
// moment alive through each young-generation collection until the next full one.
// With many checks in flight whenever a table was outgrown, nearly every check's
// objects were promoted that way, and the young collections that copied them
// were the pauses in the durable path's latency tail (README, Benchmarks). A node
// taken off this list lets go of its value and its neighbours, so a node that
// did get promoted holds nothing.

interface Node<T> {
  value: T | null;
  previous: Node<T> | null;
  next: Node<T> | null;
}

/** What add() hands back: the key to take that one entry off again. */
export interface InFlightEntry {
  readonly [entryBrand]: true;
}
declare const entryBrand: unique symbol;

/** T excludes null and undefined: a taken node is marked by its value set to null. */
export class InFlight<T extends {}> {
  private head: Node<T> | null = null;
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(value: T): InFlightEntry {
    const node: Node<T> = { value, previous: null, next: this.head };
    if (this.head !== null) this.head.previous = node;
    this.head = node;
    this.count += 1;
    return node as unknown as InFlightEntry;
  }

  /** Takes the entry off; false when it was already taken (by this or by takeAll). */
  take(entry: InFlightEntry): boolean {
    const node = entry as unknown as Node<T>;
    if (node.value === null) return false;
    if (node.previous !== null) node.previous.next = node.next;
    else this.head = node.next;
    if (node.next !== null) node.next.previous = node.previous;
    node.value = null;
    node.previous = null;
    node.next = null;
    this.count -= 1;
    return true;
  }

  /** Takes every entry off and returns their values. */
  takeAll(): T[] {
    const values: T[] = [];
    let node = this.head;
    while (node !== null) {
      const next = node.next;
      values.push(node.value as T);
      node.value = null;
      node.previous = null;
      node.next = null;
      node = next;
    }
    this.head = null;
    this.count = 0;
    return values;
  }

  /** The values in flight now, newest first (the list is not changed). */
  values(): T[] {
    const values: T[] = [];
    for (let node = this.head; node !== null; node = node.next) values.push(node.value as T);
    return values;
  }
}
