/**
 * The mapping registry (new in xgsim): one record per Map or Steal.
 *
 * Record (Int32 words), written only under the global registry lock:
 *   STATE   0 free, 1 active, 2 revoked (a tombstone: its id and backend
 *           stay known so a repeated Revoke of it is 0; the slot is reused
 *           once no free one is left)
 *   KIND    MAP_RAM, MAP_BAR, MAP_NESTED (re-Map of a received range), STEAL
 *   BACKEND, FRONTEND  domids
 *   SRC     MAP_RAM/MAP_NESTED: first backend gfn; MAP_BAR: first mfn;
 *           STEAL: first backend gfn the pages went to (`into`)
 *   FE_GFN  first frontend gfn (Map destination; Steal: where stolen from)
 *   COUNT   pages covered; LIVE pages not yet revoked/returned
 *   TYPE    p2m type given to the frontend (Maps)
 *   PARENT  record + 1 of the mapping a MAP_NESTED re-maps, else 0;
 *           PARENT_ID its id (a record slot may be reused, an id never)
 *   LINK    STEAL ↔ its implicit Map: record + 1 of the other, else 0
 *   ID      the handle given to the caller (unique over the run)
 *   LIVEMAP one bit per page (MAX_PAGES_PER_OP bits)
 * Readers outside the lock (the checker) take the lock too.
 *
 * After the records and their header, two tables of the primitives' region:
 *
 * Stolen frames, one entry per RAM frame (STOLEN.*), written and read under
 * the registry lock: the Steal that holds the frame — FROM the frontend it
 * was stolen from (domid + 1; 0: not stolen), FREES the frame's free count
 * (frametable FREES) when it was stolen, REC the Steal record + 1 and IDX
 * its page there. A Steal is tied to the frame and the frontend it came
 * from, not to a gfn: the entry is current only while FREES still equals
 * the frame's, so once the backend frees the frame that Steal is over,
 * whatever lands at its gfn later (stolenFrom).
 *
 * Fault owners, one word per p2m arena entry: for a revoked gfn, the domid
 * + 1 of the backend whose mapping was revoked there. The revoked gfns of
 * one frontend that share an owner are that backend's IOREQ server's FAULT
 * set (Roger Pau Monné's per-ioreq-server rangeset in the seed thread),
 * kept here per gfn, exactly. Written by Revoke under the registry lock
 * and the frontend's p2m lock, before the entry becomes revoked; read
 * lock-free by the fault path (Atomics.load) once it has seen the revoked
 * entry, so it reads the owner the entry was revoked with or a later one.
 */
import { MAX_MAPPINGS, MAX_PAGES_PER_OP } from '../../layout/constants.js';
import { RecordTable } from '../../xen/record-table.js';
import { expectBytes } from '../../layout/region.js';

export const REC = {
  STATE: 0,
  KIND: 1,
  BACKEND: 2,
  FRONTEND: 3,
  SRC: 4,
  FE_GFN: 5,
  COUNT: 6,
  LIVE: 7,
  TYPE: 8,
  PARENT: 9,
  LINK: 10,
  ID: 11,
  PARENT_ID: 12,
  LIVEMAP: 16,
  WORDS: 16 + MAX_PAGES_PER_OP / 32,
} as const;
export const KIND = { MAP_RAM: 1, MAP_BAR: 2, MAP_NESTED: 3, STEAL: 4 } as const;
export const KIND_NAMES = ['', 'map-ram', 'map-bar', 'map-nested', 'steal'] as const;
export const STOLEN = { FROM: 0, FREES: 1, REC: 2, IDX: 3, WORDS: 4 } as const;

export class Registry extends RecordTable {
  /** STOLEN.WORDS per RAM frame (above). */
  readonly stolen: Int32Array;
  /** Per p2m entry of the pool (entryOrdinal of a revoked gfn's 4 KiB leaf, layout/p2m.ts): the backend + 1 whose revoked mapping left it (above). */
  readonly faultOwner: Int32Array;
  static bytes(nr_frames: number, p2m_entries: number): number {
    return (RecordTable.words(MAX_MAPPINGS, REC.WORDS) + nr_frames * STOLEN.WORDS + p2m_entries) * 4;
  }
  constructor(
    readonly sab: SharedArrayBuffer,
    nr_frames: number,
    p2m_entries: number,
  ) {
    expectBytes('registry', sab, Registry.bytes(nr_frames, p2m_entries));
    super(sab, MAX_MAPPINGS, REC.WORDS, REC.LIVEMAP);
    const recWords = RecordTable.words(MAX_MAPPINGS, REC.WORDS);
    this.stolen = new Int32Array(sab, recWords * 4, nr_frames * STOLEN.WORDS);
    this.faultOwner = new Int32Array(sab, (recWords + nr_frames * STOLEN.WORDS) * 4, p2m_entries);
  }
  /** Record index of an id, live or revoked, or -1. */
  find(id: number): number {
    for (let r = 0; r < MAX_MAPPINGS; r++) if (this.at(r, REC.STATE) !== 0 && this.at(r, REC.ID) === id) return r;
    return -1;
  }
  alloc(): number {
    let tomb = -1;
    let oldest = Infinity;
    for (let r = 0; r < MAX_MAPPINGS; r++) {
      const st = this.at(r, REC.STATE);
      if (st === 0) return this.clear(r);
      if (st === 2 && this.at(r, REC.ID) < oldest) {
        oldest = this.at(r, REC.ID);
        tomb = r;
      }
    }
    return tomb < 0 ? -1 : this.clear(tomb);
  }
  private clear(r: number): number {
    this.w.fill(0, r * REC.WORDS, (r + 1) * REC.WORDS);
    return r;
  }
  /** A Map whose last page went: keep id, kind and backend as a tombstone. */
  retire(r: number): void {
    const keep = [this.at(r, REC.KIND), this.at(r, REC.BACKEND), this.at(r, REC.FRONTEND), this.at(r, REC.ID)] as const;
    this.clear(r);
    this.set(r, REC.KIND, keep[0]);
    this.set(r, REC.BACKEND, keep[1]);
    this.set(r, REC.FRONTEND, keep[2]);
    this.set(r, REC.ID, keep[3]);
    this.set(r, REC.STATE, 2);
  }
  free(r: number): void {
    this.clear(r);
  }
  /** Allocatable records (free or tombstones), counting up to `enough`. */
  freeCount(enough: number): number {
    let n = 0;
    for (let r = 0; r < MAX_MAPPINGS && n < enough; r++) if (this.at(r, REC.STATE) !== 1) n++;
    return n;
  }
  activeCount(): number {
    let n = 0;
    for (let r = 0; r < MAX_MAPPINGS; r++) if (this.at(r, REC.STATE) === 1) n++;
    return n;
  }
}
