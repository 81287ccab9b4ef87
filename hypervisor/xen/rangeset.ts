/**
 * Sets of inclusive numeric ranges (xen/common/rangeset.c), as pure
 * functions on a sorted list of disjoint, non-adjacent ranges: each
 * returns a new list and never changes its argument, so the caller can
 * check the result against its limit and publish it whole, or drop it
 * (xen/iomem.ts; layout/domains.ts, iomem_caps).
 */
import type { IomemRange } from '../layout/domains.js';
import { BUG } from '../layout/region.js';

export type Range = IomemRange;

/**
 * rangeset_add_range: [s, e] joins the set; every range it overlaps or
 * touches (x->e + 1 == s, e + 1 == y->s) merges with it into one.
 */
export function rangesetAddRange(r: readonly Range[], s: number, e: number): Range[] {
  if (!(s <= e)) BUG(`rangeset_add_range: [${s}, ${e}]`); // ASSERT(s <= e)
  const out: Range[] = [];
  let ns = s;
  let ne = e;
  let placed = false;
  for (const x of r) {
    if (x.e + 1 < ns) {
      out.push(x); // wholly below, not touching
    } else if (x.s > ne + 1) {
      if (!placed) out.push({ s: ns, e: ne });
      placed = true;
      out.push(x); // wholly above, not touching
    } else {
      ns = Math.min(ns, x.s); // overlaps or adjacent: merged in
      ne = Math.max(ne, x.e);
    }
  }
  if (!placed) out.push({ s: ns, e: ne });
  return out;
}

/**
 * rangeset_remove_range: [s, e] leaves the set. A range that overlaps it
 * keeps what lies outside; one that covers it with room on both sides is
 * split in two. Removing what is not there changes nothing (and is not an
 * error).
 */
export function rangesetRemoveRange(r: readonly Range[], s: number, e: number): Range[] {
  if (!(s <= e)) BUG(`rangeset_remove_range: [${s}, ${e}]`); // ASSERT(s <= e)
  const out: Range[] = [];
  for (const x of r) {
    if (x.e < s || x.s > e) {
      out.push(x);
      continue;
    }
    if (x.s < s) out.push({ s: x.s, e: s - 1 });
    if (x.e > e) out.push({ s: e + 1, e: x.e });
  }
  return out;
}

/**
 * rangeset_contains_range: the highest range starting at or below s
 * (find_range) reaches e. On a canonical set (merged, as rangeset_add_range
 * keeps it) that is "[s, e] lies inside one range": two permits that
 * touch are one range, so a range across their seam is contained.
 */
export function rangesetContainsRange(r: readonly Range[], s: number, e: number): boolean {
  if (!(s <= e)) BUG(`rangeset_contains_range: [${s}, ${e}]`); // ASSERT(s <= e)
  let x: Range | undefined; // find_range(r, s)
  for (const y of r) {
    if (y.s > s) break;
    x = y;
  }
  return x !== undefined && x.e >= e;
}

/** The set is sorted, its ranges disjoint and not adjacent (what rangeset_add_range keeps). */
export function rangesetCanonical(r: readonly Range[]): boolean {
  for (let i = 0; i < r.length; i++) {
    const x = r[i]!;
    if (!(x.s <= x.e)) return false;
    const y = r[i + 1];
    if (y !== undefined && !(x.e + 1 < y.s)) return false;
  }
  return true;
}
