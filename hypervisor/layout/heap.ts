/**
 * The free-frame heap: a stack of free MFNs (Xen's heap, one zone).
 *
 * Words: [TOP, FREE, INFLIGHT, pad…, stack[nr_frames]]. TOP and the stack
 * are written only under the heap lock; FREE mirrors TOP for lock-free
 * readers; INFLIGHT counts frames that left a domain's tot_pages but are not
 * yet back on the stack (being scrubbed) — so that Σ tot_pages + FREE +
 * INFLIGHT = RAM holds at every instant someone holds all page_alloc locks.
 */
import { expectBytes } from './region.js';

export const HEAP = { TOP: 0, FREE: 1, INFLIGHT: 2, STACK: 4 } as const;

export class HeapRegion {
  readonly w: Int32Array;
  static bytes(nr_frames: number): number {
    return (HEAP.STACK + nr_frames) * 4;
  }
  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nr_frames: number,
  ) {
    expectBytes('heap', sab, HeapRegion.bytes(nr_frames));
    this.w = new Int32Array(sab);
  }
  get free(): number {
    return Atomics.load(this.w, HEAP.FREE);
  }
  get inflight(): number {
    return Atomics.load(this.w, HEAP.INFLIGHT);
  }
}
