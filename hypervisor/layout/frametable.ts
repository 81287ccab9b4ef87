/**
 * The frame table: Xen's `struct page_info` for every RAM frame.
 *
 * Record (Int32 words):
 *   OWNER  domid + 1 of the owner, 0 when anonymous (free or in flight).
 *          Written by the hypervisor under the owner's page_alloc lock
 *          (assign on allocation, Steal/Return transfer, clear on free).
 *   COUNT  count_info: bits 0..23 the general reference count, bit 30
 *          PGC_allocated (the owner's allocation reference, counted in the
 *          count like Xen). Updated only with compareExchange (get_page,
 *          put_page); a count is never raised from zero (a page at zero is
 *          being freed).
 *   TYPE   type count: writable-type references (grant map rw, Map of RAM).
 *   STATE  FREE / INUSE / FREEING.
 *   FREES  how many times the frame went back to the heap (Atomics.add by
 *          freeHeapFrame, before the frame is on the heap again; read
 *          lock-free). An mfn and its FREES together name one allocation
 *          of the frame: whoever remembers a frame (a design's Steal) can
 *          tell it was freed and handed out again since (no ABA).
 */
import { expectBytes } from './region.js';

export const FT = { OWNER: 0, COUNT: 1, TYPE: 2, STATE: 3, FREES: 4, WORDS: 5 } as const;
export const PGC_allocated = 1 << 30;
export const PGC_count_mask = (1 << 24) - 1;
export const PS = { FREE: 0, INUSE: 1, FREEING: 2 } as const;

export class FrameTable {
  readonly w: Int32Array;
  static bytes(nr_frames: number): number {
    return nr_frames * FT.WORDS * 4;
  }
  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nr_frames: number,
  ) {
    expectBytes('frametable', sab, FrameTable.bytes(nr_frames));
    this.w = new Int32Array(sab);
  }
  /** Owner domid, −1 for none — and for an MFN with no frame-table entry (MMIO). */
  owner(mfn: number): number {
    if (mfn < 0 || mfn >= this.nr_frames) return -1;
    return Atomics.load(this.w, mfn * FT.WORDS + FT.OWNER) - 1;
  }
  setOwner(mfn: number, domid: number): void {
    Atomics.store(this.w, mfn * FT.WORDS + FT.OWNER, domid + 1);
  }
  countInfo(mfn: number): number {
    return Atomics.load(this.w, mfn * FT.WORDS + FT.COUNT);
  }
  count(mfn: number): number {
    return this.countInfo(mfn) & PGC_count_mask;
  }
  casCount(mfn: number, expected: number, value: number): boolean {
    return Atomics.compareExchange(this.w, mfn * FT.WORDS + FT.COUNT, expected, value) === expected;
  }
  storeCount(mfn: number, value: number): void {
    Atomics.store(this.w, mfn * FT.WORDS + FT.COUNT, value);
  }
  typeCount(mfn: number): number {
    return Atomics.load(this.w, mfn * FT.WORDS + FT.TYPE);
  }
  addType(mfn: number, delta: number): number {
    return Atomics.add(this.w, mfn * FT.WORDS + FT.TYPE, delta) + delta;
  }
  state(mfn: number): number {
    return Atomics.load(this.w, mfn * FT.WORDS + FT.STATE);
  }
  setState(mfn: number, s: number): void {
    Atomics.store(this.w, mfn * FT.WORDS + FT.STATE, s);
  }
  /** Times the frame was freed (FREES): with the mfn, the identity of one allocation. */
  frees(mfn: number): number {
    return Atomics.load(this.w, mfn * FT.WORDS + FT.FREES);
  }
  countFree(mfn: number): void {
    Atomics.add(this.w, mfn * FT.WORDS + FT.FREES, 1);
  }
  isRam(mfn: number): boolean {
    return mfn >= 0 && mfn < this.nr_frames;
  }
}
