/**
 * xgsim's own, no Xen counterpart. XGSIM_BUGGIFY: deliberate bugs, compiled in, off by default, switchable by
 * name. Each reintroduces a known class of Xen memory-management bug so that
 * tests can prove the checker catches it (docs/semantics.md §6: "a checker that never
 * fires proves nothing").
 *
 * A bug is a number, its id (0 … BUG_WORDS × 32 − 1), which never changes once given: ids 0…31 are the control
 * region's word CTL.BUGGIFY, 32…63 its word CTL.BUGGIFY_HI. A set of bugs is a BugSet, one int32 per word
 * (JSON- and structured-clone-safe, as a host spec must be); outside the host, names travel instead (replay files,
 * campaign jobs, summaries). Only this module turns ids into bits.
 */
export const BUGS = {
  /** unmap_grant_ref drops the mapping without shooting down TLBs (XSA-217 class). */
  'skip-tlb-flush-on-unmap': 0,
  /** Freed frames go back to the heap unscrubbed (information leak). */
  'no-scrub': 1,
  /** unmap_grant_ref forgets to drop the active entry's pin. */
  'grant-unmap-skip-unpin': 2,
  // Issue 3 primitives.
  'skip-tlb-flush-on-revoke': 3,
  'revoke-skip-nested': 4,
  'steal-skip-grant-check': 5,
  'steal-skip-refcount-check': 6,
  'map-as-ram-rw': 7,
  // Issue 4/5: the device model's end forgets what it answered, so a duplicate delivery is applied again.
  'ioreq-no-dedup': 8,
  // Issue 7, the XSA-class suite (docs/xsa.md, examples/xsa/).
  /** get_maptrack_handle reads the free-list head without the lock and pops it later unchecked: a handle handed out twice (XSA-228). */
  'maptrack-racy-pop': 9,
  /** Steal checks the page under its locks, drops them, then moves ownership with plain stores, no count freeze (XSA-287). */
  'steal-unlocked-transfer': 10,
  /** GNTTABOP_copy between two domains' refs validates both under both grant-table locks at once (double_gt_lock; XSA-380 class). */
  'gnttab-copy-double-lock': 11,
  /** Foreign map inserts into the caller's p2m while it still holds the source's p2m lock: two domains' p2m locks, not in domid order (XSA-411 class). */
  'foreign-map-p2m-lock-inversion': 12,
  /** The MMU retries an access for as long as the device model answers its FAULT with RETRY: no bound (XSA-262 class). */
  'ioreq-retry-unbounded': 13,
  /** map_grant_ref validates the granted frame from one read of the shared entry and maps it from a second read (double fetch). */
  'grant-double-fetch': 14,
  // Issue 13, fidelity: each brings back a deviation from Xen or the seed (docs/fidelity.md).
  /** A Steal is remembered by the backend's gfn only: Return hands a frontend whatever frame sits there now. */
  'steal-record-by-gfn': 15,
  /** Revoke of a mapping into a frontend that is gone fails -ESRCH (or -ENOENT once its record is reused). */
  'revoke-dead-frontend-esrch': 16,
  /** Steal and Return move tot_pages only, not the quota (max_pages). */
  'steal-keeps-quota': 17,
  /** Return revokes the pages' Maps before its last check, which may then fail -EBUSY; a Map at the return gfn is -EEXIST. */
  'return-revoke-before-checks': 18,
  /** A FAULT on a revoked gfn goes to the frontend's first IOREQ server, not the Mapping backend's. */
  'fault-to-first-server': 19,
  /** iomem_caps is a list of exact ranges again: a permit appends (-ENOSPC when full), a deny must name a permitted range exactly (-ENOENT), nothing merges or splits. */
  'iomem-exact-ranges': 22,
  /** XEN_DOMCTL_iomem_permission skips iomem_access_permitted(current->domain): a privileged caller grants and denies MMIO it does not hold. */
  'iomem-permission-unchecked-caller': 27,
  // Fidelity (memory ops and foreign maps as Xen's source has them; docs/decisions.md "Hypercall semantics").
  /** A frontend's Map'd or revoked gfn answers memory ops unlike a hole: remove_from_physmap EINVAL (a hole: ENOENT), populate and a foreign map onto it EEXIST. */
  'mapped-gfn-distinguishable': 23,
  /** Foreign maps by dom0 only, of running domains only, a domain mapping itself allowed, onto a populated gfn EEXIST (Xen's p2m_add_foreign: XSM_TARGET, any live domain, EPERM, the old page freed). */
  'foreign-map-old-rules': 24,
  /** populate_physmap / decrease_reservation return a negative errno when no extent was done (Xen's do_memory_op returns nr_done), and remove_from_physmap EINVAL where Xen's is ENOENT. */
  'memop-errno-per-call': 25,
  /** populate_physmap onto an occupied gfn EEXIST (Xen's p2m_add_page replaces RAM, leaving the old page allocated, and crashes the guest over special entries); remove_from_physmap frees the RAM it unmaps. */
  'occupied-gfn-eexist': 28,
  // Issue 13's isolation oracle (layout/reach.ts): a bug only it sees.
  /** Revoke drops its page references (and the frontend's rights) before the entries are removed and flushed (issue 19's "caught by nothing"). */
  'revoke-put-before-flush': 29,
  /**
   * A grant map or copy sets GTF_reading/GTF_writing before its later checks (the active entry's domid, the frame, the
   * host mapping) and leaves them set when one of those refuses it: the granter's end_access is EBUSY with no pin held.
   */
  'grant-map-status-before-checks': 20,
  /** A grant map or copy of a granter that is not running (crashed, dying, a zombie) is GNTST_bad_domain; Xen only refuses a domain no longer in its domain list. */
  'grant-map-refuse-crashed-granter': 21,
  // Issue 15, the designs compared (docs/designs.md): each design's unsafe variant.
  /**
   * Design `grants`: the frontend kernel's end-access clears the entry while the backend still maps it
   * (GTF_reading/GTF_writing ignored): the frontend takes its revocation as done and reuses the page while the
   * backend reaches it (XSA-396 class: Linux frontends that took a failed end-access as done).
   */
  'grants-end-access-while-mapped': 26,
  /**
   * Design `pinned-userptr`: a foreign map drops the page reference it took (the backend's FOLL_LONGTERM pin) while its
   * entry stays: the frontend can free the frame under the backend's mapping (a use-after-free).
   */
  'pinned-userptr-unpin-while-mapped': 30,
  /**
   * Design `lending`: reclaim removes the borrower's entries but skips the TLB shootdown, then drops the borrower's
   * right and the page reference: a borrower vCPU keeps reaching a frame the lender got back.
   */
  'lending-revoke-skip-flush': 31,
  // The second word (issue 19, verification power): bugs nobody wrote a check beside.
  /**
   * A TLB shootdown waits for every vCPU's acknowledgement but one: the highest-numbered vCPU that still has to
   * acknowledge is taken as done (an incomplete flush mask, as a missed cpumask bit in Xen's flush_tlb_mask).
   * It can hold the old translation after the remover goes on and frees the frame.
   */
  'shootdown-skip-one-ack': 32,
  /**
   * Return revokes only the Maps at the return gfns (the Steal's implicit Map, or a re-Map there), not the backend's
   * other Maps of the stolen frames: they stay live on a frame that is the frontend's RAM again, their page
   * references lost in the count Return resets (DESIGN §4: "Outstanding Maps of them are revoked first").
   */
  'return-leaves-other-mapping': 33,
  /** Map of a BAR range skips the backend's iomem_caps check (Xen's iomem_access_permitted): any backend maps any BAR. */
  'map-bar-skip-iomem-check': 34,
  /**
   * Design `lending`: the borrower's IOMMU tables map lent pages as Xen maps any mmio_direct entry
   * (p2m_get_iommu_flags): the borrower's passthrough device reaches memory the lender may reclaim (rule 4 broken).
   */
  'lending-lent-in-iommu': 35,
} as const;
export type BugName = keyof typeof BUGS;
export type BugId = (typeof BUGS)[BugName];
export const BUG_NAMES = Object.keys(BUGS) as BugName[];

/** Words of a BugSet, and of the control region's BUGGIFY words. */
export const BUG_WORDS = 2;
/** One int32 per word: bit (id mod 32) of word ⌊id / 32⌋. */
export type BugSet = readonly [number, number];
export const NO_BUGS: BugSet = [0, 0];

function assertIds(): void {
  const seen = new Set<number>();
  for (const n of BUG_NAMES) {
    const id = BUGS[n];
    if (!Number.isInteger(id) || id < 0 || id >= BUG_WORDS * 32) throw new Error(`buggify: ${n} has id ${id}, outside 0…${BUG_WORDS * 32 - 1}`);
    if (seen.has(id)) throw new Error(`buggify: id ${id} given twice (${n})`);
    seen.add(id);
  }
}
assertIds();

/** The word of the control region (0 or 1 past CTL.BUGGIFY) and the bit in it that a bug id names. */
export function bugWord(id: number): number {
  return id >>> 5;
}
export function bugBit(id: number): number {
  return 1 << (id & 31);
}

export function bugSetOf(names: Iterable<BugName>): BugSet {
  const w = [0, 0];
  for (const n of names) w[bugWord(BUGS[n])]! |= bugBit(BUGS[n]);
  return [w[0]!, w[1]!];
}
export function unionBugs(a: BugSet, b: BugSet): BugSet {
  return [a[0] | b[0], a[1] | b[1]];
}
export function hasBug(s: BugSet, name: BugName): boolean {
  return (s[bugWord(BUGS[name])]! & bugBit(BUGS[name])) !== 0;
}
export function noBugs(s: BugSet): boolean {
  return s[0] === 0 && s[1] === 0;
}

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
  'lending-lent-in-iommu': `the sim runs the primitives design, and no sim workload does DMA; the design's IOMMU scenario catches it (tests/scenarios.test.ts)`,
  'pinned-userptr-unpin-while-mapped': `no sim workload foreign-maps a page and then frees it from the source (the sim runs the primitives design); the design's refusal scenario catches it (tests/scenarios.test.ts)`,
};

export class BuggifyError extends Error {}

/** Parse `a,b,c` (the XGSIM_BUGGIFY variable) into a bug set; unknown names are an error. */
export function parseBuggify(spec: string | undefined): BugSet {
  if (spec === undefined || spec.trim() === '') return NO_BUGS;
  const names: BugName[] = [];
  for (const raw of spec.split(',')) {
    const name = raw.trim();
    if (name === '') continue;
    if (!Object.hasOwn(BUGS, name)) {
      throw new BuggifyError(`XGSIM_BUGGIFY: unknown bug \`${name}\`; known: ${BUG_NAMES.join(', ')}`);
    }
    names.push(name as BugName);
  }
  return bugSetOf(names);
}

export function bugNames(s: BugSet): BugName[] {
  return BUG_NAMES.filter((n) => hasBug(s, n));
}
