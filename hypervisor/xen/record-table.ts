/**
 * A design's records in its shared region (xen/design.ts: each design keeps
 * its state in a region of its own): `count` records of `recWords` words,
 * each with a bitmap of its live pages from word `liveMap`, then a header
 * whose first word hands out record ids (from 1, never reused). Writers
 * hold the registry lock (GLOBAL_LOCK.REGISTRY); the words are plain.
 * The primitives' registry and the lending design's store both build on it.
 */
import { P2M_TABLE_ENTRIES } from '../layout/constants.js';
import type { Machine } from './machine.js';

const HDR_NEXT_ID = 0;
const HDR_WORDS = 4;

export class RecordTable {
  readonly w: Int32Array;
  private readonly hdr: number;
  /** Words the records and the header take, at the start of the region. */
  static words(count: number, recWords: number): number {
    return count * recWords + HDR_WORDS;
  }
  constructor(
    sab: SharedArrayBuffer,
    count: number,
    private readonly recWords: number,
    private readonly liveMap: number,
  ) {
    this.w = new Int32Array(sab, 0, RecordTable.words(count, recWords));
    this.hdr = count * recWords;
  }
  at(r: number, f: number): number {
    return this.w[r * this.recWords + f]!;
  }
  set(r: number, f: number, v: number): void {
    this.w[r * this.recWords + f] = v;
  }
  live(r: number, i: number): boolean {
    return ((this.w[r * this.recWords + this.liveMap + (i >> 5)]! >>> (i & 31)) & 1) !== 0;
  }
  setLive(r: number, i: number, on: boolean): void {
    const k = r * this.recWords + this.liveMap + (i >> 5);
    const bit = 1 << (i & 31);
    this.w[k] = on ? this.w[k]! | bit : this.w[k]! & ~bit;
  }
  nextId(): number {
    return ++this.w[this.hdr + HDR_NEXT_ID]!;
  }
  /** Whether `id` was ever handed out (ids count up from 1 and are never reused). */
  issued(id: number): boolean {
    return Number.isInteger(id) && id >= 1 && id <= this.w[this.hdr + HDR_NEXT_ID]!;
  }
}

/**
 * This thread's view of a design's records in a machine's design region
 * (Machine.sabs.design), made on first use and kept per machine.
 */
export function designRegionView<T>(Table: new (sab: SharedArrayBuffer, nr_frames: number, p2m_entries: number) => T): (m: Machine) => T {
  const views = new WeakMap<Machine, T>();
  return (m) => {
    let v = views.get(m);
    if (v === undefined) {
      v = new Table(m.sabs.design, m.config.nr_frames, m.config.p2m_pool_pages * P2M_TABLE_ENTRIES);
      views.set(m, v);
    }
    return v;
  };
}
