/**
 * The p2m: every domain's guest-physical → machine table, a sparse
 * multi-level table as EPT's (xen/arch/x86/mm/p2m-ept.c), its table pages
 * taken from one pool allocated up front (docs/semantics.md §2,
 * docs/architecture.md §2).
 *
 * A table page is P2M_TABLE_ENTRIES entry words followed by as many GEN
 * words (PAGE_WORDS = 1024 Int32). A domain's p2m is `levels` levels deep
 * (from its address width, P2M_LEVELS of the domain table): its root table
 * is level `levels`; an entry of a level-k table covers 512^(k−1) gfns and
 * is, at index floor(gfn / 512^(k−1)) mod 512:
 *   - 0: a hole, for every gfn it covers (reads as mmio_dm with
 *     INVALID_MFN, as Xen's p2m lookup of a missing entry does);
 *   - a table entry (k > 1): ((page + 1) << 5) | P2M_TABLE, pointing to the
 *     level-(k−1) table in pool page `page` (EPT's non-leaf entry, which
 *     ept_next_level follows);
 *   - a leaf: ((mfn + 1) << 5) | type, type being Xen's p2m_type_t
 *     (5 bits), mfn up to 2^27 − 2. At level 1 it maps one 4 KiB gfn; at
 *     level 2 or 3 it is a superpage (EPT's sp bit): 512 or 512² gfns onto
 *     the frames mfn, mfn + 1, … (mfn aligned to its size), all of one type.
 * P2M_TABLE (31) is no p2m_type_t value (they end at p2m_ioreq_server, 15).
 *
 * Writers: the hypervisor, under the domain's p2m lock (Atomics.store);
 * every update of an entry is one atomic store, and a table is linked only
 * once it is complete (ept_split_super_page builds the new table, then
 * writes the entry). A table, once linked, stays linked, with its page, as
 * long as the domain lives (freed at the teardown only, as p2m_teardown):
 * so a lock-free walk (Atomics.load at every level) never follows a
 * pointer into a recycled page. Readers: anyone, lock-free — the vCPU's
 * TLB fill included.
 *
 * Beside each entry, a removal generation (GEN, the word PAGE_GEN words
 * after it), bumped twice by every removal or downgrade: once before the
 * entry changes (odd: in flight) and once after every TLB has been
 * flushed, before the remover returns (even: complete). GEN only ever
 * grows, also across domains reusing a page. A vCPU that caches an entry —
 * a 4 KiB leaf, or the superpage its translation came from — remembers the
 * generation it saw; an access through a cached entry whose generation has
 * since moved is an access after the removal returned (use after
 * unmap/revoke, invariant 1). A removal that splits a superpage bumps the
 * superpage entry's GEN too, around the same shootdown, so a translation
 * cached from the superpage is seen as stale as well.
 *
 * The pool (P2mPool): a header, a stack of free page numbers, then the
 * pages. Writers of the header and the stack: whoever holds the global
 * p2m_pool lock (Xen's paging lock around p2m_alloc_ptp/p2m_free_ptp,
 * docs/locks.md). A domain's allocation is promised at its creation
 * (RESERVED, as hap_set_allocation takes a domain's HAP pool from the heap
 * up front), so a domain within its own limit always finds a free page.
 */
import { P2M_POOL_SLACK_PAGES, P2M_TABLE_ENTRIES, P2M_TABLE_ORDER } from './constants.js';
import { P2M, type P2mType } from '../public/types.js';
import { BUG, BUG_ON, expectBytes } from './region.js';

export const P2M_HOLE = 0;
/**
 * A revoked frontend gfn: mmio_dm with no frame. Unlike a hole it is in the
 * frontend's FAULT set (an access becomes IOREQ_TYPE_FAULT when an IOREQ
 * server serves the domain); like a hole, a new Map may fill it.
 */
export const P2M_REVOKED = P2M.mmio_dm;
export const TYPE_BITS = 5;
export const TYPE_MASK = (1 << TYPE_BITS) - 1;
export const MAX_MFN = (1 << (31 - TYPE_BITS)) * 2 - 2;
/** The type bits of a non-leaf entry: no p2m_type_t has this value. */
export const P2M_TABLE = TYPE_MASK;
/** Int32 words of one table page: the entries, then their GENs. */
export const PAGE_WORDS = 2 * P2M_TABLE_ENTRIES;
/** GEN of the entry at word i is at word i + PAGE_GEN. */
export const PAGE_GEN = P2M_TABLE_ENTRIES;
const SLOT_MASK = P2M_TABLE_ENTRIES - 1;

/** Gfns one entry of a level-k table covers (512^(k−1)), for k = 0…5. */
export const LEVEL_SPAN: readonly number[] = [0, 1, 2 ** P2M_TABLE_ORDER, 2 ** (2 * P2M_TABLE_ORDER), 2 ** (3 * P2M_TABLE_ORDER), 2 ** (4 * P2M_TABLE_ORDER)];

export function p2mEntry(mfn: number, type: P2mType): number {
  return ((mfn + 1) << TYPE_BITS) | type;
}
export function entryMfn(e: number): number {
  return (e >>> TYPE_BITS) - 1;
}
export function entryType(e: number): P2mType {
  return e === P2M_HOLE ? P2M.mmio_dm : ((e & TYPE_MASK) as P2mType);
}
/** A non-leaf entry (a pointer to the next level's table). */
export function isTableEntry(e: number): boolean {
  return (e & TYPE_MASK) === P2M_TABLE && e !== P2M_HOLE;
}
/** The entry that points to the table in pool page `page`. */
export function tableEntry(page: number): number {
  return ((page + 1) << TYPE_BITS) | P2M_TABLE;
}
/** The pool page a table entry points to. */
export function entryPage(e: number): number {
  return (e >>> TYPE_BITS) - 1;
}
/** Word of entry `slot` of pool page `page`. */
export function slotWord(page: number, slot: number): number {
  return page * PAGE_WORDS + slot;
}
/** The slot (0…511) of the entry at word i, and its page. */
export function wordSlot(i: number): number {
  return i & SLOT_MASK;
}
export function wordPage(i: number): number {
  return Math.floor(i / PAGE_WORDS);
}
/** The entry at word i numbered among all entries of the pool (page × 512 + slot): for side tables with a word per entry. */
export function entryOrdinal(i: number): number {
  return wordPage(i) * P2M_TABLE_ENTRIES + wordSlot(i);
}
/** Index of gfn's entry in a level-k table: floor(gfn / 512^(k−1)) mod 512, for any gfn below 2^53. */
export function levelIndex(gfn: number, k: number): number {
  return (gfn / LEVEL_SPAN[k]!) & SLOT_MASK;
}
/** Table levels a domain with this many address bits needs: 4 KiB pages, 9 bits a level. */
export function levelsFor(paddr_bits: number): number {
  return Math.ceil((paddr_bits - 12) / P2M_TABLE_ORDER);
}

/**
 * Table pages a p2m of this width needs to map every gfn of `ranges`
 * ([first, count] pairs) with 4 KiB entries — an upper bound, superpages
 * need fewer — plus P2M_POOL_SLACK_PAGES: a domain's share of the pool
 * (its P2M_PAGES_MAX), in proportion to what it populates and maps, not to
 * its width.
 */
export function p2mPoolPagesFor(paddr_bits: number, ranges: ReadonlyArray<readonly [number, number]>): number {
  const levels = levelsFor(paddr_bits);
  const tables = new Set<string>(['root']);
  for (const [first, count] of ranges) {
    if (count <= 0) continue;
    for (let k = 1; k < levels; k++) {
      // Level-k tables cover 512^k gfns each.
      const span = LEVEL_SPAN[k + 1]!;
      for (let t = Math.floor(first / span); t <= Math.floor((first + count - 1) / span); t++) tables.add(`${k}:${t}`);
    }
  }
  return tables.size + P2M_POOL_SLACK_PAGES;
}

/** Words of the pool header. */
export const POOL = {
  NR_PAGES: 0,
  /** Depth of the free stack. */
  FREE_TOP: 1,
  /** Pages promised to live domains (Σ their P2M_PAGES_MAX). */
  RESERVED: 2,
  WORDS: 16,
} as const;

export class P2mPool {
  /** The table pages: entry and GEN words. */
  readonly w: Int32Array;
  readonly hdr: Int32Array;
  /** Free page numbers, [0, FREE_TOP). */
  readonly free: Int32Array;
  static bytes(nr_pages: number): number {
    return (POOL.WORDS + nr_pages + nr_pages * PAGE_WORDS) * 4;
  }
  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nr_pages: number,
  ) {
    expectBytes('p2m pool', sab, P2mPool.bytes(nr_pages));
    this.hdr = new Int32Array(sab, 0, POOL.WORDS);
    this.free = new Int32Array(sab, POOL.WORDS * 4, nr_pages);
    this.w = new Int32Array(sab, (POOL.WORDS + nr_pages) * 4, nr_pages * PAGE_WORDS);
  }
  /** A new machine's pool: every page free (highest number at the bottom, so page 0 goes first). */
  static init(sab: SharedArrayBuffer, nr_pages: number): void {
    const p = new P2mPool(sab, nr_pages);
    for (let i = 0; i < nr_pages; i++) p.free[i] = nr_pages - 1 - i;
    p.hdr[POOL.NR_PAGES] = nr_pages;
    p.hdr[POOL.FREE_TOP] = nr_pages;
    p.hdr[POOL.RESERVED] = 0;
  }
  get freePages(): number {
    return Atomics.load(this.hdr, POOL.FREE_TOP);
  }
  get reserved(): number {
    return Atomics.load(this.hdr, POOL.RESERVED);
  }
  /** Pop a free page and clear its entries (GENs keep counting). Caller holds the p2m_pool lock. */
  popLocked(): number {
    const top = this.hdr[POOL.FREE_TOP]!;
    BUG_ON(top <= 0, 'p2m pool: no free page although the domain was within its reservation');
    const page = this.free[top - 1]!;
    Atomics.store(this.hdr, POOL.FREE_TOP, top - 1);
    this.w.fill(P2M_HOLE, page * PAGE_WORDS, page * PAGE_WORDS + P2M_TABLE_ENTRIES);
    return page;
  }
  /** Push a page no table entry points to any more. Caller holds the p2m_pool lock. */
  pushLocked(page: number): void {
    const top = this.hdr[POOL.FREE_TOP]!;
    if (top >= this.nr_pages || page < 0 || page >= this.nr_pages) BUG(`p2m pool: freeing page ${page} at depth ${top} (double free?)`);
    this.free[top] = page;
    Atomics.store(this.hdr, POOL.FREE_TOP, top + 1);
  }
}
