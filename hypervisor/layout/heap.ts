/**
 * The free-frame heap: a stack of free MFNs (Xen's heap, one zone).
 *
 * Words: [TOP, FREE, INFLIGHT, FRESH, stack[nr_frames]]. TOP, FRESH and the
 * stack are written only under the heap lock; FREE mirrors TOP for lock-free
 * readers; INFLIGHT counts frames that left a domain's tot_pages but are not
 * yet back on the stack (being scrubbed) — so that Σ tot_pages + FREE +
 * INFLIGHT = RAM holds at every instant someone holds all page_alloc locks.
 *
 * FRESH is the lowest TOP the stack has ever had (nr_frames at start): the
 * stack positions below it still hold the frames the machine started with,
 * which have never left the heap, so their bytes are still the zeros of a
 * new SharedArrayBuffer. A free pushes at TOP ≥ FRESH, never below, so a
 * frame that was ever handed out is never counted as fresh.
 */
import { expectBytes } from './region.js';

export const HEAP = { TOP: 0, FREE: 1, INFLIGHT: 2, FRESH: 3, STACK: 4 } as const;

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
