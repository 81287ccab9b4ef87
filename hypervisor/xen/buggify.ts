/**
 * xgsim's own, no Xen counterpart. XGSIM_BUGGIFY: deliberate bugs, compiled in, off by default, switchable by
 * name. Each reintroduces a known class of Xen memory-management bug so that
 * tests can prove the checker catches it (docs/semantics.md §6: "a checker that never
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
  // Issue 7, the XSA-class suite (docs/xsa.md, examples/xsa/).
  /** get_maptrack_handle reads the free-list head without the lock and pops it later unchecked: a handle handed out twice (XSA-228). */
  'maptrack-racy-pop': 1 << 9,
  /** Steal checks the page under its locks, drops them, then moves ownership with plain stores, no count freeze (XSA-287). */
  'steal-unlocked-transfer': 1 << 10,
  /** GNTTABOP_copy between two domains' refs validates both under both grant-table locks at once (double_gt_lock; XSA-380 class). */
  'gnttab-copy-double-lock': 1 << 11,
  /** Foreign map inserts into the caller's p2m while it still holds the source's p2m lock: two domains' p2m locks, not in domid order (XSA-411 class). */
  'foreign-map-p2m-lock-inversion': 1 << 12,
  /** The MMU retries an access for as long as the device model answers its FAULT with RETRY: no bound (XSA-262 class). */
  'ioreq-retry-unbounded': 1 << 13,
  /** map_grant_ref validates the granted frame from one read of the shared entry and maps it from a second read (double fetch). */
  'grant-double-fetch': 1 << 14,
  // Issue 13, fidelity: each brings back a deviation from Xen or the seed (docs/fidelity.md).
  /** A Steal is remembered by the backend's gfn only: Return hands a frontend whatever frame sits there now. */
  'steal-record-by-gfn': 1 << 15,
  /** Revoke of a mapping into a frontend that is gone fails -ESRCH (or -ENOENT once its record is reused). */
  'revoke-dead-frontend-esrch': 1 << 16,
  /** Steal and Return move tot_pages only, not the quota (max_pages). */
  'steal-keeps-quota': 1 << 17,
  /** Return revokes the pages' Maps before its last check, which may then fail -EBUSY; a Map at the return gfn is -EEXIST. */
  'return-revoke-before-checks': 1 << 18,
  /** A FAULT on a revoked gfn goes to the frontend's first IOREQ server, not the Mapping backend's. */
  'fault-to-first-server': 1 << 19,
  /** iomem_caps is a list of exact ranges again: a permit appends (-ENOSPC when full), a deny must name a permitted range exactly (-ENOENT), nothing merges or splits. */
  'iomem-exact-ranges': 1 << 22,
  /** XEN_DOMCTL_iomem_permission skips iomem_access_permitted(current->domain): a privileged caller grants and denies MMIO it does not hold. */
  'iomem-permission-unchecked-caller': 1 << 27,
  // Fidelity (memory ops and foreign maps as Xen's source has them; docs/decisions.md "Hypercall semantics").
  /** A frontend's Map'd or revoked gfn answers memory ops unlike a hole: remove_from_physmap EINVAL (a hole: ENOENT), populate and a foreign map onto it EEXIST. */
  'mapped-gfn-distinguishable': 1 << 23,
  /** Foreign maps by dom0 only, of running domains only, a domain mapping itself allowed, onto a populated gfn EEXIST (Xen's p2m_add_foreign: XSM_TARGET, any live domain, EPERM, the old page freed). */
  'foreign-map-old-rules': 1 << 24,
  /** populate_physmap / decrease_reservation return a negative errno when no extent was done (Xen's do_memory_op returns nr_done), and remove_from_physmap EINVAL where Xen's is ENOENT. */
  'memop-errno-per-call': 1 << 25,
  /** populate_physmap onto an occupied gfn EEXIST (Xen's p2m_add_page replaces RAM, leaving the old page allocated, and crashes the guest over special entries); remove_from_physmap frees the RAM it unmaps. */
  'occupied-gfn-eexist': 1 << 28,
  // Issue 13's isolation oracle (layout/reach.ts): a bug only it sees.
  /** Revoke drops its page references (and the frontend's rights) before the entries are removed and flushed (issue 19's "caught by nothing"). */
  'revoke-put-before-flush': 1 << 29,
  /**
   * A grant map or copy sets GTF_reading/GTF_writing before its later checks (the active entry's domid, the frame, the
   * host mapping) and leaves them set when one of those refuses it: the granter's end_access is EBUSY with no pin held.
   */
  'grant-map-status-before-checks': 1 << 20,
  /** A grant map or copy of a granter that is not running (crashed, dying, a zombie) is GNTST_bad_domain; Xen only refuses a domain no longer in its domain list. */
  'grant-map-refuse-crashed-granter': 1 << 21,
  // Issue 15, the designs compared (docs/designs.md): each design's unsafe variant.
  /**
   * Design `grants`: the frontend kernel's end-access clears the entry while the backend still maps it
   * (GTF_reading/GTF_writing ignored): the frontend takes its revocation as done and reuses the page while the
   * backend reaches it (XSA-396 class: Linux frontends that took a failed end-access as done).
   */
  'grants-end-access-while-mapped': 1 << 26,
  /**
   * Design `pinned-userptr`: a foreign map drops the page reference it took (the backend's FOLL_LONGTERM pin) while its
   * entry stays: the frontend can free the frame under the backend's mapping (a use-after-free).
   */
  'pinned-userptr-unpin-while-mapped': 1 << 30,
  /**
   * Design `lending`: reclaim removes the borrower's entries but skips the TLB shootdown, then drops the borrower's
   * right and the page reference: a borrower vCPU keeps reaching a frame the lender got back. The last bit of the
   * word: `1 << 31` is negative as an int32, which `&`, `|` and the control word's Int32Array all take as is.
   */
  'lending-revoke-skip-flush': 1 << 31,
} as const;
export type BugName = keyof typeof BUGS;
export const BUG_NAMES = Object.keys(BUGS) as BugName[];

/**
 * The bugs `xgsim sim` cannot find yet, each with why and what catches it
 * instead; every other bug it must find within 60 seeds
 * (hypervisor/host/sim/sim.test.ts). None today: the fidelity switches,
 * which give a caller a wrong answer rather than break an invariant, are
 * found through the answers the simulator's workloads check (docs/sim.md
 * §3: dom0's toolstack and device model, the adversary's memop-probe and
 * steal-reuse, the viewer) and revoke-put-before-flush through the racer
 * at revoke.before_remove.
 */
export const NOT_FOUND_BY_SIM: Readonly<Partial<Record<BugName, string>>> = {
  'grants-end-access-while-mapped': `no sim workload ends a grant its peer still maps (the sim runs the primitives design); the design's refusal scenario catches it (tests/scenarios.test.ts)`,
  'lending-revoke-skip-flush': `the sim runs the primitives design, which never reclaims a lend; the design's refusal scenario catches it (tests/scenarios.test.ts)`,
  'pinned-userptr-unpin-while-mapped': `no sim workload foreign-maps a page and then frees it from the source (the sim runs the primitives design); the design's refusal scenario catches it (tests/scenarios.test.ts)`,
};

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
