/**
 * memory.ts at its edges (docs/verification.md §8, from the survivors of its
 * first mutation run): what each memory op answers and what it leaves
 * changed or unchanged — errno values, tot_pages, page and domain
 * references, reach rights, p2m entries — for XENMEM_current/maximum_reservation,
 * rcu_lock_remote_domain_by_id, copy_{from,to}_guest, populate_physmap and
 * decrease_reservation, p2m_add_foreign and XENMEM_remove_from_physmap.
 */
import { describe, expect, it } from 'vitest';
import { EEXIST, EFAULT, EINVAL, ENOENT, ENOMEM, ENXIO, EPERM, ESRCH, GNTST_okay } from '../public/errno.js';
import { domid, gfn, grantRef, P2M } from '../public/types.js';
import { testMachine } from '../../tests/test-machine.js';
import { bufferCopy, decreaseReservation, foreignMap, lockRemoteDomain, memoryStatReservation, populatePhysmap, removeFromPhysmap } from './memory.js';
import { designOf } from './design.js';
import { dmSetMemType } from './dm.js';
import { domainCrash } from './domain-crash.js';
import { domainCreate, domainDestroy, populateRange } from './domain.js';
import { putDomain } from './domain-ref.js';
import { setPreempter } from './hooks.js';
import { guestGrantAccess, mapGrantRef } from './grant-table.js';
import { p2mGet } from './p2m.js';
import { entryMfn, entryType, P2M_HOLE, P2M_REVOKED } from '../layout/p2m.js';
import { DOM, DS } from '../layout/domains.js';
import { PS } from '../layout/frametable.js';
import { REACH } from '../layout/reach.js';
import type { Machine } from './machine.js';
import { expectAllDestroyed, expectClean } from '../../tests/expect-clean.js';

const tot = (m: Machine, d: number): number => m.dom.at(d, DOM.TOT_PAGES);
const refs = (m: Machine, d: number): number => m.dom.at(d, DOM.REFCNT);
const mfnAt = (m: Machine, d: number, g: number): number => entryMfn(p2mGet(m, d, g));
const p2mHeld = (m: Machine, d: number): boolean => m.locks.isHeld(m.dom.at(d, DOM.LOCK_P2M) as never);
const p2mHeld1 = (m: Machine): boolean => p2mHeld(m, 1);
const clean = (m: Machine): void => expectClean(m, { conserved: true });
const destroyAll = expectAllDestroyed;

/**
 * d0 dom0 (max 128); d1 a frontend of d0 (64 pages, max 80); d2 a frontend
 * whose device model is d1 (32 pages, max 48); d3 unprivileged with no
 * backend (16 pages). d1 gets 100 Map'd mmio_direct (RAM), 101 Map'd
 * mmio_dm, 102 revoked, 103 a BAR Map.
 */
function machine(bugs?: string, design?: string): Machine {
  const m = testMachine({
    domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, max_pages: 80, backend: 0 }, { memory_pages: 32, max_pages: 48, backend: 1 }, { memory_pages: 16 }],
    bars: [{ name: 'bar0', owner: 0, nr_pages: 4 }],
    ...(bugs !== undefined ? { bugs } : {}),
    ...(design !== undefined ? { design } : {}),
  });
  if (design !== undefined) return m;
  const map = (src: { kind: 'ram'; gfn: number } | { kind: 'bar'; mfn: number }, at: number, type: number = P2M.mmio_direct): number => {
    const r = designOf(m).map(m, 0, { fe: 1, source: src, count: 1, at, type: type as typeof P2M.mmio_direct });
    expect(r.rc).toBe(0);
    return r.id;
  };
  map({ kind: 'ram', gfn: 4 }, 100);
  map({ kind: 'ram', gfn: 5 }, 101, P2M.mmio_dm);
  expect(designOf(m).revoke(m, 0, { id: map({ kind: 'ram', gfn: 6 }, 102) })).toBe(0);
  map({ kind: 'bar', mfn: m.sabs.bars[0]!.base_mfn }, 103);
  return m;
}

describe('XENMEM_current_reservation / XENMEM_maximum_reservation (do_memory_op)', () => {
  it('xsm_memory_stat_reservation(XSM_TARGET): the domain itself, its device model or the control domain; domain_tot_pages or max_pages', () => {
    const m = machine();
    expect(memoryStatReservation(m, 1, 1, 'current')).toBe(64);
    expect(memoryStatReservation(m, 1, 1, 'maximum')).toBe(80);
    expect(memoryStatReservation(m, 3, 3, 'maximum')).toBe(16); // unprivileged, no device model: itself only
    expect(memoryStatReservation(m, 0, 2, 'current')).toBe(32); // the control domain
    expect(memoryStatReservation(m, 0, 2, 'maximum')).toBe(48);
    expect(memoryStatReservation(m, 1, 2, 'current')).toBe(32); // d2's device model
    expect(memoryStatReservation(m, 1, 2, 'maximum')).toBe(48);
    expect(memoryStatReservation(m, 2, 1, 'current')).toBe(-EPERM); // not the other way round
    expect(memoryStatReservation(m, 2, 1, 'maximum')).toBe(-EPERM);
    expect(memoryStatReservation(m, 1, 0, 'current')).toBe(-EPERM); // d0 is d1's backend, not its target
    expect(memoryStatReservation(m, 3, 1, 'current')).toBe(-EPERM);
    expect(memoryStatReservation(m, 2, 3, 'maximum')).toBe(-EPERM);
    // The answer follows tot_pages.
    expect(populatePhysmap(m, 1, [110, 111])).toBe(2);
    expect(memoryStatReservation(m, 0, 1, 'current')).toBe(66);
    expect(decreaseReservation(m, 1, [110])).toBe(1);
    expect(memoryStatReservation(m, 1, 1, 'current')).toBe(65);
    expect(memoryStatReservation(m, 1, 1, 'maximum')).toBe(80);
    // A query takes no reference it keeps.
    for (let d = 0; d < 4; d++) expect(refs(m, d)).toBe(0);
    clean(m);
    destroyAll(m);
  });

  it('rcu_lock_domain_by_any_id: -ESRCH for a domid out of range, a free slot or one being created; a crashed, dying or zombie domain answers', () => {
    const m = machine();
    for (const d of [-1, m.nd, m.nd + 1, 1.5, Number.NaN]) for (const w of ['current', 'maximum'] as const) expect(memoryStatReservation(m, 0, d, w), `${d}`).toBe(-ESRCH);
    expect(m.dom.state(4)).toBe(DS.FREE);
    expect(memoryStatReservation(m, 0, 4, 'current')).toBe(-ESRCH);
    expect(memoryStatReservation(m, 4, 4, 'maximum')).toBe(-ESRCH);
    // A slot inside domainCreate's window (CREATING), as another thread sees it.
    m.dom.set(4, DOM.STATE, DS.CREATING);
    expect(memoryStatReservation(m, 0, 4, 'current')).toBe(-ESRCH);
    expect(memoryStatReservation(m, 0, 4, 'maximum')).toBe(-ESRCH);
    m.dom.set(4, DOM.STATE, DS.FREE);
    // d2 crashed, then destroyed while d0 still maps one of its pages: a zombie with one page.
    expect(domainCrash(m, 2, 'test')).toBe(true);
    expect(memoryStatReservation(m, 1, 2, 'current')).toBe(32);
    expect(foreignMap(m, 0, 2, 3, 150)).toBe(0);
    expect(domainDestroy(m, 2)).toBe(0);
    expect(m.dom.state(2)).toBe(DS.ZOMBIE);
    expect(memoryStatReservation(m, 0, 2, 'current')).toBe(1);
    expect(memoryStatReservation(m, 1, 2, 'maximum')).toBe(48);
    expect(removeFromPhysmap(m, 0, 150)).toBe(0);
    expect(m.dom.state(2)).toBe(DS.FREE);
    expect(memoryStatReservation(m, 0, 2, 'current')).toBe(-ESRCH);
    expect(memoryStatReservation(m, 1, 2, 'maximum')).toBe(-ESRCH);
    clean(m);
    destroyAll(m);
  });
});

describe('rcu_lock_remote_domain_by_id (xen/common/domain.c)', () => {
  it('a reference held on success only; -ESRCH for none (out of range, free, being created), -EPERM for the caller itself', () => {
    const m = machine();
    expect(lockRemoteDomain(m, 0, 1)).toBe(0);
    expect(refs(m, 1)).toBe(1);
    expect(lockRemoteDomain(m, 3, 1)).toBe(0); // no permission check here: that is the caller's XSM hook
    expect(refs(m, 1)).toBe(2);
    putDomain(m, 1);
    putDomain(m, 1);
    expect(lockRemoteDomain(m, 1, 1)).toBe(-EPERM);
    expect(lockRemoteDomain(m, 0, 0)).toBe(-EPERM);
    expect(refs(m, 1)).toBe(0);
    expect(refs(m, 0)).toBe(0);
    for (const d of [-1, m.nd, 2.5]) expect(lockRemoteDomain(m, 0, d), `${d}`).toBe(-ESRCH);
    expect(lockRemoteDomain(m, 0, 4)).toBe(-ESRCH); // free
    expect(refs(m, 4)).toBe(0);
    m.dom.set(4, DOM.STATE, DS.CREATING);
    expect(lockRemoteDomain(m, 0, 4)).toBe(-ESRCH);
    expect(refs(m, 4)).toBe(0);
    m.dom.set(4, DOM.STATE, DS.FREE);
    // Crashed: still there (a core dump maps it).
    expect(domainCrash(m, 3, 'test')).toBe(true);
    expect(lockRemoteDomain(m, 0, 3)).toBe(0);
    expect(refs(m, 3)).toBe(1);
    putDomain(m, 3);
    clean(m);
    destroyAll(m);
  });
});

describe('copy_from_guest / copy_to_guest on the caller\'s gfns (hypercall buffers)', () => {
  const ps = 4096;
  /** Fill d's gfn `g` with bytes (g * 7 + i) & 0xff. */
  const fill = (m: Machine, d: number, g: number): void => {
    const base = mfnAt(m, d, g) * ps;
    for (let i = 0; i < ps; i++) m.frames.u8[base + i] = (g * 7 + i) & 0xff;
  };
  const byteAt = (m: Machine, d: number, g: number, i: number): number => m.frames.u8[mfnAt(m, d, g) * ps + i]!;

  it('__hvm_copy: the bytes at gfn + offset, across a page boundary and from an offset past the first page; the pages\' counts as before', () => {
    const m = machine();
    for (const g of [2, 3, 4]) fill(m, 3, g);
    const counts = [2, 3, 4].map((g) => m.ft.count(mfnAt(m, 3, g)));
    const s = new Uint8Array(64).fill(0xee);
    expect(bufferCopy(m, 3, 'from_guest', 2, ps - 6, 10, s)).toBe(0);
    expect([...s.subarray(0, 10)]).toEqual([...Array.from({ length: 6 }, (_, i) => byteAt(m, 3, 2, ps - 6 + i)), ...Array.from({ length: 4 }, (_, i) => byteAt(m, 3, 3, i))]);
    expect(s[10]).toBe(0xee); // nothing past `bytes`
    // An offset of a page and 5 bytes starts at the next gfn.
    expect(bufferCopy(m, 3, 'from_guest', 2, ps + 5, 3, s)).toBe(0);
    expect([...s.subarray(0, 3)]).toEqual([byteAt(m, 3, 3, 5), byteAt(m, 3, 3, 6), byteAt(m, 3, 3, 7)]);
    // Two whole pages and a bit: three gfns.
    const big = new Uint8Array(2 * ps + 2);
    expect(bufferCopy(m, 3, 'from_guest', 2, 0, 2 * ps + 2, big)).toBe(0);
    expect(big[0]).toBe(byteAt(m, 3, 2, 0));
    expect(big[ps]).toBe(byteAt(m, 3, 3, 0));
    expect(big[2 * ps + 1]).toBe(byteAt(m, 3, 4, 1));
    // copy_to_guest writes exactly [offset, offset + bytes).
    const w = Uint8Array.from({ length: 10 }, (_, i) => 0xa0 + i);
    const before = [byteAt(m, 3, 2, ps - 7), byteAt(m, 3, 3, 4)];
    expect(bufferCopy(m, 3, 'to_guest', 2, ps - 6, 10, w)).toBe(0);
    expect(Array.from({ length: 6 }, (_, i) => byteAt(m, 3, 2, ps - 6 + i))).toEqual([0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5]);
    expect(Array.from({ length: 4 }, (_, i) => byteAt(m, 3, 3, i))).toEqual([0xa6, 0xa7, 0xa8, 0xa9]);
    expect([byteAt(m, 3, 2, ps - 7), byteAt(m, 3, 3, 4)]).toEqual(before);
    expect(bufferCopy(m, 3, 'to_guest', 2, 2 * ps + 1, 2, w)).toBe(0);
    expect([byteAt(m, 3, 4, 1), byteAt(m, 3, 4, 2)]).toEqual([0xa0, 0xa1]);
    // get_page_from_gfn / put_page around every page: no reference left behind.
    expect([2, 3, 4].map((g) => m.ft.count(mfnAt(m, 3, g)))).toEqual(counts);
    clean(m);
    destroyAll(m);
  });

  it('__hvm_copy: the buffer\'s last byte at the end of the last RAM page: the next gfn (a hole) is not touched', () => {
    const m = machine();
    const last = 15; // d3 has gfns 0 … 15
    expect(p2mGet(m, 3, last + 1)).toBe(P2M_HOLE);
    const s = new Uint8Array(ps);
    expect(bufferCopy(m, 3, 'from_guest', last, 0, ps, s)).toBe(0);
    expect(bufferCopy(m, 3, 'to_guest', last, 0, ps, s)).toBe(0);
    expect(bufferCopy(m, 3, 'from_guest', last - 1, ps, ps, s)).toBe(0);
    expect(bufferCopy(m, 3, 'to_guest', last, 1, ps, s)).toBe(-EFAULT); // one byte into the hole
    expect(bufferCopy(m, 3, 'from_guest', last, ps - 1, 2, s)).toBe(-EFAULT);
    // Zero bytes copy nothing, so touch no page: even a hole answers 0.
    expect(bufferCopy(m, 3, 'from_guest', last + 1, 0, 0, s)).toBe(0);
    expect(bufferCopy(m, 3, 'to_guest', 110, 0, 0, s)).toBe(0);
    expect(m.ft.count(mfnAt(m, 3, last))).toBe(1);
    clean(m);
  });

  it('-EINVAL for a negative or fractional offset or length, or a length past the hypervisor\'s buffer; the buffer\'s whole length is allowed', () => {
    // xgsim's own gate, not Xen's: the bytes go through one scratch buffer of the calling vCPU (guest-cpu.ts).
    const m = machine();
    const s = new Uint8Array(100).fill(0x11);
    for (const [off, n] of [[-1, 8], [0, -1], [0.5, 8], [0, 1.5], [0, 101], [0, Number.NaN]] as const) {
      for (const dir of ['from_guest', 'to_guest'] as const) expect(bufferCopy(m, 3, dir, 2, off, n, s), `${dir} ${off} ${n}`).toBe(-EINVAL);
    }
    expect(s.every((b) => b === 0x11)).toBe(true);
    expect(bufferCopy(m, 3, 'from_guest', 2, 0, 100, s)).toBe(0);
    expect(bufferCopy(m, 3, 'to_guest', 2, 0, 100, s)).toBe(0);
    clean(m);
  });

  it('ram_ro (XEN_DMOP_set_mem_type): copy_from_guest reads it; copy_to_guest leaves it as it was, also when a copy runs into it', () => {
    // __hvm_copy: a read of ram_ro is a read of RAM; a write to it is dropped (p2m_is_discard_write).
    // xgsim answers that write -EFAULT instead of 0 (docs/fidelity.md D10, not fixed): only what
    // both agree on is checked here, that the page keeps its bytes.
    const m = machine();
    expect(dmSetMemType(m, 0, 3, 5, 1, P2M.ram_ro)).toBe(0);
    expect(entryType(p2mGet(m, 3, 5))).toBe(P2M.ram_ro);
    fill(m, 3, 5);
    const s = new Uint8Array(16);
    expect(bufferCopy(m, 3, 'from_guest', 5, 3, 4, s)).toBe(0);
    expect([...s.subarray(0, 4)]).toEqual([3, 4, 5, 6].map((i) => byteAt(m, 3, 5, i)));
    const w = new Uint8Array(16).fill(0x5a);
    bufferCopy(m, 3, 'to_guest', 5, 0, 4, w);
    expect([0, 1, 2, 3].map((i) => byteAt(m, 3, 5, i))).toEqual([0, 1, 2, 3].map((i) => (5 * 7 + i) & 0xff));
    // From gfn 4 (ram_rw) into gfn 5 (ram_ro): the first page's bytes are written, the second's not.
    bufferCopy(m, 3, 'to_guest', 4, ps - 2, 4, w);
    expect([byteAt(m, 3, 4, ps - 2), byteAt(m, 3, 4, ps - 1)]).toEqual([0x5a, 0x5a]);
    expect([byteAt(m, 3, 5, 0), byteAt(m, 3, 5, 1)]).toEqual([(5 * 7) & 0xff, (5 * 7 + 1) & 0xff]);
    expect(bufferCopy(m, 3, 'from_guest', 4, ps - 2, 4, s)).toBe(0);
    expect([...s.subarray(0, 4)]).toEqual([0x5a, 0x5a, (5 * 7) & 0xff, (5 * 7 + 1) & 0xff]);
    expect(m.ft.count(mfnAt(m, 3, 4))).toBe(1);
    expect(m.ft.count(mfnAt(m, 3, 5))).toBe(1);
    clean(m);
    destroyAll(m);
  });

  it('a page that is not RAM of the caller\'s p2m, though its own frame (a grant map of its own grant), or whose count is frozen at 0: -EFAULT, untouched', () => {
    const m = machine();
    // hvm_translate_get_page: a grant type is HVMTRANS_unhandleable, both ways.
    guestGrantAccess(m, 3, 2, 3, 6, false);
    expect(mapGrantRef(m, 3, { dom: domid(3), ref: grantRef(2), host_gfn: gfn(150), readonly: false }).status).toBe(GNTST_okay);
    expect(entryType(p2mGet(m, 3, 150))).toBe(P2M.grant_map_rw);
    expect(mfnAt(m, 3, 150)).toBe(mfnAt(m, 3, 6));
    fill(m, 3, 6);
    const s = new Uint8Array(8).fill(0xcc);
    expect(bufferCopy(m, 3, 'from_guest', 150, 0, 8, s)).toBe(-EFAULT);
    expect(s.every((b) => b === 0xcc)).toBe(true);
    expect(bufferCopy(m, 3, 'to_guest', 150, 0, 8, s)).toBe(-EFAULT);
    expect(byteAt(m, 3, 6, 0)).toBe((6 * 7) & 0xff);
    expect(m.ft.count(mfnAt(m, 3, 6))).toBe(2); // the grant map's reference, no other
    // get_page fails on a count frozen at 0 (steal_page's cmpxchg, another CPU mid-Steal).
    const mfn = mfnAt(m, 3, 7);
    const x = m.ft.countInfo(mfn);
    expect(m.ft.casCount(mfn, x, 0)).toBe(true);
    expect(bufferCopy(m, 3, 'from_guest', 7, 0, 8, s)).toBe(-EFAULT);
    expect(bufferCopy(m, 3, 'to_guest', 6, ps - 4, 8, s)).toBe(-EFAULT);
    expect(m.ft.countInfo(mfn)).toBe(0);
    expect(s.every((b) => b === 0xcc)).toBe(true);
    expect(byteAt(m, 3, 7, 0)).toBe(0);
    m.ft.storeCount(mfn, x);
    clean(m);
  });

  it('the reach oracle and reachable_not_free are asked for every page copied, naming the gfn and the direction', () => {
    for (const dir of ['from_guest', 'to_guest'] as const) {
      const m = machine();
      const mfn = mfnAt(m, 3, 7);
      // Break the oracle's record by hand: d3's right to its own page is gone.
      m.reach.release(mfn, 3, REACH.OWNER);
      expect(bufferCopy(m, 3, dir, 6, ps - 1, 2, new Uint8Array(2))).toBe(0);
      const v = m.log.records();
      expect(v.map((x) => x.invariant)).toEqual(['isolation']);
      expect(v[0]!.text).toContain(`d3 copied ${dir === 'from_guest' ? 'from' : 'to'} gfn 7 (hypercall buffer) mfn ${mfn}`);
      m.reach.grant(mfn, 3, REACH.OWNER);
    }
    for (const dir of ['from_guest', 'to_guest'] as const) {
      const m = machine();
      const mfn = mfnAt(m, 3, 7);
      m.ft.setState(mfn, PS.FREEING);
      expect(bufferCopy(m, 3, dir, 7, 0, 2, new Uint8Array(2))).toBe(0);
      const v = m.log.records();
      expect(v.map((x) => x.invariant)).toEqual(['reachable_not_free']);
      expect(v[0]!.text).toContain(`d3 copied ${dir === 'from_guest' ? 'from' : 'to'} gfn 7 (hypercall buffer), reaching mfn ${mfn}`);
      m.ft.setState(mfn, PS.INUSE);
    }
  });
});

describe('p2m_add_foreign (XENMEM_add_to_physmap_batch, XENMAPSPACE_gmfn_foreign): what a map holds, what a refusal gives back', () => {
  /** Nothing of a refused foreign map of d`src`'s gfn `g` by `ld` at `at` is left: no page or domain reference, no right, no lock, the destination as it was. */
  const gaveBack = (m: Machine, ld: number, src: number, g: number, at: number, before: number, count = 1): void => {
    const mfn = mfnAt(m, src, g);
    expect(m.ft.count(mfn)).toBe(count);
    expect(m.reach.may(mfn, ld)).toBe(false);
    expect(refs(m, src)).toBe(0);
    expect(p2mHeld(m, src)).toBe(false);
    expect(p2mHeld(m, ld)).toBe(false);
    expect(p2mGet(m, ld, at)).toBe(before);
  };

  it('p2m_add_foreign / XENMEM_remove_from_physmap: a map holds a page reference and the right to reach it until remove_from_physmap; the source domain\'s reference only for the call', () => {
    const m = machine();
    const mfn = mfnAt(m, 3, 2);
    const t0 = tot(m, 0);
    expect(m.reach.may(mfn, 0)).toBe(false);
    expect(foreignMap(m, 0, 3, 2, 150)).toBe(0);
    expect(p2mGet(m, 0, 150)).not.toBe(P2M_HOLE);
    expect(entryType(p2mGet(m, 0, 150))).toBe(P2M.map_foreign);
    expect(mfnAt(m, 0, 150)).toBe(mfn);
    expect(m.ft.count(mfn)).toBe(2);
    expect(m.ft.owner(mfn)).toBe(3);
    expect(m.reach.may(mfn, 0)).toBe(true);
    expect(refs(m, 3)).toBe(0);
    expect(tot(m, 0)).toBe(t0);
    expect(tot(m, 3)).toBe(16);
    expect(p2mHeld(m, 0) || p2mHeld(m, 3)).toBe(false);
    clean(m);
    // A second map of the same page at another gfn: a second reference.
    expect(foreignMap(m, 0, 3, 2, 151)).toBe(0);
    expect(m.ft.count(mfn)).toBe(3);
    expect(removeFromPhysmap(m, 0, 150)).toBe(0);
    expect(p2mGet(m, 0, 150)).toBe(P2M_HOLE);
    expect(m.ft.count(mfn)).toBe(2);
    expect(m.reach.may(mfn, 0)).toBe(true); // 151 still maps it
    expect(removeFromPhysmap(m, 0, 151)).toBe(0);
    expect(m.ft.count(mfn)).toBe(1);
    expect(m.reach.may(mfn, 0)).toBe(false);
    expect(tot(m, 0)).toBe(t0);
    expect(tot(m, 3)).toBe(16);
    // Its page is the source's: removing it again finds a hole.
    expect(removeFromPhysmap(m, 0, 150)).toBe(-ENOENT);
    clean(m);
    destroyAll(m);
  });

  it('xsm_map_gmfn_foreign: the control domain or the source\'s device model; refused, nothing is taken', () => {
    const m = machine();
    expect(foreignMap(m, 1, 3, 2, 150)).toBe(-EPERM); // d3 has no device model
    gaveBack(m, 1, 3, 2, 150, P2M_HOLE);
    expect(foreignMap(m, 2, 3, 2, 150)).toBe(-EPERM);
    expect(foreignMap(m, 3, 2, 2, 150)).toBe(-EPERM); // d2's device model is d1
    expect(refs(m, 2)).toBe(0);
    expect(foreignMap(m, 0, 3, 2, 150)).toBe(0); // dom0, whoever the source's device model
    expect(foreignMap(m, 1, 2, 2, 150)).toBe(0);
    expect(refs(m, 2)).toBe(0);
    clean(m);
    destroyAll(m);
  });

  it('the source gfn: ram_rw or ram_ro of the source (get_page_from_gfn), else -EINVAL; the destination past the caller\'s width -EINVAL after it', () => {
    const m = machine();
    expect(dmSetMemType(m, 0, 3, 5, 1, P2M.ram_ro)).toBe(0);
    expect(foreignMap(m, 0, 3, 5, 150)).toBe(0);
    expect(mfnAt(m, 0, 150)).toBe(mfnAt(m, 3, 5));
    expect(foreignMap(m, 0, 3, 20, 151)).toBe(-EINVAL); // a hole
    gaveBack(m, 0, 3, 2, 151, P2M_HOLE);
    expect(foreignMap(m, 0, 3, 2 ** 24, 151)).toBe(-EINVAL); // past d3's p2m
    expect(foreignMap(m, 0, 3, 2, 2 ** 24)).toBe(-EINVAL); // past d0's p2m: the source's page goes back
    gaveBack(m, 0, 3, 2, 151, P2M_HOLE);
    // A foreign map in the source is not its RAM: no chain of foreign maps.
    expect(foreignMap(m, 0, 1, 0, 152)).toBe(0);
    expect(foreignMap(m, 1, 2, 0, 160)).toBe(0);
    expect(foreignMap(m, 0, 2, 0, 153)).toBe(0);
    expect(foreignMap(m, 0, 1, 160, 154)).toBe(-EINVAL); // d1's gfn 160 maps d2's page: not d1's RAM
    expect(m.ft.count(mfnAt(m, 2, 0))).toBe(3);
    expect(removeFromPhysmap(m, 0, 150)).toBe(0);
    clean(m);
    destroyAll(m);
  });

  it('a source gfn that maps the source\'s own frame but is not RAM (a grant map of its own grant): -EINVAL (p2m_add_foreign: !p2m_is_ram)', () => {
    const m = machine();
    guestGrantAccess(m, 3, 2, 3, 6, false);
    expect(mapGrantRef(m, 3, { dom: domid(3), ref: grantRef(2), host_gfn: gfn(150), readonly: false }).status).toBe(GNTST_okay);
    expect(m.ft.owner(mfnAt(m, 3, 150))).toBe(3);
    expect(foreignMap(m, 0, 3, 150, 160)).toBe(-EINVAL);
    gaveBack(m, 0, 3, 150, 160, P2M_HOLE, 2);
    clean(m);
  });

  it('the destination: the caller\'s own RAM (rw or ro) is freed and replaced; another\'s page (a foreign or grant map) -ENXIO with the reference given back', () => {
    // p2m_add_foreign: guest_remove_page on the caller's own RAM, which fails (-ENXIO) on a page it cannot get_page as its own.
    const m = machine();
    const t1 = tot(m, 1);
    expect(dmSetMemType(m, 0, 1, 11, 1, P2M.ram_ro)).toBe(0);
    const src = mfnAt(m, 2, 3);
    for (const at of [10, 11]) {
      const old = mfnAt(m, 1, at);
      expect(foreignMap(m, 1, 2, 3, at), `${at}`).toBe(0);
      expect(mfnAt(m, 1, at)).toBe(src);
      expect(entryType(p2mGet(m, 1, at))).toBe(P2M.map_foreign);
      expect(m.ft.state(old)).toBe(PS.FREE);
      expect(m.reach.may(old, 1)).toBe(false);
    }
    expect(tot(m, 1)).toBe(t1 - 2);
    expect(m.ft.count(src)).toBe(3);
    const held = p2mGet(m, 1, 11);
    expect(foreignMap(m, 1, 2, 4, 11)).toBe(-ENXIO);
    gaveBack(m, 1, 2, 4, 11, held);
    expect(m.ft.count(src)).toBe(3);
    guestGrantAccess(m, 2, 3, 1, 9, false);
    expect(mapGrantRef(m, 1, { dom: domid(2), ref: grantRef(3), host_gfn: gfn(150), readonly: false }).status).toBe(GNTST_okay);
    const grant = p2mGet(m, 1, 150);
    expect(foreignMap(m, 1, 2, 4, 150)).toBe(-ENXIO);
    gaveBack(m, 1, 2, 4, 150, grant);
    expect(tot(m, 1)).toBe(t1 - 2);
    expect(m.dom.state(1)).toBe(DS.RUNNING);
    clean(m);
  });

  it('the destination: a Map\'d RAM (mmio_direct), mmio_dm or revoked gfn answers 0 and keeps its mapping; no reference or right is kept', () => {
    const m = machine();
    for (const at of [100, 101, 102]) {
      const before = p2mGet(m, 1, at);
      expect(foreignMap(m, 1, 2, 3, at), `${at}`).toBe(0);
      expect(p2mGet(m, 1, at)).toBe(before);
      expect(m.ft.count(mfnAt(m, 2, 3))).toBe(1);
      expect(m.reach.may(mfnAt(m, 2, 3), 1)).toBe(false);
      expect(refs(m, 2)).toBe(0);
    }
    expect(p2mGet(m, 1, 102)).toBe(P2M_REVOKED);
    expect(m.dom.state(1)).toBe(DS.RUNNING);
    // A BAR's mmio_direct: set_typed_p2m_entry crashes the caller; the source page's reference goes back.
    const bar = p2mGet(m, 1, 103);
    expect(foreignMap(m, 1, 2, 3, 103)).toBe(-EPERM);
    expect(m.dom.state(1)).toBe(DS.CRASHED);
    gaveBack(m, 1, 2, 3, 103, bar);
    clean(m);
    destroyAll(m);
  });

  it('mapped-gfn-distinguishable: onto a Map\'d, revoked or BAR gfn -EEXIST, nothing taken, nobody crashed', () => {
    const m = machine('mapped-gfn-distinguishable');
    for (const at of [100, 101, 102, 103]) {
      const before = p2mGet(m, 1, at);
      expect(foreignMap(m, 1, 2, 3, at), `${at}`).toBe(-EEXIST);
      gaveBack(m, 1, 2, 3, at, before);
    }
    expect(m.dom.state(1)).toBe(DS.RUNNING);
    clean(m);
  });

  it('frame 0 is a frame like any other: freed when a foreign map replaces it (guest_remove_page), handed out again (alloc_domheap_pages)', () => {
    const m = machine();
    expect(mfnAt(m, 0, 0)).toBe(0);
    const t0 = tot(m, 0);
    expect(foreignMap(m, 0, 3, 2, 0)).toBe(0);
    expect(m.ft.state(0)).toBe(PS.FREE);
    expect(tot(m, 0)).toBe(t0 - 1);
    // The heap hands the frame freed last out first.
    expect(populatePhysmap(m, 1, [170])).toBe(1);
    expect(p2mGet(m, 1, 170)).not.toBe(P2M_HOLE);
    expect(mfnAt(m, 1, 170)).toBe(0);
    expect(m.ft.owner(0)).toBe(1);
    expect(decreaseReservation(m, 1, [170])).toBe(1);
    expect(m.ft.state(0)).toBe(PS.FREE);
    clean(m);
    destroyAll(m);
  });

  it('a destination the caller\'s p2m share has no table for: -ENOMEM (p2m_set_entry), the page and the right given back', () => {
    const m = machine();
    // d4: privileged, 4 RAM pages, a share of 4 table pages (root, a level-2 and a level-1 table, one spare).
    expect(domainCreate(m, { domid: 4, max_pages: 16, nr_vcpus: 1, privileged: true, p2m_pages: 4 })).toBe(4);
    expect(populateRange(m, 4, 0, 4)).toBe(0);
    expect(foreignMap(m, 4, 3, 2, 0x800000)).toBe(-ENOMEM); // a new level-2 and level-1 table: one left
    gaveBack(m, 4, 3, 2, 0x800000, P2M_HOLE);
    expect(foreignMap(m, 4, 3, 2, 600)).toBe(0); // a new level-1 table only
    expect(mfnAt(m, 4, 600)).toBe(mfnAt(m, 3, 2));
    clean(m);
    destroyAll(m);
  });

  it('the placed hook runs on a map placed only, with the source and its gfn', () => {
    const m = machine();
    const seen: Array<[number, number]> = [];
    setPreempter((name, a, b) => {
      if (name === 'foreign_map.placed') seen.push([a, b]);
    });
    try {
      expect(foreignMap(m, 0, 3, 2, 150)).toBe(0);
      expect(foreignMap(m, 0, 3, 3, 150)).toBe(-ENXIO);
      expect(foreignMap(m, 1, 2, 3, 101)).toBe(0); // a hole's answer: nothing placed
      expect(foreignMap(m, 0, 3, 4, 2 ** 24)).toBe(-EINVAL);
      expect(foreignMap(m, 0, 2, 5, 151)).toBe(0);
    } finally {
      setPreempter(null);
    }
    expect(seen).toEqual([
      [3, 2],
      [2, 5],
    ]);
    clean(m);
  });

  it('a frame the design lends is refused to every foreign map, dom0\'s too, with nothing taken (docs/designs.md §2 rule 3)', () => {
    const m = machine(undefined, 'lending');
    const mfn = mfnAt(m, 1, 4);
    expect(designOf(m).map(m, 1, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(0);
    expect(m.ft.count(mfn)).toBe(2);
    expect(foreignMap(m, 0, 1, 4, 200)).toBe(-EPERM);
    expect(m.ft.count(mfn)).toBe(2);
    expect(m.reach.may(mfn, 0)).toBe(false);
    expect(refs(m, 1)).toBe(0);
    expect(p2mHeld(m, 1) || p2mHeld(m, 0)).toBe(false);
    expect(p2mGet(m, 0, 200)).toBe(P2M_HOLE);
    expect(foreignMap(m, 0, 1, 5, 200)).toBe(0); // its other pages are not lent
    clean(m);
  });

  it('foreign-map-p2m-lock-inversion: the caller\'s p2m lock taken under the source\'s (XSA-411 class), reported; every exit lets both go', () => {
    const m = machine('foreign-map-p2m-lock-inversion');
    expect(foreignMap(m, 0, 3, 2, 2 ** 24)).toBe(-EINVAL);
    expect(p2mHeld(m, 3) || p2mHeld(m, 0)).toBe(false);
    expect(m.log.records()).toEqual([]);
    expect(foreignMap(m, 0, 3, 2, 150)).toBe(0);
    expect(p2mHeld(m, 3) || p2mHeld(m, 0)).toBe(false);
    expect(m.log.records().map((r) => r.invariant)).toEqual(['lock_order']);
    expect(m.log.records()[0]!.text).toMatch(/key 0 at 'memory\.add_to_physmap_foreign' while holding key 3 from 'memory\.get_page_from_gfn'/);
    expect(foreignMap(m, 0, 3, 3, 150)).toBe(-ENXIO);
    expect(p2mHeld(m, 3) || p2mHeld(m, 0)).toBe(false);
    expect(m.ft.count(mfnAt(m, 3, 3))).toBe(1);
    // Without the bug: the source's lock is let go first, nothing to report.
    const ok = machine();
    expect(foreignMap(ok, 0, 3, 2, 150)).toBe(0);
    expect(ok.log.records()).toEqual([]);
  });

  it('pinned-userptr-unpin-while-mapped: the reference is dropped while the entry stays', () => {
    const m = machine('pinned-userptr-unpin-while-mapped');
    const mfn = mfnAt(m, 3, 2);
    expect(foreignMap(m, 0, 3, 2, 150)).toBe(0);
    expect(mfnAt(m, 0, 150)).toBe(mfn);
    expect(m.ft.count(mfn)).toBe(1);
    expect(foreignMap(m, 0, 3, 3, 150)).toBe(-ENXIO); // a refusal drops only its own reference
    expect(m.ft.count(mfnAt(m, 3, 3))).toBe(1);
  });

  it('foreign-map-old-rules: dom0 only, a running source only (get_domain), the destination checked first; references given back', () => {
    const m = machine('foreign-map-old-rules');
    expect(foreignMap(m, 1, 2, 3, 150)).toBe(-EPERM);
    expect(foreignMap(m, 0, 3, 2, 2 ** 24)).toBe(-EINVAL);
    expect(foreignMap(m, 0, 3, 20, 150)).toBe(-EINVAL);
    gaveBack(m, 0, 3, 2, 150, P2M_HOLE);
    expect(foreignMap(m, 0, 3, 2, 150)).toBe(0);
    expect(refs(m, 3)).toBe(0);
    expect(foreignMap(m, 0, 3, 3, 150)).toBe(-EEXIST);
    gaveBack(m, 0, 3, 3, 150, p2mGet(m, 0, 150));
    expect(foreignMap(m, 0, 3, 3, 9)).toBe(-EEXIST); // its own RAM too
    expect(foreignMap(m, 0, 9, 3, 151)).toBe(-ESRCH);
    expect(domainCrash(m, 3, 'test')).toBe(true);
    expect(foreignMap(m, 0, 3, 3, 151)).toBe(-ESRCH);
    expect(refs(m, 3)).toBe(0);
    clean(m);
  });
});

describe('populate_physmap, decrease_reservation and remove_from_physmap at their edges', () => {
  /** d4: privileged, 512 pages of RAM in one 2 MiB superpage, a p2m share of just the root and that level-2 table. */
  function superMachine(bugs?: string): Machine {
    const m = testMachine({ nr_frames: 2048, domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 16 }, { memory_pages: 16 }, { memory_pages: 16 }], ...(bugs !== undefined ? { bugs } : {}) });
    expect(domainCreate(m, { domid: 4, max_pages: 600, nr_vcpus: 1, privileged: true, p2m_pages: 2 })).toBe(4);
    expect(populateRange(m, 4, 0, 512)).toBe(0);
    expect(m.dom.at(4, DOM.P2M_PAGES)).toBe(2);
    expect(mfnAt(m, 4, 7)).toBe(mfnAt(m, 4, 0) + 7); // one superpage entry
    return m;
  }

  it('one page of a superpage with no table page left to split it: -ENOMEM (p2m_set_entry → ept_split_super_page), nothing changed, nothing charged', () => {
    const m = superMachine();
    const e7 = p2mGet(m, 4, 7);
    expect(decreaseReservation(m, 4, [7, 8])).toBe(0);
    expect(populatePhysmap(m, 4, [7, 8])).toBe(0);
    expect(removeFromPhysmap(m, 4, 7)).toBe(-ENOMEM);
    expect(foreignMap(m, 4, 3, 2, 7)).toBe(-ENOMEM);
    expect(m.ft.count(mfnAt(m, 3, 2))).toBe(1);
    expect(m.reach.may(mfnAt(m, 3, 2), 4)).toBe(false);
    // A hole that needs a new level-1 table: populate_physmap gives its page back.
    expect(populatePhysmap(m, 4, [600])).toBe(0);
    expect(p2mGet(m, 4, 600)).toBe(P2M_HOLE);
    expect(p2mGet(m, 4, 7)).toBe(e7);
    expect(tot(m, 4)).toBe(512);
    expect(m.dom.at(4, DOM.P2M_PAGES)).toBe(2);
    clean(m);
    destroyAll(m);
  });

  it('memop-errno-per-call: those refusals\' errnos when none was done', () => {
    const m = superMachine('memop-errno-per-call');
    expect(decreaseReservation(m, 4, [7])).toBe(-ENOMEM);
    expect(populatePhysmap(m, 4, [7])).toBe(-ENOMEM);
    expect(populatePhysmap(m, 4, [600])).toBe(-ENOMEM);
    expect(tot(m, 4)).toBe(512);
    expect(decreaseReservation(m, 4, [2 ** 24])).toBe(-EINVAL); // past the width
    expect(populatePhysmap(m, 4, [2 ** 24])).toBe(-EINVAL);
    expect(tot(m, 4)).toBe(512); // nothing allocated for it
    expect(decreaseReservation(m, 4, [1000])).toBe(-EINVAL); // a hole
    expect(decreaseReservation(m, 4, [0, 1000])).toBe(-ENOMEM); // the first fails: its errno
    clean(m);
  });

  it('decrease_reservation: the caller\'s own RAM, rw or ro, goes back to the heap; a grant or foreign map, MMIO or a hole stops the loop and stays', () => {
    const m = machine('memop-errno-per-call');
    expect(dmSetMemType(m, 0, 1, 12, 1, P2M.ram_ro)).toBe(0);
    const ro = mfnAt(m, 1, 12);
    const rw = mfnAt(m, 1, 13);
    expect(decreaseReservation(m, 1, [12, 13])).toBe(2);
    for (const mfn of [ro, rw]) {
      expect(m.ft.state(mfn)).toBe(PS.FREE);
      expect(m.ft.owner(mfn)).toBe(-1);
      expect(m.reach.may(mfn, 1)).toBe(false);
    }
    expect(p2mGet(m, 1, 12)).toBe(P2M_HOLE);
    expect(p2mGet(m, 1, 13)).toBe(P2M_HOLE);
    expect(tot(m, 1)).toBe(62);
    // Another owner's page in the caller's p2m: a foreign map, a grant map.
    expect(foreignMap(m, 1, 2, 3, 150)).toBe(0);
    guestGrantAccess(m, 2, 4, 1, 4, false);
    expect(mapGrantRef(m, 1, { dom: domid(2), ref: grantRef(4), host_gfn: gfn(151), readonly: false }).status).toBe(GNTST_okay);
    let ram = 14;
    for (const g of [150, 151, 100, 101, 102, 103, 110]) {
      const e = p2mGet(m, 1, g);
      expect(decreaseReservation(m, 1, [g]), `${g}`).toBe(-EINVAL);
      expect(decreaseReservation(m, 1, [ram++, g, ram]), `${g}`).toBe(1);
      expect(p2mGet(m, 1, g)).toBe(e);
      expect(p2mHeld1(m)).toBe(false);
    }
    expect(m.ft.count(mfnAt(m, 2, 3))).toBe(2);
    expect(m.ft.owner(mfnAt(m, 2, 3))).toBe(2);
    expect(tot(m, 1)).toBe(55);
    expect(tot(m, 2)).toBe(32);
    clean(m);
    destroyAll(m);
  });

  it('populate_physmap over ram_ro replaces it as over ram_rw (p2m_add_page)', () => {
    const m = machine();
    expect(dmSetMemType(m, 0, 1, 12, 1, P2M.ram_ro)).toBe(0);
    const old = mfnAt(m, 1, 12);
    expect(populatePhysmap(m, 1, [12])).toBe(1);
    expect(entryType(p2mGet(m, 1, 12))).toBe(P2M.ram_rw);
    expect(mfnAt(m, 1, 12)).not.toBe(old);
    expect(m.ft.owner(old)).toBe(1); // p2m_add_page keeps the old page allocated
    expect(tot(m, 1)).toBe(65);
    clean(m);
    destroyAll(m);
  });

  it('populate_physmap\'s refusals take nothing: over a special entry (crash) or with the old answers (EEXIST)', () => {
    const m = machine('memop-errno-per-call');
    guestGrantAccess(m, 2, 4, 1, 4, false);
    expect(mapGrantRef(m, 1, { dom: domid(2), ref: grantRef(4), host_gfn: gfn(151), readonly: false }).status).toBe(GNTST_okay);
    const e = p2mGet(m, 1, 151);
    expect(populatePhysmap(m, 1, [151])).toBe(-EPERM);
    expect(m.dom.state(1)).toBe(DS.CRASHED);
    expect(p2mGet(m, 1, 151)).toBe(e);
    expect(tot(m, 1)).toBe(64);
    expect(p2mHeld1(m)).toBe(false);
    clean(m);
    for (const bug of ['occupied-gfn-eexist', 'mapped-gfn-distinguishable'] as const) {
      const b = machine(`${bug},memop-errno-per-call`);
      const gfns = bug === 'occupied-gfn-eexist' ? [7, 100, 103] : [101, 102];
      for (const g of gfns) {
        const before = p2mGet(b, 1, g);
        expect(populatePhysmap(b, 1, [g]), `${bug} ${g}`).toBe(-EEXIST);
        expect(p2mGet(b, 1, g)).toBe(before);
        expect(tot(b, 1)).toBe(64);
        expect(b.dom.state(1)).toBe(DS.RUNNING);
        expect(p2mHeld1(b)).toBe(false);
      }
      clean(b);
    }
  });

  it('remove_from_physmap: -ENOENT for what get_page_from_gfn will not take (a grant map, MMIO, Map\'d, revoked, a hole); foreign maps and own RAM (rw or ro) go', () => {
    const m = machine();
    guestGrantAccess(m, 2, 4, 1, 4, false);
    expect(mapGrantRef(m, 1, { dom: domid(2), ref: grantRef(4), host_gfn: gfn(151), readonly: false }).status).toBe(GNTST_okay);
    for (const g of [151, 100, 101, 102, 103, 110, 2 ** 24]) {
      const e = g < 2 ** 24 ? p2mGet(m, 1, g) : 0;
      expect(removeFromPhysmap(m, 1, g), `${g}`).toBe(-ENOENT);
      if (g < 2 ** 24) expect(p2mGet(m, 1, g)).toBe(e);
      expect(p2mHeld1(m)).toBe(false);
    }
    expect(dmSetMemType(m, 0, 1, 12, 1, P2M.ram_ro)).toBe(0);
    const ro = mfnAt(m, 1, 12);
    expect(removeFromPhysmap(m, 1, 12)).toBe(0);
    expect(p2mGet(m, 1, 12)).toBe(P2M_HOLE);
    expect(m.ft.owner(ro)).toBe(1); // allocated until the domain dies
    expect(tot(m, 1)).toBe(64);
    clean(m);
    destroyAll(m);
  });

  it('remove_from_physmap of a grant map of the caller\'s own grant: -ENOENT, the entry stays (get_page_from_mfn_and_type takes RAM and foreign types only)', () => {
    const m = machine();
    guestGrantAccess(m, 1, 2, 1, 6, false);
    expect(mapGrantRef(m, 1, { dom: domid(1), ref: grantRef(2), host_gfn: gfn(150), readonly: false }).status).toBe(GNTST_okay);
    const e = p2mGet(m, 1, 150);
    expect(m.ft.owner(entryMfn(e))).toBe(1);
    expect(removeFromPhysmap(m, 1, 150)).toBe(-ENOENT);
    expect(p2mGet(m, 1, 150)).toBe(e);
    expect(m.ft.count(entryMfn(e))).toBe(2);
    expect(tot(m, 1)).toBe(64);
    clean(m);
  });

  it('remove_from_physmap with the old answers: -EINVAL for a grant map, MMIO and past the p2m; Map\'d or revoked -EINVAL when distinguishable; a foreign map only drops its reference', () => {
    const m = machine('memop-errno-per-call');
    guestGrantAccess(m, 2, 4, 1, 4, false);
    expect(mapGrantRef(m, 1, { dom: domid(2), ref: grantRef(4), host_gfn: gfn(151), readonly: false }).status).toBe(GNTST_okay);
    expect(removeFromPhysmap(m, 1, 151)).toBe(-EINVAL);
    expect(removeFromPhysmap(m, 1, 110)).toBe(-ENOENT);
    for (const g of [100, 101, 102, 103]) expect(removeFromPhysmap(m, 1, g), `${g}`).toBe(-ENOENT); // Map'd answer as a hole
    const d = machine('mapped-gfn-distinguishable');
    for (const g of [100, 101, 102, 103]) expect(removeFromPhysmap(d, 1, g), `${g}`).toBe(-EINVAL);
    expect(removeFromPhysmap(d, 1, 110)).toBe(-ENOENT);
    expect(removeFromPhysmap(d, 1, 2 ** 24)).toBe(-ENOENT);
    const o = machine('occupied-gfn-eexist');
    const mfn = mfnAt(o, 2, 3);
    expect(foreignMap(o, 1, 2, 3, 150)).toBe(0);
    expect(removeFromPhysmap(o, 1, 150)).toBe(0);
    expect(o.ft.count(mfn)).toBe(1);
    expect(o.ft.owner(mfn)).toBe(2);
    expect(tot(o, 2)).toBe(32);
    expect(tot(o, 1)).toBe(64);
    clean(o);
  });
});
