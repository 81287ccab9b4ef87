/**
 * The p2m arena: every domain's p2m is a slice of one Int32Array, one word
 * per gfn, so an update is one atomic store (docs/semantics.md §2).
 *
 * Entry word: 0 is a hole (reads as mmio_dm with INVALID_MFN, as Xen's
 * p2m lookup of a missing entry does); otherwise ((mfn + 1) << 5) | type,
 * type being Xen's p2m_type_t (5 bits), mfn up to 2^27 − 2.
 *
 * Writers: the hypervisor, under the domain's p2m lock (Atomics.store).
 * Readers: anyone, lock-free (Atomics.load) — the vCPU's TLB fill included.
 *
 * Beside each entry, a removal generation (GEN), bumped twice by every
 * removal or downgrade: once before the entry changes (odd: in flight) and
 * once after every TLB has been flushed, before the remover returns (even:
 * complete). GEN only ever grows, also across domains reusing a slice. A vCPU that
 * caches the entry remembers the generation it saw; an access through a
 * cached entry whose generation has since moved is an access after the
 * removal returned (use after unmap/revoke, invariant 1) — exact, whatever
 * thread made it. GEN is odd while a removal is in flight (seqlock style),
 * so a fill racing a removal is not cached.
 */
import { P2M, type P2mType } from '../public/types.js';
import { expectBytes } from './region.js';

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

export function p2mEntry(mfn: number, type: P2mType): number {
  return ((mfn + 1) << TYPE_BITS) | type;
}
export function entryMfn(e: number): number {
  return (e >>> TYPE_BITS) - 1;
}
export function entryType(e: number): P2mType {
  return e === P2M_HOLE ? P2M.mmio_dm : ((e & TYPE_MASK) as P2mType);
}

export class P2mArena {
  readonly entries: Int32Array;
  readonly gen: Int32Array;
  static bytes(nr_entries: number): number {
    return nr_entries * 8;
  }
  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nr_entries: number,
  ) {
    expectBytes('p2m', sab, P2mArena.bytes(nr_entries));
    this.entries = new Int32Array(sab, 0, nr_entries);
    this.gen = new Int32Array(sab, nr_entries * 4, nr_entries);
  }
}
