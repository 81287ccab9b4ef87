/**
 * Grant tables v1 (xen/include/public/grant_table.h, xen/common/grant_table.c).
 *
 * Three parts per domain, all in one SAB, each sized by the domain's own
 * limits (grantStorage below): its grant table's entries, min(its
 * max_grant_frames, GNTTAB_STORAGE_FRAMES) × 512, and its maptrack's
 * handles, min(max_maptrack_frames, MAPTRACK_STORAGE_FRAMES) × 256 — Xen
 * allocates both a frame at a time up to those limits (gnttab_grow_table,
 * get_maptrack_handle); xgsim sets aside the whole of it when the machine is
 * made, within a budget per domain (layout/constants.ts).
 *
 * 1. Shared entries, GUEST-WRITABLE: entries × 2 words,
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
 * 3. Maptrack of the *mapping* domain: handles × records
 *    (FLAGS, GRANTER domid + 1, REF, HOST_GFN, NEXT free) plus a header
 *    (free-list HEAD, INUSE). Written under the mapper's maptrack lock;
 *    a handle's fields are published before FLAGS becomes non-zero.
 */
import { GNTTAB_STORAGE_FRAMES, GRANT_ENTRIES_PER_FRAME, MAPTRACK_PER_FRAME, MAPTRACK_STORAGE_FRAMES, MAX_DOMAINS, XEN_MAX_GRANT_FRAMES, XEN_MAX_MAPTRACK_FRAMES } from './constants.js';
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

/** A domain's grant limits (grant_table_init's max_grant_frames, max_maptrack_frames); absent: Xen's defaults. */
export interface GrantLimits {
  max_grant_frames?: number;
  max_maptrack_frames?: number;
}
/** What a domain slot stores: grant entries and maptrack handles. */
export interface GrantSlot {
  entries: number;
  handles: number;
}

/** The storage a domain with these limits gets: its limits' worth, within the budget per domain. */
export function grantStorage(l: GrantLimits | undefined): GrantSlot {
  const gf = Math.min(l?.max_grant_frames ?? XEN_MAX_GRANT_FRAMES, GNTTAB_STORAGE_FRAMES);
  const mf = Math.min(l?.max_maptrack_frames ?? XEN_MAX_MAPTRACK_FRAMES, MAPTRACK_STORAGE_FRAMES);
  return { entries: gf * GRANT_ENTRIES_PER_FRAME, handles: mf * MAPTRACK_PER_FRAME };
}

/** Every slot's storage for a machine of `nd` slots, by domid (a slot with no limits given: Xen's defaults). */
export function grantSlots(nd: number, limits: ReadonlyArray<GrantLimits | undefined> = []): GrantSlot[] {
  return Array.from({ length: nd }, (_, d) => grantStorage(limits[d]));
}

const mtWords = (s: GrantSlot): number => MT_HDR.WORDS + s.handles * MT.WORDS;

export class GrantRegion {
  readonly shared: Int32Array;
  readonly active: Int32Array;
  readonly maptrack: Int32Array;
  /** Per slot: where its entries and its maptrack start (words), and how many of each it stores. */
  private readonly sharedAt: Int32Array;
  private readonly activeAt: Int32Array;
  private readonly mtAt: Int32Array;
  private readonly nEntries: Int32Array;
  private readonly nHandles: Int32Array;

  static bytes(slots: readonly GrantSlot[]): number {
    return slots.reduce((a, s) => a + s.entries * (SHARED_WORDS + ACT.WORDS) + mtWords(s), 0) * 4;
  }

  constructor(
    readonly sab: SharedArrayBuffer,
    readonly slots: readonly GrantSlot[],
  ) {
    expectBytes('grants', sab, GrantRegion.bytes(slots));
    const nd = slots.length;
    if (nd > MAX_DOMAINS) throw new Error(`grants: ${nd} slots, at most ${MAX_DOMAINS}`);
    this.sharedAt = new Int32Array(nd);
    this.activeAt = new Int32Array(nd);
    this.mtAt = new Int32Array(nd);
    this.nEntries = Int32Array.from(slots, (s) => s.entries);
    this.nHandles = Int32Array.from(slots, (s) => s.handles);
    let sh = 0;
    let ac = 0;
    let mt = 0;
    slots.forEach((s, d) => {
      this.sharedAt[d] = sh;
      this.activeAt[d] = ac;
      this.mtAt[d] = mt;
      sh += s.entries * SHARED_WORDS;
      ac += s.entries * ACT.WORDS;
      mt += mtWords(s);
    });
    this.shared = new Int32Array(sab, 0, sh);
    this.active = new Int32Array(sab, sh * 4, ac);
    this.maptrack = new Int32Array(sab, (sh + ac) * 4, mt);
  }

  /** Grant entries slot d stores (its table's limit, within the budget). */
  entries(d: number): number {
    return this.nEntries[d]!;
  }
  /** Maptrack handles slot d stores. */
  handles(d: number): number {
    return this.nHandles[d]!;
  }
  /** Word index of a shared entry's word 0. */
  sharedIdx(d: number, ref: number): number {
    return this.sharedAt[d]! + ref * SHARED_WORDS;
  }
  actIdx(d: number, ref: number): number {
    return this.activeAt[d]! + ref * ACT.WORDS;
  }
  mtHdr(d: number): number {
    return this.mtAt[d]!;
  }
  mtIdx(d: number, handle: number): number {
    return this.mtAt[d]! + MT_HDR.WORDS + handle * MT.WORDS;
  }

  /** Reset a domain's three parts at creation (no thread can see them yet). */
  reset(d: number): void {
    const n = this.entries(d);
    this.shared.fill(0, this.sharedAt[d]!, this.sharedAt[d]! + n * SHARED_WORDS);
    this.active.fill(0, this.activeAt[d]!, this.activeAt[d]! + n * ACT.WORDS);
    const h = this.mtHdr(d);
    const k = this.handles(d);
    this.maptrack.fill(0, h, h + MT_HDR.WORDS + k * MT.WORDS);
    for (let i = 0; i < k; i++) this.maptrack[this.mtIdx(d, i) + MT.NEXT] = i + 1 < k ? i + 1 : -1;
    this.maptrack[h + MT_HDR.HEAD] = k > 0 ? 0 : -1;
  }
}
