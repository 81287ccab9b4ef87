/**
 * The memory-lending design (docs/designs.md §2): Demi Marie Obenour's RFC
 * of 24 Mar 2026, "Mapping non-pinned memory from one Xen domain into
 * another". The lender (the borrower's device model, or dom0) lends its RAM
 * into the borrower's p2m and reclaims it from its MMU notifier; the
 * borrower reaches it only through its p2m; foreign maps of lent memory
 * fail, even from dom0; an access to a reclaimed gfn faults to the lender.
 *
 *   store.ts  the lend records, lent counts per frame, fault owners
 *   lend.ts   lend (dm_op `map`) and reclaim (dm_op `revoke`)
 *   here      teardown, the fault path, the foreign-map refusal, the IOMMU's
 *             exclusion, the check
 *
 * Steal and Return are not in the RFC (shared virtual memory uses lent
 * memory too): -EOPNOTSUPP, dm_op's answer to an op it does not know.
 */
import { EOPNOTSUPP } from '../../public/errno.js';
import { P2M } from '../../public/types.js';
import { MAX_LENDS, P2M_TABLE_ENTRIES } from '../../layout/constants.js';
import { entryMfn, entryOrdinal, entryType, P2M_HOLE } from '../../layout/p2m.js';
import type { DmOpResult, MemoryDesign } from '../../xen/design.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { BUGS } from '../../xen/buggify.js';
import { iommuFlags } from '../../xen/iommu.js';
import { DOM, PASSTHROUGH } from '../../layout/domains.js';
import { p2mForEach, p2mGet, p2mLeafWord } from '../../xen/p2m.js';
import { lend, livePages, reclaim, reclaimPages, storeOf } from './lend.js';
import { LEND, LendStore } from './store.js';

const NOT_AN_OP: DmOpResult = { rc: -EOPNOTSUPP, index: -1, id: 0 };

/** A dying lender or borrower (domain_relinquish_resources): every lend it is part of is reclaimed. */
function domainDying(m: Machine, d: number): void {
  m.lock(GLOBAL_LOCK.REGISTRY, 'lending.domain_dying');
  try {
    const s = storeOf(m);
    for (let r = 0; r < MAX_LENDS; r++) {
      if (s.at(r, LEND.STATE) !== 1 || (s.at(r, LEND.LENDER) !== d && s.at(r, LEND.BORROWER) !== d)) continue;
      reclaimPages(m, r, livePages(s, r, () => true));
    }
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

/**
 * Rule 6: a borrower access to a reclaimed gfn pauses the vCPU and notifies
 * the lender. xgsim's model is the core's IOREQ FAULT (xen/common/ioreq.c
 * ioreq_server_select): the vCPU blocks on its ioreq slot while the lender's
 * server — its kernel's privcmd in the RFC — answers: RETRY once it has lent
 * a page there again (Xen maps it, the vCPU resumes), FAIL for an injected
 * guest fault. Lock-free, on the faulting vCPU. −1: the lender runs no
 * server for the borrower (Xen's null handler answers).
 */
function faultServer(m: Machine, d: number, gfn: number): number {
  const idx = p2mLeafWord(m, d, gfn);
  const owner = idx < 0 ? 0 : Atomics.load(storeOf(m).faultOwner, entryOrdinal(idx));
  return owner === 0 ? -1 : m.ioreq.ownedBy(d, owner - 1);
}

/** Rule 3: a foreign map of a lent frame fails, whoever asks (caller holds the source's p2m lock). */
function foreignMapRefused(m: Machine, mfn: number): boolean {
  return m.ft.isRam(mfn) && Atomics.load(storeOf(m).lent, mfn) > 0;
}

/**
 * Rule 4: lent memory stays out of the borrower's IOMMU. An mmio_direct
 * entry on a RAM frame is a lent page here (check() holds every one to a
 * live lend), which the IOMMU's own tables leave out; a BAR's stays in, as
 * Xen maps it for peer-to-peer DMA. A borrower whose IOMMU walks the p2m
 * itself is never lent such an entry (lend refuses it).
 */
function iommuExcludes(m: Machine, _d: number, e: number): boolean {
  return entryType(e) === P2M.mmio_direct && m.ft.isRam(entryMfn(e)) && !m.control.buggy(BUGS['lending-lent-in-iommu']);
}

/**
 * Invariant 4 against the lend records (registry lock held, so no lend or
 * reclaim is half done): every live lent page is in its borrower's p2m on a
 * frame its lender owns, with a lent count; every frame-carrying
 * mmio_direct/mmio_dm entry is a live lent page; the lent counts are the
 * live pages'.
 */
function check(m: Machine): void {
  m.lock(GLOBAL_LOCK.REGISTRY, 'checker.lending');
  try {
    const s = storeOf(m);
    const owner = new Set<string>();
    const counts = new Map<number, number>();
    for (let r = 0; r < MAX_LENDS; r++) {
      if (s.at(r, LEND.STATE) !== 1) continue;
      checkRecord(m, s, r, owner, counts);
    }
    for (let mfn = 0; mfn < m.config.nr_frames; mfn++) {
      m.log.checked('records_match_frames');
      const want = counts.get(mfn) ?? 0;
      if (s.lent[mfn] !== want) m.log.violated('records_match_frames', `mfn ${mfn}: lent count ${s.lent[mfn]}, ${want} live lent pages`);
    }
    for (const d of m.dom.inUse()) {
      p2mForEach(m, d, (g, e) => {
        const t = entryType(e);
        if (e === P2M_HOLE || (t !== P2M.mmio_direct && t !== P2M.mmio_dm) || entryMfn(e) < 0 || !m.ft.isRam(entryMfn(e))) return;
        m.log.checked('mapped_not_ram');
        if (!owner.has(`${d}:${g}`)) m.log.violated('mapped_not_ram', `d${d} gfn ${g}: lent-type entry on mfn ${entryMfn(e)} with no live lend`);
      });
    }
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

function checkRecord(m: Machine, s: LendStore, r: number, owner: Set<string>, counts: Map<number, number>): void {
  const lender = s.at(r, LEND.LENDER);
  const borrower = s.at(r, LEND.BORROWER);
  for (const i of livePages(s, r, () => true)) {
    const g = s.at(r, LEND.AT) + i;
    owner.add(`${borrower}:${g}`);
    const mfn = entryMfn(p2mGet(m, borrower, g));
    m.log.checked('records_match_frames');
    if (!m.ft.isRam(mfn) || m.ft.owner(mfn) !== lender) m.log.violated('records_match_frames', `lend ${s.at(r, LEND.ID)} (d${lender}→d${borrower}) gfn ${g}: mfn ${mfn} is not the lender's RAM`);
    else counts.set(mfn, (counts.get(mfn) ?? 0) + 1);
    // Rule 4, through the core's IOMMU: the borrower's device reaches no lent page.
    if (m.dom.at(borrower, DOM.PASSTHROUGH) === PASSTHROUGH.disabled) continue;
    m.log.checked('isolation');
    if (iommuFlags(m, borrower, g) !== 0) m.log.violated('isolation', `lend ${s.at(r, LEND.ID)} (d${lender}→d${borrower}) gfn ${g}: the lent page is in the borrower's IOMMU`);
  }
}

export const lending: MemoryDesign = {
  name: 'lending',
  regionBytes: (c) => LendStore.bytes(c.nr_frames, c.p2m_pool_pages * P2M_TABLE_ENTRIES),
  map: lend,
  revoke: reclaim,
  steal: () => NOT_AN_OP,
  return: () => NOT_AN_OP,
  domainDying,
  faultServer,
  foreignMapRefused,
  iommuExcludes,
  check,
  liveRecords: (m) => storeOf(m).liveCount(),
};
