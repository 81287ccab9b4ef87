/**
 * A bounded set of ioreq names, for idempotency by (domid, vcpu, seq).
 *
 * Duplicates are part of the Redis transport's contract: ioredis re-sends
 * in-flight commands after a reconnect (an XADD whose reply was lost is
 * appended twice), a reader re-scans its pending entries after a reconnect,
 * and XAUTOCLAIM hands a slow-but-alive consumer's entries to another.
 * A device model skips a request whose key it has seen; the hypervisor drops
 * a response whose key it has seen (or whose seq is not the one the vCPU
 * waits for).
 *
 * Bounded as a ring: once full, adding forgets the oldest key. Duplicates
 * arrive within a reconnect window of the original, and at most one ioreq
 * per vCPU is in flight, so a capacity of a few times the vCPU count suffices.
 */
import { SEEN_SET_CAPACITY } from './constants.js';

export class SeenSet {
  readonly #set = new Set<string>();
  readonly #ring: string[];
  #next = 0;

  constructor(readonly capacity: number = SEEN_SET_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`SeenSet: capacity must be a positive integer, got ${capacity}`);
    this.#ring = new Array<string>(capacity).fill('');
  }

  /** The key of one ioreq: `${domid}:${vcpu}:${seq}`. */
  static key(domid: number, vcpu: number, seq: number): string {
    return `${domid}:${vcpu}:${seq}`;
  }

  has(k: string): boolean {
    return this.#set.has(k);
  }

  /** Remembers `k`; returns false when it was already there (a duplicate). */
  add(k: string): boolean {
    if (this.#set.has(k)) return false;
    if (this.#set.size === this.capacity) {
      const old = this.#ring[this.#next]!;
      const gone = this.#set.delete(old);
      if (!gone) throw new Error('SeenSet: ring and set disagree');
    }
    this.#ring[this.#next] = k;
    this.#next = (this.#next + 1) % this.capacity;
    this.#set.add(k);
    if (this.#set.size > this.capacity) throw new Error('SeenSet: over capacity');
    return true;
  }

  get size(): number {
    return this.#set.size;
  }
}
