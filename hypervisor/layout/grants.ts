/**
 * Grant tables v1 (xen/include/public/grant_table.h, xen/common/grant_table.c).
 *
 * Three parts per domain, all in one SAB:
 *
 * 1. Shared entries, GUEST-WRITABLE: NR_GRANT_ENTRIES × 2 words,
 *    word 0 = flags (bits 0..15) | domid << 16, word 1 = frame (gfn).
 *    The granter writes them directly at any time, non-atomically if it
 *    likes. The hypervisor reads each word once into locals, validates the
 *    locals and never re-reads (no double fetch); it sets GTF_reading /
 *    GTF_writing with a compareExchange on word 0 that fails if the guest
 *    changed flags or domid in between (Xen's _set_status_v1).
 *
 * 2. Active entries, hypervisor-private: RPIN, WPIN (pin counts), DOMID
 *    (grantee + 1), GFN, MFN; TSEQ / PIN_TSEQ are the checker's note that the
 *    guest stored over the shared entry since its pins began (the guest may
 *    clear GTF_reading/writing in its own memory — Xen does not stop it — so
 *    invariant 5 holds the hypervisor to the flags only on entries the guest
 *    left alone; pins vs maptrack is checked regardless). Pins are written only
 *    under the granter's grant lock and the entry's active lock (Xen's
 *    active_entry_acquire); TSEQ is the guest's, bumped atomically.
 *
 * 3. Maptrack of the *mapping* domain: NR_MAPTRACK_ENTRIES records
 *    (FLAGS, GRANTER domid + 1, REF, HOST_GFN, NEXT free) plus a header
 *    (free-list HEAD, INUSE). Written under the mapper's maptrack lock;
 *    a handle's fields are published before FLAGS becomes non-zero.
 */
import { MAX_DOMAINS, NR_GRANT_ENTRIES, NR_MAPTRACK_ENTRIES } from './constants.js';
import { expectBytes } from './region.js';

export const SHARED_WORDS = 2;
/**
 * Active entry. TSEQ counts the guest's own plain writes to the shared entry
 * (odd while one is under way); PIN_TSEQ is TSEQ when the hypervisor last set
 * the status bits of an entry with no pins (the current run of pins began, or
 * a refused map or copy that had to take them off again) — the checker holds
 * the hypervisor to invariant 5 only for entries the guest has not rewritten
 * since (a guest may clobber its own status bits).
 */
export const ACT = { RPIN: 0, WPIN: 1, DOMID: 2, GFN: 3, MFN: 4, TSEQ: 5, PIN_TSEQ: 6, WORDS: 8 } as const;
export const MT = { FLAGS: 0, GRANTER: 1, REF: 2, HOST_GFN: 3, NEXT: 4, WORDS: 8 } as const;
export const MT_HDR = { HEAD: 0, INUSE: 1, WORDS: 4 } as const;
/** Set in a maptrack FLAGS word while the handle is live. */
export const MT_INUSE = 1 << 16;

const sharedPerDom = NR_GRANT_ENTRIES * SHARED_WORDS;
const activePerDom = NR_GRANT_ENTRIES * ACT.WORDS;
const mtPerDom = MT_HDR.WORDS + NR_MAPTRACK_ENTRIES * MT.WORDS;

export class GrantRegion {
  readonly shared: Int32Array;
  readonly active: Int32Array;
  readonly maptrack: Int32Array;

  static bytes(nd = MAX_DOMAINS): number {
    return nd * (sharedPerDom + activePerDom + mtPerDom) * 4;
  }

  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nd = MAX_DOMAINS,
  ) {
    expectBytes('grants', sab, GrantRegion.bytes(nd));
    let off = 0;
    this.shared = new Int32Array(sab, off, nd * sharedPerDom);
    off += nd * sharedPerDom * 4;
    this.active = new Int32Array(sab, off, nd * activePerDom);
    off += nd * activePerDom * 4;
    this.maptrack = new Int32Array(sab, off, nd * mtPerDom);
  }

  /** Word index of a shared entry's word 0. */
  sharedIdx(d: number, ref: number): number {
    return d * sharedPerDom + ref * SHARED_WORDS;
  }
  actIdx(d: number, ref: number): number {
    return d * activePerDom + ref * ACT.WORDS;
  }
  mtHdr(d: number): number {
    return d * mtPerDom;
  }
  mtIdx(d: number, handle: number): number {
    return d * mtPerDom + MT_HDR.WORDS + handle * MT.WORDS;
  }

  /** Reset a domain's three parts at creation (no thread can see them yet). */
  reset(d: number): void {
    this.shared.fill(0, d * sharedPerDom, (d + 1) * sharedPerDom);
    this.active.fill(0, d * activePerDom, (d + 1) * activePerDom);
    const h = this.mtHdr(d);
    this.maptrack.fill(0, h, h + mtPerDom);
    for (let i = 0; i < NR_MAPTRACK_ENTRIES; i++) {
      this.maptrack[this.mtIdx(d, i) + MT.NEXT] = i + 1 < NR_MAPTRACK_ENTRIES ? i + 1 : -1;
    }
    this.maptrack[h + MT_HDR.HEAD] = 0;
  }
}
