/**
 * The shared ioreq pages: one ioreq_t slot per vCPU (Xen: the shared
 * ioreq page, a slot per vCPU), and one event word per IOREQ server (the
 * event channel the hypervisor notifies).
 *
 * Slot protocol (numbered as in docs/ioreq.md):
 *  1. vCPU (hypervisor mode) writes the fields, SEQ last but one, then
 *     Atomics.store(STATE, READY) — the release; notifies the server's event word.
 *  2. Server claims with compareExchange(STATE, READY → INPROCESS).
 *  3. Server writes DATA/FAULT, then Atomics.store(STATE, IORESP_READY), notifies the slot.
 *  4. vCPU loads STATE (acquire), reads DATA, stores NONE.
 * The vCPU checks every state it observes moves forward; anything else is
 * the server's protocol error and crashes the guest.
 */
import { MAX_IOREQ_SERVERS_PER_DOMAIN, MAX_VCPUS } from '../constants.js';
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
  WORDS: 16,
} as const;

export class IoreqSlots {
  readonly slots: Int32Array;
  readonly events: Int32Array;
  static bytes(nd: number): number {
    return (MAX_VCPUS * IOS.WORDS + nd * MAX_IOREQ_SERVERS_PER_DOMAIN) * 4;
  }
  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nd: number,
  ) {
    expectBytes('ioreq slots', sab, IoreqSlots.bytes(nd));
    this.slots = new Int32Array(sab, 0, MAX_VCPUS * IOS.WORDS);
    this.events = new Int32Array(sab, MAX_VCPUS * IOS.WORDS * 4, nd * MAX_IOREQ_SERVERS_PER_DOMAIN);
  }
  idx(slot: number): number {
    return slot * IOS.WORDS;
  }
  eventIdx(target: number, server: number): number {
    return target * MAX_IOREQ_SERVERS_PER_DOMAIN + server;
  }
}
