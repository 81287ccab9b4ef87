/**
 * The domain table: Xen's `struct domain`, one fixed record per domid.
 *
 * Writers: STATE by compareExchange (domain.ts transition function);
 * TOT_PAGES under the domain's page_alloc lock (read lock-free by
 * anyone); MAX_PAGES under page_alloc (domctl max_mem); FLUSH_EPOCH by
 * Atomics.add from any remover of a p2m entry; the lock ids are written once
 * at creation before STATE publishes RUNNING;
 * the iomem_caps words (IOMEM_GEN, IOMEM) as below. P2M_ROOT,
 * P2M_LEVELS, P2M_PADDR_BITS and P2M_PAGES_MAX are written at creation;
 * P2M_PAGES by table allocation (xen/p2m.ts) under the p2m_pool lock.
 *
 * iomem_caps (Xen's d->iomem_caps, a struct rangeset: xen/common/rangeset.c)
 * is a sorted list of disjoint, non-adjacent inclusive ranges [s, e] of
 * MFNs, at most MAX_IOMEM_RANGES. A permit that merges ranges or a deny
 * that splits one moves entries, so a reader that looked at the list while
 * it is rewritten could see a range twice, or not at all. Xen's readers
 * take the rangeset's read lock; xgsim's read lock-free, so the list is
 * double-buffered: two banks of IOMEM_BANK_WORDS words (NR, then NR
 * × (s, e)), and IOMEM_GEN, whose low bit names the bank in use.
 *
 * Writers (iomemPublish): only with the global domctl lock held
 * (xen/iomem.ts, xen/domain.ts at creation), so there is one writer at a
 * time; it never writes the bank readers are directed to.
 *   W1. g = load IOMEM_GEN; the spare bank is (g + 1) & 1.
 *   W2. Store NR and every (s, e) of the new set into the spare bank.
 *   W3. Store IOMEM_GEN = g + 1: the spare bank is now the one in use
 *       (the release: every store of W2 comes before it).
 * Readers (iomemRanges): lock-free, any thread.
 *   R1. g = load IOMEM_GEN (the acquire); read bank g & 1: NR, then the
 *       ranges.
 *   R2. Load IOMEM_GEN again. Equal to g: no W3 came between the two
 *       loads. A writer stores into bank g & 1 only after a W3 has moved
 *       IOMEM_GEN off g (while it is g, the spare bank is the other one),
 *       so no store to the bank came between either: the copy is one whole
 *       published set.
 *   R3. Otherwise a publish completed meanwhile: discard the copy, go to
 *       R1. A reader never waits for a writer that is part way through (it
 *       reads the other bank), and retries only after a whole publish, so
 *       it is lock-free.
 * All accesses are Atomics (sequentially consistent). IOMEM_GEN wraps at
 * 2³² publishes, which keeps its parity.
 */
import { IOMEM_MFN_LIMIT, MAX_DOMAINS, MAX_IOMEM_RANGES } from './constants.js';
import { BUG, expectBytes } from './region.js';

export const DS = { FREE: 0, CREATING: 1, RUNNING: 2, CRASHED: 3, DYING: 4, ZOMBIE: 5 } as const;
export type DomainState = (typeof DS)[keyof typeof DS];
export const DS_NAMES = ['free', 'creating', 'running', 'crashed', 'dying', 'zombie'] as const;

/** One bank of iomem_caps: NR, then MAX_IOMEM_RANGES × (s, e), inclusive MFNs. */
export const IOMEM_BANK_WORDS = 1 + 2 * MAX_IOMEM_RANGES;

/** One range of iomem_caps: MFNs s…e, both included (Xen's struct range). */
export interface IomemRange {
  readonly s: number;
  readonly e: number;
}

export const DOM = {
  STATE: 0,
  TOT_PAGES: 1,
  MAX_PAGES: 2,
  REFCNT: 3, // get_domain/put_domain references held by other domains' operations
  NR_VCPUS: 4,
  VCPU_BASE: 5, // first slot in the vCPU table
  FLUSH_EPOCH: 6,
  /** The pool page of the p2m's root table (layout/p2m.ts). */
  P2M_ROOT: 7,
  /** Table levels of the p2m (levelsFor(P2M_PADDR_BITS)). */
  P2M_LEVELS: 8,
  PRIVILEGED: 9,
  GENERATION: 10, // bumped at each creation in this slot
  LOCK_P2M: 11,
  LOCK_PAGE_ALLOC: 12,
  LOCK_GRANT: 13,
  LOCK_MAPTRACK: 14,
  ACTIVE_LOCK_BASE: 15,
  /** iomem_caps: publish count; its low bit names the bank in use (protocol above). */
  IOMEM_GEN: 16,
  /** iomem_caps: two banks of IOMEM_BANK_WORDS (NR, then NR × (s, e)). */
  IOMEM: 17,
  /** 1 while max_pages was set below tot_pages by domctl (Xen lets a domain ratchet down). */
  RATCHET: 17 + 2 * IOMEM_BANK_WORDS,
  /** domid + 1 of the domain running this one's IOREQ server (its backend), 0 if none. */
  BACKEND: 18 + 2 * IOMEM_BANK_WORDS,
  LOCK_IOREQ: 19 + 2 * IOMEM_BANK_WORDS,
  /** The lock of the domain's buffered ioreq rings (Xen: each server's bufioreq_lock). */
  LOCK_BUFIOREQ: 20 + 2 * IOMEM_BANK_WORDS,
  /** Guest physical address width in bits: gfns below 2^(bits − 12) exist. */
  P2M_PADDR_BITS: 21 + 2 * IOMEM_BANK_WORDS,
  /** Table pages the p2m holds now (root included), under the p2m lock and the p2m_pool lock. */
  P2M_PAGES: 22 + 2 * IOMEM_BANK_WORDS,
  /** Table pages it may hold: its share of the pool, promised at creation (Xen's HAP pool size, hap_set_allocation). */
  P2M_PAGES_MAX: 23 + 2 * IOMEM_BANK_WORDS,
  /**
   * Of P2M_PAGES, those charged but not linked: one per 2 MiB superpage a
   * BAR Map installed, for the table its split will need (so a Revoke of
   * part of it never fails for want of a page). Under the p2m lock.
   */
  P2M_RESERVED: 24 + 2 * IOMEM_BANK_WORDS,
  /** Grant frames the domain's table may have (grant_table_init's max_grant_frames). */
  MAX_GRANT_FRAMES: 25 + 2 * IOMEM_BANK_WORDS,
  /** Maptrack frames it may grow (max_maptrack_frames): its grant maps held at once ≤ × MAPTRACK_PER_FRAME. */
  MAX_MAPTRACK_FRAMES: 26 + 2 * IOMEM_BANK_WORDS,
  /** Its IOMMU context, for a device passed through to it (PASSTHROUGH; written at creation). */
  PASSTHROUGH: 27 + 2 * IOMEM_BANK_WORDS,
  /** Frames its grant table has grown to (gnttab_grow_table; never shrinks): refs below × 512 are valid. Under its grant lock. */
  NR_GRANT_FRAMES: 28 + 2 * IOMEM_BANK_WORDS,
  WORDS: 29 + 2 * IOMEM_BANK_WORDS,
} as const;

/**
 * A domain's IOMMU context, named as xl.cfg's `passthrough=`: none (no
 * device passed through), tables of its own kept in step with the p2m
 * (sync_pt: need_iommu_pt_sync), or the p2m's own EPT tables walked by the
 * IOMMU (share_pt: iommu_use_hap_pt). xen/iommu.ts.
 */
export const PASSTHROUGH = { disabled: 0, sync_pt: 1, share_pt: 2 } as const;
export type PassthroughMode = Exclude<keyof typeof PASSTHROUGH, 'disabled'>;
export const PASSTHROUGH_MODES: readonly PassthroughMode[] = ['sync_pt', 'share_pt'];

export class DomainTable {
  readonly w: Int32Array;
  static bytes(nd = MAX_DOMAINS): number {
    return nd * DOM.WORDS * 4;
  }
  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nd = MAX_DOMAINS,
  ) {
    expectBytes('domains', sab, DomainTable.bytes(nd));
    this.w = new Int32Array(sab);
  }
  at(d: number, field: number): number {
    return Atomics.load(this.w, d * DOM.WORDS + field);
  }
  /** The domids whose slot is not FREE (running, crashed, dying or zombie). */
  inUse(): number[] {
    const out: number[] = [];
    for (let d = 0; d < this.nd; d++) if (this.state(d) !== DS.FREE) out.push(d);
    return out;
  }
  set(d: number, field: number, v: number): void {
    Atomics.store(this.w, d * DOM.WORDS + field, v);
  }
  add(d: number, field: number, delta: number): number {
    return Atomics.add(this.w, d * DOM.WORDS + field, delta) + delta;
  }
  cas(d: number, field: number, expected: number, v: number): boolean {
    return Atomics.compareExchange(this.w, d * DOM.WORDS + field, expected, v) === expected;
  }
  state(d: number): DomainState {
    return this.at(d, DOM.STATE) as DomainState;
  }
  /**
   * A consistent copy of d's iomem_caps, as some publish left it (steps
   * R1–R3 above). Lock-free.
   */
  iomemRanges(d: number): IomemRange[] {
    for (;;) {
      const g = this.at(d, DOM.IOMEM_GEN); // R1
      const bank = DOM.IOMEM + (g & 1) * IOMEM_BANK_WORDS;
      const n = this.at(d, bank);
      const out: IomemRange[] = [];
      for (let i = 0; i < n && i < MAX_IOMEM_RANGES; i++) out.push({ s: this.at(d, bank + 1 + 2 * i), e: this.at(d, bank + 2 + 2 * i) });
      if (this.at(d, DOM.IOMEM_GEN) !== g) continue; // R2 failed → R3
      if (n < 0 || n > MAX_IOMEM_RANGES) BUG(`d${d} iomem_caps: ${n} ranges published`);
      return out;
    }
  }
  /**
   * Make `ranges` d's iomem_caps (steps W1–W3 above). The caller holds the
   * global domctl lock: one writer at a time.
   */
  iomemPublish(d: number, ranges: readonly IomemRange[]): void {
    if (ranges.length > MAX_IOMEM_RANGES) BUG(`d${d} iomem_caps: ${ranges.length} ranges do not fit`);
    const g = this.at(d, DOM.IOMEM_GEN); // W1
    const bank = DOM.IOMEM + ((g + 1) & 1) * IOMEM_BANK_WORDS;
    this.set(d, bank, ranges.length); // W2
    ranges.forEach((r, i) => {
      if (!(Number.isInteger(r.s) && Number.isInteger(r.e) && r.s >= 0 && r.s <= r.e && r.e < IOMEM_MFN_LIMIT)) BUG(`d${d} iomem_caps: range [${r.s}, ${r.e}]`);
      this.set(d, bank + 1 + 2 * i, r.s);
      this.set(d, bank + 2 + 2 * i, r.e);
    });
    this.set(d, DOM.IOMEM_GEN, (g + 1) | 0); // W3
  }
  /** Index of the domain's epoch word, for Atomics.wait/load on `w` directly. */
  epochIndex(d: number): number {
    return d * DOM.WORDS + DOM.FLUSH_EPOCH;
  }
}
