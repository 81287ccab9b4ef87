/**
 * Revoke (docs/primitives.md; the algorithm and its bound: docs/revoke.md):
 * the frontend entries become revoked (P2M_REVOKED, p2m_mmio_dm with no
 * frame), every vCPU of the frontend flushes (xen/p2m.ts tlbShootdown,
 * Xen's flush_tlb_mask), and only then do the mapping's page references
 * go — so no frame is freed and reused while a stale translation may
 * still reach it (the XSA-217 class). Nested mappings made from the pages
 * go first (transitive Revoke).
 */
import { REACH } from '../../layout/reach.js';
import { BUGS } from '../../xen/buggify.js';
import { DOM, DS } from '../../layout/domains.js';
import { entryMfn, entryOrdinal, P2M_HOLE, P2M_REVOKED } from '../../layout/p2m.js';
import { KIND, REC } from './registry.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { putPage } from '../../xen/mm.js';
import { p2mGet, p2mLeafWord, p2mLock, p2mRemoveLocked, p2mUnlock } from '../../xen/p2m.js';
import { EINVAL, ENOENT, EPERM, ESRCH } from '../../public/errno.js';
import { PRIM } from '../../layout/trace.js';
import { tracePrim, tracer } from '../../xen/trace.js';
import { countOk, isRamMfn, registryOf } from './common.js';
import { hookPoint } from '../../xen/hooks.js';
import type { RevokeTarget } from '../../xen/design.js';


// ---------------------------------------------------------------- Revoke

/**
 * Revoke never fails for valid arguments (the seed: it "does not fail
 * unless the backend or Xen is buggy"): an id never handed out is -ENOENT,
 * a backend bug. Whatever teardown already undid is nothing left to do: a
 * mapping into a frontend that is dying, a zombie or gone is revoked (or
 * was, by domain_relinquish_resources' part, teardown.ts), and the call
 * returns 0 — the MMU-notifier path that calls it cannot take a failure.
 */
export function dmRevoke(m: Machine, be: number, t: RevokeTarget): number {
  if ('id' in t) {
    m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.revoke');
    try {
      const reg = registryOf(m);
      const r = reg.find(t.id);
      // Its record is gone: its pages were all revoked (by an earlier Revoke
      // or the frontend's teardown) and the tombstone reused since.
      if (r < 0) return reg.issued(t.id) && !m.control.buggy(BUGS['revoke-dead-frontend-esrch']) ? 0 : -ENOENT;
      if (reg.at(r, REC.BACKEND) !== be || reg.at(r, REC.KIND) === KIND.STEAL) return -ENOENT;
      // A tombstone (all pages revoked already): nothing to do, and that is success.
      if (reg.at(r, REC.STATE) === 1) revokeRecord(m, r, allLive(m, r));
      return 0;
    } finally {
      m.unlock(GLOBAL_LOCK.REGISTRY);
    }
  }
  if (!countOk(t.count)) return -EINVAL;
  if (!Number.isInteger(t.fe) || t.fe < 0 || t.fe >= m.nd) return -ESRCH;
  // A freed frontend: its teardown revoked every mapping into it.
  if (m.dom.state(t.fe) === DS.FREE) return m.control.buggy(BUGS['revoke-dead-frontend-esrch']) ? -ESRCH : 0;
  if (t.fe === be) return -EINVAL;
  if (m.dom.at(t.fe, DOM.BACKEND) !== be + 1 && m.dom.at(be, DOM.PRIVILEGED) === 0) return -EPERM;
  m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.revoke');
  try {
    revokeRange(m, (r) => registryOf(m).at(r, REC.BACKEND) === be, t.fe, t.gfn, t.count);
    return 0;
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

export function allLive(m: Machine, r: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < registryOf(m).at(r, REC.COUNT); i++) if (registryOf(m).live(r, i)) out.push(i);
  return out;
}

/** Revoke the live pages of fe in [gfn, gfn+count) whose mapping passes `which`. Registry lock held. */
function revokeRange(m: Machine, which: (r: number) => boolean, fe: number, gfn: number, count: number): void {
  const reg = registryOf(m);
  // fe's live records with a page in the range when the Revoke began (the index), in record order; each
  // asked again when its turn comes, as the scan did: an earlier one's Revoke may have revoked it already (a
  // nested child). No record gains a live page meanwhile, so none outside these could match.
  const candidates: number[] = [];
  for (let r = reg.firstOfFrontend(fe); r >= 0; r = reg.nextOfFrontend(r)) {
    const first = reg.at(r, REC.FE_GFN);
    if (first < gfn + count && first + reg.at(r, REC.COUNT) > gfn) candidates.push(r);
  }
  candidates.sort((a, b) => a - b);
  for (const r of candidates) {
    if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) === KIND.STEAL || reg.at(r, REC.FRONTEND) !== fe || !which(r)) continue;
    const first = reg.at(r, REC.FE_GFN);
    const pages: number[] = [];
    for (let i = 0; i < reg.at(r, REC.COUNT); i++) {
      const g = first + i;
      if (g >= gfn && g < gfn + count && reg.live(r, i)) pages.push(i);
    }
    if (pages.length > 0) revokeRecord(m, r, pages);
  }
}

/**
 * The heart of Revoke (docs/revoke.md). Registry lock held.
 *  1. Nested mappings made from these pages are revoked first (transitive).
 *  2. Under fe's p2m lock, the entries become revoked (GEN odd → store →
 *     TLB shootdown of every fe vCPU → GEN even): from here no vCPU of fe
 *     can reach the frames, and none of fe's hypercalls could (Map'd gfns
 *     are not RAM to them).
 *  3. Only then the mapping's page references go, so the backend may reuse
 *     the frames.
 */
export function revokeRecord(m: Machine, r: number, pages: readonly number[], absorbed?: ReadonlySet<number>): void {
  const tw = tracer;
  if (tw === null) revokeRecordUntraced(m, r, pages, absorbed);
  else tracePrim(tw, PRIM.REVOKE, registryOf(m).at(r, REC.FRONTEND), pages.length, () => revokeRecordUntraced(m, r, pages, absorbed), () => 0);
}

/**
 * `absorbed`: frames whose count the caller froze with these mappings'
 * references counted in (Return, return.ts): their references are not put
 * one by one, the caller's frozen count already took them.
 */
function revokeRecordUntraced(m: Machine, r: number, pages: readonly number[], absorbed: ReadonlySet<number> | undefined): void {
  const reg = registryOf(m);
  const fe = reg.at(r, REC.FRONTEND);
  const first = reg.at(r, REC.FE_GFN);
  if (!m.control.buggy(BUGS['revoke-skip-nested'])) for (const [c, sub] of nestedMapsOf(m, r, pages)) revokeRecord(m, c, sub, absorbed);
  const live = pages.filter((i) => reg.live(r, i));
  if (live.length === 0) return;
  // The bug: the references (and fe's rights) go before the entries are
  // removed and flushed, so the frames may be freed and handed out while fe
  // still reaches them. Only the isolation oracle sees it (issue 19).
  const early = m.control.buggy(BUGS['revoke-put-before-flush']) && absorbed === undefined;
  if (early) dropMapRefs(m, fe, live.map((i) => p2mGet(m, fe, first + i)), absorbed);
  // Where another pCPU's vCPU of fe may still touch the pages: the entries
  // are there, so fe's right to the frames must be too (a racing access
  // asks the isolation oracle).
  hookPoint('revoke.before_remove', fe, first + live[0]!);
  p2mLock(m, fe, 'primitives.revoke');
  let old: number[];
  try {
    // The revoked gfns join the FAULT set of this mapping's backend (its
    // IOREQ server gets their faults), before they become revoked.
    const owner = reg.at(r, REC.BACKEND) + 1;
    // A Map'd page is a 4 KiB leaf, or in a BAR Map's superpage, whose
    // split has its table page reserved: Revoke never fails for want of one.
    // Each gfn's fault owner goes into its 4 KiB leaf once any split is done.
    const onLeaf = (_g: number, w: number): void => {
      Atomics.store(reg.faultOwner, entryOrdinal(w), owner);
    };
    old = p2mRemoveLocked(m, fe, live.map((i) => first + i), P2M_REVOKED, { skipFlushBug: BUGS['skip-tlb-flush-on-revoke'], onLeaf });
  } finally {
    p2mUnlock(m, fe);
  }
  for (const i of live) reg.setLive(r, i, false);
  reg.set(r, REC.LIVE, reg.at(r, REC.LIVE) - live.length);
  if (!early) dropMapRefs(m, fe, old, absorbed);
  if (reg.at(r, REC.LIVE) === 0) {
    const link = reg.at(r, REC.LINK);
    if (link !== 0) reg.set(link - 1, REC.LINK, 0);
    reg.retire(r);
  }
}

/** The live nested Maps made from pages `pages` of mapping r, with their pages made from them. Registry lock held. */
export function nestedMapsOf(m: Machine, r: number, pages: readonly number[]): Array<[number, number[]]> {
  const reg = registryOf(m);
  const first = reg.at(r, REC.FE_GFN);
  const out: Array<[number, number[]]> = [];
  // Live nested Maps naming slot r as their parent (the registry's index), in record order.
  const children = reg.childrenOf(r);
  if (children.length === 0) return out;
  const gfns = new Set(pages.map((i) => first + i));
  for (const c of children) {
    if (reg.at(c, REC.STATE) !== 1 || reg.at(c, REC.KIND) !== KIND.MAP_NESTED || reg.at(c, REC.PARENT) !== r + 1) continue;
    const src = reg.at(c, REC.SRC);
    const sub: number[] = [];
    for (let j = 0; j < reg.at(c, REC.COUNT); j++) if (reg.live(c, j) && gfns.has(src + j)) sub.push(j);
    if (sub.length > 0) out.push([c, sub]);
  }
  return out;
}

/**
 * A mapping's hold on its RAM frames, once its entries (`old`) are out of
 * fe's p2m and every TLB of fe: fe's right to each frame and the page
 * reference (unless the caller froze it into the count: `absorbed`).
 */
function dropMapRefs(m: Machine, fe: number, old: readonly number[], absorbed: ReadonlySet<number> | undefined): void {
  for (const e of old) {
    const mfn = entryMfn(e);
    if (e === P2M_HOLE || !isRamMfn(m, mfn)) continue;
    m.reach.release(mfn, fe, REACH.MAP);
    if (absorbed?.has(mfn) !== true) putPage(m, mfn);
  }
}

/**
 * The IOREQ server a FAULT on d's revoked `gfn` goes to: the one run by the
 * backend whose mapping was revoked there (the seed thread: revoked gfns
 * join a per-IOREQ-server FAULT rangeset of the server of the backend that
 * Mapped them), or -1 when that backend runs none for d (Xen's null
 * handler answers). Lock-free, on the faulting vCPU.
 */
export function faultServer(m: Machine, d: number, gfn: number): number {
  if (m.control.buggy(BUGS['fault-to-first-server'])) return m.ioreq.first(d);
  // A revoked gfn is a 4 KiB leaf; anything else has no fault owner to ask.
  const idx = p2mLeafWord(m, d, gfn);
  const owner = idx < 0 ? 0 : Atomics.load(registryOf(m).faultOwner, entryOrdinal(idx));
  return owner === 0 ? -1 : m.ioreq.ownedBy(d, owner - 1);
}
