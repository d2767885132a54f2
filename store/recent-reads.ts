/**
 * Reads a process remembers for a while, per key: the submit path's copies of the policy and of
 * quotas (store/policy.ts). What is kept is the read's promise, so reads that arrive while one is
 * in flight share it; a failed read is not remembered, so the next caller reads again. At most
 * `capacity` keys are kept, the least recently read going first.
 */
export class RecentReads<K, V> {
  private readonly entries = new Map<K, { readonly at: number; readonly value: Promise<V> }>();

  constructor(private readonly capacity: number) {}

  /**
   * The value read for `key` at most `maxAgeMs` before `now`, or `read()`'s, remembered from
   * `now`. A copy read "later" than now (a clock moved back) counts as stale.
   */
  get(key: K, maxAgeMs: number, now: number, read: () => Promise<V>): Promise<V> {
    const kept = this.entries.get(key);
    const age = kept ? now - kept.at : Number.POSITIVE_INFINITY;
    if (kept && age >= 0 && age < maxAgeMs) return kept.value;
    const entry = { at: now, value: read() };
    // Map order is insertion order: deleting first makes a refreshed entry the newest.
    this.entries.delete(key);
    this.entries.set(key, entry);
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    entry.value.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
    });
    return entry.value;
  }

  /** Forgets the copy of `key` (after a write through this process: it is read again at once). */
  forget(key: K): void {
    this.entries.delete(key);
  }

  /** Forgets every copy. */
  clear(): void {
    this.entries.clear();
  }
}
