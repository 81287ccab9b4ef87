/**
 * The isolation oracle's question, asked where a domain reaches a frame:
 * may it (layout/reach.ts)? A reach no right explains is an `isolation`
 * violation; a frame whose rights overflowed the table is not judged. xgsim's
 * own, no Xen counterpart: Xen has nothing that watches itself like this.
 */
import { PS } from '../layout/frametable.js';
import type { Machine } from './machine.js';

export function checkReach(m: Machine, d: number, mfn: number, what: string): void {
  if (m.reach.may(mfn, d) === false) reachViolated(m, d, mfn, what);
}

/**
 * The violation checkReach records, for a hot path that asked `m.reach.may`
 * itself and builds its text only when the answer was false.
 */
export function reachViolated(m: Machine, d: number, mfn: number, what: string): void {
  m.log.violated('isolation', `d${d} ${what} mfn ${mfn}, which no right of d's explains (rights: ${m.reach.describe(mfn)})`);
}

/**
 * Invariant 13 (reachable_not_free), asked where an access begins — a TLB
 * fill (guest access, device DMA through dom0's mappings), a passthrough
 * device's DMA through its domain's IOMMU (xen/iommu.ts), a hypercall copy,
 * a grant copy — never per word: the frame is allocated (PS.INUSE), not on
 * the heap and not being freed (its count reached 0: free_domheap_page has
 * begun). A count frozen at 0 by Steal or Return (steal_page's cmpxchg)
 * leaves the frame INUSE, so it is not judged here; the checker's p2m walk
 * (checker.ts checkReachableNotFree) asks the same of every entry.
 */
export function checkAllocated(m: Machine, d: number, mfn: number, what: string): void {
  const st = m.ft.state(mfn);
  if (st !== PS.INUSE) notAllocated(m, d, mfn, st, what);
}

/** The violation checkAllocated records, for a hot path that read the frame's state (not PS.INUSE) itself. */
export function notAllocated(m: Machine, d: number, mfn: number, st: number, what: string): void {
  m.log.violated('reachable_not_free', `d${d} ${what} mfn ${mfn}, which is ${st === PS.FREE ? 'free (on the heap)' : 'being freed (its count reached 0)'}`);
}
