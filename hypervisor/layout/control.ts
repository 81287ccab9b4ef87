/**
 * Host control words: one small Int32 region every thread attaches.
 *
 * Writers: the host main thread sets BUGGIFY, CHECKING, STOP; anyone may
 * Atomics.add SEQ. Everything is read with Atomics.load.
 */
import { expectBytes } from './region.js';

export const CTL = {
  BUGGIFY: 0, // bit set of enabled deliberate bugs (buggify.ts)
  CHECKING: 1, // 1: invariant checks in the hot paths (use-after-unmap detection, scrub check)
  STOP: 2, // 1: vCPUs leave their run loops
  SEQ: 3, // global sequence (mapping ids)
  SEED_LO: 4,
  SEED_HI: 5,
  NEXT_VCPU_SLOT: 6,
  SHOOTDOWNS: 7, // TLB shootdowns in flight (Atomics.add by removers; vCPUs read it at boundaries)
  TRANSPORT: 8, // 0 ring, 1 redis (set by the host before vCPUs start)
  DISPATCH: 9, // kicked (add + notify) by a vCPU that published an ioreq, under the redis transport
  KILL_DM: 10, // chaos: the device model dies after claiming its next requests (the host restarts it)
  WORDS: 16,
} as const;

export class ControlRegion {
  readonly w: Int32Array;
  static bytes(): number {
    return CTL.WORDS * 4;
  }
  constructor(readonly sab: SharedArrayBuffer) {
    expectBytes('control', sab, ControlRegion.bytes());
    this.w = new Int32Array(sab);
  }
  get checking(): boolean {
    return Atomics.load(this.w, CTL.CHECKING) !== 0;
  }
  get stopping(): boolean {
    return Atomics.load(this.w, CTL.STOP) !== 0;
  }
  buggy(bit: number): boolean {
    return (Atomics.load(this.w, CTL.BUGGIFY) & bit) !== 0;
  }
  nextSeq(): number {
    return Atomics.add(this.w, CTL.SEQ, 1) + 1;
  }
}
