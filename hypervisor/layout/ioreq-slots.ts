/**
 * The shared ioreq pages: one ioreq_t slot per vCPU (Xen: the shared
 * ioreq page, a slot per vCPU), and per device-model domain an event word
 * (the event channel the hypervisor notifies), a pending bitmap (which
 * slots it has to look at) and a parked count (whether anyone sleeps on
 * the event word).
 *
 * Slot protocol (numbered as in docs/ioreq.md):
 *  1. vCPU (hypervisor mode) writes the fields, SEQ last but one, then
 *     Atomics.store(STATE, READY) — the release; under the ring it then
 *     sets its bit in the owner's pending bitmap (Atomics.or), adds 1 to
 *     the owner's event word, and notifies it only if the owner is parked.
 *  2. Server claims with compareExchange(STATE, READY → INPROCESS).
 *  3. Server writes DATA/FAULT, then Atomics.store(STATE, IORESP_READY),
 *     and notifies the slot only if the vCPU said it is WAITING.
 *  4. vCPU loads STATE (acquire), reads DATA, stores NONE.
 * The vCPU checks every state it observes moves forward; anything else is
 * the server's protocol error and crashes the guest.
 *
 * Skipping a notify is safe because every word involved is accessed with
 * sequentially consistent Atomics, in this order on each side:
 *   waker:   store the news (READY, or IORESP_READY) → load the flag → notify if set
 *   sleeper: store the flag → wait (whose value check is an SC load of the word)
 * If the waker's load misses the flag, the sleeper's store comes later, so
 * its wait's value check sees the news and does not sleep.
 */
import { MAX_IOREQ_SERVERS_PER_DOMAIN, MAX_VCPUS } from './constants.js';
import { expectBytes } from './region.js';

export const IOS = {
  STATE: 0,
  TYPE: 1,
  DIR: 2,
  SIZE: 3,
  GFN: 4,
  OFFSET: 5,
  DATA: 6,
  SEQ: 7,
  TARGET: 8, // frontend domid
  SERVER: 9,
  FAULT: 10,
  DOMID: 11,
  VCPU: 12,
  /** The checker's ledger: the last seq a device model took to apply for this vCPU (exactly-once check). */
  APPLIED: 13,
  /** 1 while the vCPU sleeps on STATE (written by the vCPU only): the server notifies only then. */
  WAITING: 14,
  WORDS: 16,
} as const;

/** Words of one owner's pending bitmap: a bit per vCPU slot. */
export const PENDING_WORDS = MAX_VCPUS / 32;

export class IoreqSlots {
  readonly slots: Int32Array;
  readonly events: Int32Array;
  /**
   * Per owner domid, PENDING_WORDS words: bit v set by vCPU slot v after it
   * published READY for a server of that owner (Atomics.or), taken by the
   * owner's ring end (Atomics.exchange to 0). A hint only — STATE decides —
   * so a stale bit is skipped and a bit lost to a changed owner is caught
   * by the end's periodic full scan.
   */
  readonly pending: Int32Array;
  /** Per owner domid: how many of its ring ends sleep on its event word (Atomics.add/sub by the end). */
  readonly parked: Int32Array;
  /**
   * Per owner domid: 1 once a vCPU posted a buffered ioreq for one of its
   * servers (the bufioreq event channel), taken by the owner's ring end
   * (Atomics.exchange to 0) before it looks at its buffered rings. A hint,
   * as `pending`.
   */
  readonly bufPending: Int32Array;
  static bytes(nd: number): number {
    return (MAX_VCPUS * IOS.WORDS + nd * MAX_IOREQ_SERVERS_PER_DOMAIN + nd * PENDING_WORDS + 2 * nd) * 4;
  }
  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nd: number,
  ) {
    expectBytes('ioreq slots', sab, IoreqSlots.bytes(nd));
    let at = 0;
    const take = (words: number): Int32Array => {
      const a = new Int32Array(sab, at * 4, words);
      at += words;
      return a;
    };
    this.slots = take(MAX_VCPUS * IOS.WORDS);
    this.events = take(nd * MAX_IOREQ_SERVERS_PER_DOMAIN);
    this.pending = take(nd * PENDING_WORDS);
    this.parked = take(nd);
    this.bufPending = take(nd);
  }
  idx(slot: number): number {
    return slot * IOS.WORDS;
  }
  eventIdx(target: number, server: number): number {
    return target * MAX_IOREQ_SERVERS_PER_DOMAIN + server;
  }
  /**
   * Step 1 of the ring: tell `owner` that vCPU slot `slot` has a request
   * for it; wake it if it sleeps. Returns whether it had to be woken (then
   * the answer is at least a futex wake-up away).
   */
  kick(owner: number, slot: number): boolean {
    Atomics.or(this.pending, owner * PENDING_WORDS + (slot >> 5), 1 << (slot & 31));
    Atomics.add(this.events, owner, 1);
    if (Atomics.load(this.parked, owner) === 0) return false;
    Atomics.notify(this.events, owner);
    return true;
  }
  /** The same for a buffered ioreq (no slot: the server's buffered ring holds it); Xen notifies the bufioreq event channel. */
  kickBuffered(owner: number): void {
    if (Atomics.load(this.bufPending, owner) === 0) Atomics.store(this.bufPending, owner, 1);
    Atomics.add(this.events, owner, 1);
    if (Atomics.load(this.parked, owner) !== 0) Atomics.notify(this.events, owner);
  }
  /** Whether any slot, or a buffered ring, hints a request for `owner` (a hint its scan has not taken yet). */
  hasPending(owner: number): boolean {
    if (Atomics.load(this.bufPending, owner) !== 0) return true;
    for (let w = 0; w < PENDING_WORDS; w++) if (Atomics.load(this.pending, owner * PENDING_WORDS + w) !== 0) return true;
    return false;
  }
  /** Step 3: the answer is published; wake the vCPU if it sleeps on its slot. */
  wakeVcpu(slot: number): void {
    const i = slot * IOS.WORDS;
    if (Atomics.load(this.slots, i + IOS.WAITING) !== 0) Atomics.notify(this.slots, i + IOS.STATE);
  }
}
