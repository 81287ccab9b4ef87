/**
 * XGSIM_BUGGIFY: deliberate bugs, compiled in, off by default, switchable by
 * name. Each reintroduces a known class of Xen memory-management bug so that
 * tests can prove the checker catches it (DESIGN §6: "a checker that never
 * fires proves nothing").
 */
export const BUGS = {
  /** unmap_grant_ref drops the mapping without shooting down TLBs (XSA-217 class). */
  'skip-tlb-flush-on-unmap': 1 << 0,
  /** Freed frames go back to the heap unscrubbed (information leak). */
  'no-scrub': 1 << 1,
  /** unmap_grant_ref forgets to drop the active entry's pin. */
  'grant-unmap-skip-unpin': 1 << 2,
  // Issue 3 primitives.
  'skip-tlb-flush-on-revoke': 1 << 3,
  'revoke-skip-nested': 1 << 4,
  'steal-skip-grant-check': 1 << 5,
  'steal-skip-refcount-check': 1 << 6,
  'map-as-ram-rw': 1 << 7,
  // Issue 4/5: the device model's end forgets what it answered, so a duplicate delivery is applied again.
  'ioreq-no-dedup': 1 << 8,
} as const;
export type BugName = keyof typeof BUGS;
export const BUG_NAMES = Object.keys(BUGS) as BugName[];

export class BuggifyError extends Error {}

/** Parse `a,b,c` (the XGSIM_BUGGIFY variable) into a bit set; unknown names are an error. */
export function parseBuggify(spec: string | undefined): number {
  if (spec === undefined || spec.trim() === '') return 0;
  let bits = 0;
  for (const raw of spec.split(',')) {
    const name = raw.trim();
    if (name === '') continue;
    const bit = (BUGS as Record<string, number>)[name];
    if (bit === undefined) {
      throw new BuggifyError(`XGSIM_BUGGIFY: unknown bug \`${name}\`; known: ${BUG_NAMES.join(', ')}`);
    }
    bits |= bit;
  }
  return bits;
}

export function bugNames(bits: number): BugName[] {
  return BUG_NAMES.filter((n) => (bits & BUGS[n]) !== 0);
}
