/**
 * The `lending` design's shared records (new in xgsim; the RFC keeps them in
 * Xen, per borrower, without saying how). One region (Machine.sabs.design):
 *
 * Lend records (Int32 words), written only under the global registry lock:
 *   STATE     0 free, 1 live (some page still lent)
 *   LENDER, BORROWER  domids
 *   SRC       the lender's first gfn; AT the borrower's first gfn
 *   COUNT     pages; LIVE pages not yet reclaimed
 *   ID        the handle given to the lender (unique over the run; a
 *             reclaim of an id handed out whose record is gone is done)
 *   LIVEMAP   one bit per page
 *
 * Lent counts, one word per RAM frame: how many live lend pages hold the
 * frame. Changed under the registry lock *and* the lender's p2m lock, so
 * the foreign-map path, which reads it under the lender's p2m lock
 * (get_page_from_gfn), sees every lend or reclaim whole.
 *
 * Fault owners, one word per p2m arena entry: for a reclaimed gfn, the
 * lender + 1, written before the entry becomes P2M_REVOKED and read
 * lock-free by the fault path (as the primitives' registry does).
 */
import { MAX_LENDS, MAX_PAGES_PER_OP } from '../../layout/constants.js';
import { RecordTable } from '../../xen/record-table.js';
import { expectBytes } from '../../layout/region.js';

export const LEND = {
  STATE: 0,
  LENDER: 1,
  BORROWER: 2,
  SRC: 3,
  AT: 4,
  COUNT: 5,
  LIVE: 6,
  ID: 7,
  LIVEMAP: 8,
  WORDS: 8 + MAX_PAGES_PER_OP / 32,
} as const;

export class LendStore extends RecordTable {
  /** Per RAM frame: live lend pages holding it (above). */
  readonly lent: Int32Array;
  /** Per p2m arena entry: the lender + 1 a reclaimed gfn's FAULT goes to (above). */
  readonly faultOwner: Int32Array;
  static bytes(nr_frames: number, p2m_entries: number): number {
    return (RecordTable.words(MAX_LENDS, LEND.WORDS) + nr_frames + p2m_entries) * 4;
  }
  constructor(sab: SharedArrayBuffer, nr_frames: number, p2m_entries: number) {
    expectBytes('lending', sab, LendStore.bytes(nr_frames, p2m_entries));
    super(sab, MAX_LENDS, LEND.WORDS, LEND.LIVEMAP);
    const recWords = RecordTable.words(MAX_LENDS, LEND.WORDS);
    this.lent = new Int32Array(sab, recWords * 4, nr_frames);
    this.faultOwner = new Int32Array(sab, (recWords + nr_frames) * 4, p2m_entries);
  }
  /** The live record of `id`, or -1. */
  find(id: number): number {
    for (let r = 0; r < MAX_LENDS; r++) if (this.at(r, LEND.STATE) === 1 && this.at(r, LEND.ID) === id) return r;
    return -1;
  }
  alloc(): number {
    for (let r = 0; r < MAX_LENDS; r++) {
      if (this.at(r, LEND.STATE) === 0) {
        this.w.fill(0, r * LEND.WORDS, (r + 1) * LEND.WORDS);
        return r;
      }
    }
    return -1;
  }
  free(r: number): void {
    this.w.fill(0, r * LEND.WORDS, (r + 1) * LEND.WORDS);
  }
  liveCount(): number {
    let n = 0;
    for (let r = 0; r < MAX_LENDS; r++) if (this.at(r, LEND.STATE) === 1) n++;
    return n;
  }
}
