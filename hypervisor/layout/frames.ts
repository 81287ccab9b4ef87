/**
 * Machine RAM: `nr_frames × page_size_bytes` bytes in one SAB, plus the
 * BARs of PCI devices in their own SABs with MFNs above RAM (no frame-table
 * entry, like MMIO in Xen). Guest data accesses are plain (racy) typed-array
 * accesses: a data race in a guest is a real data race here.
 */
import { expectBytes } from './region.js';

export interface BarSpec {
  /** First MFN of the BAR (above RAM). */
  base_mfn: number;
  nr_pages: number;
  sab: SharedArrayBuffer;
}

export class Frames {
  readonly u8: Uint8Array;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  readonly shift: number;
  readonly words_per_page: number;

  static bytes(nr_frames: number, page_size_bytes: number): number {
    return nr_frames * page_size_bytes;
  }

  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nr_frames: number,
    readonly page_size_bytes: number,
  ) {
    expectBytes('frames', sab, Frames.bytes(nr_frames, page_size_bytes));
    if ((page_size_bytes & (page_size_bytes - 1)) !== 0) throw new Error('page size must be a power of two');
    this.u8 = new Uint8Array(sab);
    this.i32 = new Int32Array(sab);
    this.f64 = new Float64Array(sab);
    this.shift = Math.log2(page_size_bytes);
    this.words_per_page = page_size_bytes >> 2;
  }

  /**
   * Scrub (zero) a frame before anyone else may own it. A frame that is
   * already all zeros is left alone: a page of a new SharedArrayBuffer that
   * nobody wrote is still the OS's shared zero page, and storing zeros into
   * it would make the OS give it memory of its own (tearing down an idle
   * 1 GiB machine made all of its RAM resident, and spent seconds doing it).
   */
  scrub(mfn: number): void {
    if (this.isScrubbed(mfn)) return;
    const w = mfn * this.words_per_page;
    this.i32.fill(0, w, w + this.words_per_page);
  }

  /** True if every byte of the frame is zero (invariant 9). */
  isScrubbed(mfn: number): boolean {
    const per = this.page_size_bytes >> 3;
    const base = mfn * per;
    for (let i = 0; i < per; i++) if (this.f64[base + i] !== 0) return false;
    return true;
  }
}
