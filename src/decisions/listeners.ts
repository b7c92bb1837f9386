/**
 * Observers of one kind of event (health changes, commits, write failures).
 * An observer that throws never breaks the emitter or the other observers:
 * metrics and logging must not be able to stop the decision log.
 */
export class Listeners<T> {
  private readonly listeners = new Set<(value: T) => void>();

  /** Returns the function that removes the listener. */
  add(listener: (value: T) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(value: T): void {
    for (const listener of this.listeners) {
      try {
        listener(value);
      } catch {
        // See the class comment.
      }
    }
  }
}
