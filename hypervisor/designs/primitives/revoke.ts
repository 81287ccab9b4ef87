/**
 * Revoke (docs/primitives.md; the algorithm and its bound: docs/revoke.md):
 * the frontend entries become revoked (P2M_REVOKED, p2m_mmio_dm with no
 * frame), every vCPU of the frontend flushes (xen/p2m.ts tlbShootdown,
 * Xen's flush_tlb_mask), and only then do the mapping's page references
 * go — so no frame is freed and reused while a stale translation may
 * still reach it (the XSA-217 class). Nested mappings made from the pages
 * go first (transitive Revoke).
 */
import { MAX_MAPPINGS } from '../../layout/constants.js';
import { BUGS } from '../../xen/buggify.js';
import { DOM, DS } from '../../layout/domains.js';
import { entryMfn, P2M_HOLE, P2M_REVOKED } from '../../layout/p2m.js';
import { KIND, REC } from './registry.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { putPage } from '../../xen/mm.js';
import { p2mLock, p2mRemoveLocked, p2mUnlock } from '../../xen/p2m.js';
import { EINVAL, ENOENT, EPERM, ESRCH } from '../../public/errno.js';
import { PRIM } from '../../layout/trace.js';
import { tracePrim, tracer } from '../../xen/trace.js';
import { countOk, isRamMfn, registryOf } from './common.js';
import type { RevokeTarget } from '../../xen/design.js';


// ---------------------------------------------------------------- Revoke

/** Revoke never fails for valid arguments; an invalid id is -ENOENT (a backend bug). */
export function dmRevoke(m: Machine, be: number, t: RevokeTarget): number {
  if ('id' in t) {
    m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.revoke');
    try {
      const r = registryOf(m).find(t.id);
      if (r < 0 || registryOf(m).at(r, REC.BACKEND) !== be || registryOf(m).at(r, REC.KIND) === KIND.STEAL) return -ENOENT;
      // A tombstone (all pages revoked already): nothing to do, and that is success.
      if (registryOf(m).at(r, REC.STATE) === 1) revokeRecord(m, r, allLive(m, r));
      return 0;
    } finally {
      m.unlock(GLOBAL_LOCK.REGISTRY);
    }
  }
  if (!countOk(t.count)) return -EINVAL;
  if (!Number.isInteger(t.fe) || t.fe < 0 || t.fe >= m.nd || m.dom.state(t.fe) === DS.FREE) return -ESRCH;
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
  for (let r = 0; r < MAX_MAPPINGS; r++) {
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
export function revokeRecord(m: Machine, r: number, pages: readonly number[]): void {
  const tw = tracer;
  if (tw === null) revokeRecordUntraced(m, r, pages);
  else tracePrim(tw, PRIM.REVOKE, registryOf(m).at(r, REC.FRONTEND), pages.length, () => revokeRecordUntraced(m, r, pages), () => 0);
}

function revokeRecordUntraced(m: Machine, r: number, pages: readonly number[]): void {
  const reg = registryOf(m);
  const fe = reg.at(r, REC.FRONTEND);
  const first = reg.at(r, REC.FE_GFN);
  if (!m.control.buggy(BUGS['revoke-skip-nested'])) {
    const gfns = new Set(pages.map((i) => first + i));
    for (let c = 0; c < MAX_MAPPINGS; c++) {
      if (reg.at(c, REC.STATE) !== 1 || reg.at(c, REC.KIND) !== KIND.MAP_NESTED || reg.at(c, REC.PARENT) !== r + 1) continue;
      const src = reg.at(c, REC.SRC);
      const sub: number[] = [];
      for (let j = 0; j < reg.at(c, REC.COUNT); j++) if (reg.live(c, j) && gfns.has(src + j)) sub.push(j);
      if (sub.length > 0) revokeRecord(m, c, sub);
    }
  }
  const live = pages.filter((i) => reg.live(r, i));
  if (live.length === 0) return;
  p2mLock(m, fe, 'primitives.revoke');
  let old: number[];
  try {
    old = p2mRemoveLocked(m, fe, live.map((i) => first + i), P2M_REVOKED, { skipFlushBug: BUGS['skip-tlb-flush-on-revoke'] });
  } finally {
    p2mUnlock(m, fe);
  }
  for (const i of live) reg.setLive(r, i, false);
  reg.set(r, REC.LIVE, reg.at(r, REC.LIVE) - live.length);
  for (const e of old) {
    const mfn = entryMfn(e);
    if (e !== P2M_HOLE && isRamMfn(m, mfn)) putPage(m, mfn);
  }
  if (reg.at(r, REC.LIVE) === 0) {
    const link = reg.at(r, REC.LINK);
    if (link !== 0) reg.set(link - 1, REC.LINK, 0);
    reg.retire(r);
  }
}
