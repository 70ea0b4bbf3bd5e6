/**
 * One run per key at a time within a container: callers that arrive while it runs share its promise, its value and
 * its failure alike, and nothing is kept once it settles, so a failure is never remembered and the next caller
 * starts afresh. The broker's loads, its revocation checks, discovery and the sealing-key read all go through it.
 */
export class SingleFlight<K, V> {
  private readonly running = new Map<K, Promise<V>>();

  run(key: K, work: () => Promise<V>): Promise<V> {
    const pending = this.running.get(key);
    if (pending !== undefined) return pending;
    const started = work().finally(() => this.running.delete(key));
    this.running.set(key, started);
    return started;
  }

  /** Whether a run for the key is under way. */
  has(key: K): boolean {
    return this.running.has(key);
  }

  /** The run under way for the key, to join without starting one. */
  pending(key: K): Promise<V> | undefined {
    return this.running.get(key);
  }
}
