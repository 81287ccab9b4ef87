/**
 * Return's paths its first mutation run found untested (docs/verification.md
 * §8), from docs/primitives.md "Return" and "Order of the changes": traced,
 * a frontend gone between the checks and the registry lock, the scenario
 * runner's first phase (dmReturnRevokePhase), the per-page checks' halves,
 * -E2BIG and -ENOMEM before anything changes, the freeze's rollback
 * (steal_page's cmpxchg failing on a racing reference), which Maps of the
 * backend's gfns go (and their nested children), and what each BUGGIFY
 * switch of Return does on one thread.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { testMachine } from '../../../tests/test-machine.js';
import type { Machine } from '../../xen/machine.js';
import { dmMap } from './map.js';
import { dmRevoke } from './revoke.js';
import { dmReturn, dmReturnRevokePhase } from './return.js';
import { dmSteal } from './steal.js';
import { registryOf } from './common.js';
import { E2BIG, EBUSY, EEXIST, EINVAL, ENOMEM, ESRCH, GNTST_okay } from '../../public/errno.js';
import { P2M, domid, gfn, grantRef } from '../../public/types.js';
import { p2mGet, p2mLock, p2mSetLocked, p2mUnlock } from '../../xen/p2m.js';
import { entryMfn, entryType, p2mEntry, P2M_REVOKED } from '../../layout/p2m.js';
import { PGC_allocated } from '../../layout/frametable.js';
import { DOM } from '../../layout/domains.js';
import { domainCreate, domainDestroy, populateRange } from '../../xen/domain.js';
import { decreaseReservation } from '../../xen/memory.js';
import { guestGrantAccess, mapGrantRef } from '../../xen/grant-table.js';
import { armHook, disarmHooks } from '../../xen/hooks.js';
import { clearTracer, hostRing, setHostTracer } from '../../xen/trace.js';
import { EV, extraOf, kindOf, PRIM, RING, TK } from '../../layout/trace.js';
import { expectClean } from '../../../tests/expect-clean.js';

const mfnOf = (m: Machine, d: number, g: number): number => entryMfn(p2mGet(m, d, g));
const typeAt = (m: Machine, d: number, g: number): number => entryType(p2mGet(m, d, g));
const clean = (m: Machine): void => expectClean(m);
/** What a refusal must leave as it was: d0–d2's p2ms around the gfns used, the counts of the frames there, quotas, live records. */
function snapshot(m: Machine): unknown {
  const p2m = [0, 1, 2].map((d) => Array.from({ length: 320 }, (_, g) => p2mGet(m, d, g)));
  const counts = [0, 1, 2].map((d) => [10, 11, 12, 200, 201, 202].map((g) => (entryMfn(p2mGet(m, d, g)) >= 0 ? m.ft.countInfo(mfnOf(m, d, g)) : -1)));
  const quotas = [0, 1, 2].map((d) => [m.dom.at(d, DOM.TOT_PAGES), m.dom.at(d, DOM.MAX_PAGES)]);
  return { p2m, counts, quotas, owners: [200, 201].map((g) => m.ft.owner(mfnOf(m, 0, g))), live: registryOf(m).activeCount() };
}

afterEach(() => {
  disarmHooks();
  clearTracer();
});

describe('Return', () => {
  it('traced, it answers as untraced and leaves a begin and an end event', () => {
    const m = testMachine({ trace: { rings: 2, ring_events: 64 } });
    const t = m.trace!;
    const mfn = mfnOf(m, 1, 10);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 }).rc).toBe(0);
    setHostTracer(t);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 })).toEqual({ rc: 0, index: -1, id: 0 });
    clearTracer();
    expect([m.ft.owner(mfn), mfnOf(m, 1, 10), typeAt(m, 1, 10)]).toEqual([1, mfn, P2M.ram_rw]);
    const ring = hostRing(t);
    const head = Atomics.load(t.rings, t.ringIdx(ring, RING.HEAD));
    const evs = Array.from({ length: head }, (_, i) => t.eventIdx(ring, i)).map((i) => [kindOf(t.ev[i + EV.KIND]!), extraOf(t.ev[i + EV.KIND]!), t.ev[i + EV.A]!, t.ev[i + EV.B]!]);
    const ofReturn = evs.filter(([k, x]) => (k === TK.PRIM_B || k === TK.PRIM_E) && x === PRIM.RETURN);
    expect(ofReturn.map(([k, , a]) => [k, a])).toEqual([
      [TK.PRIM_B, 1],
      [TK.PRIM_E, 0],
    ]);
    expect(ofReturn[0]![3]).toBe(2);
    clean(m);
  });

  it('a frontend destroyed between the checks and the registry lock: -ESRCH, the pages stay the backend\'s (notDying under the lock)', () => {
    const m = testMachine();
    const mfn = mfnOf(m, 1, 10);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 }).rc).toBe(0);
    armHook('return.after_checks', () => expect(domainDestroy(m, 1)).toBe(0));
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 })).toEqual({ rc: -ESRCH, index: -1, id: 0 });
    // docs/primitives.md "Life cycle": a frontend that dies leaves its stolen pages the backend's.
    expect([m.ft.owner(mfn), mfnOf(m, 0, 200), typeAt(m, 0, 200)]).toEqual([0, mfn, P2M.ram_rw]);
  });

  it('per page, be\'s entry must be ram_rw: a stolen frame be maps read-only is -EINVAL, nothing changes', () => {
    const m = testMachine();
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 }).rc).toBe(0);
    const mfn = mfnOf(m, 0, 201);
    p2mLock(m, 0, 'test');
    p2mSetLocked(m, 0, 201, p2mEntry(mfn, P2M.ram_ro));
    p2mUnlock(m, 0);
    const before = snapshot(m);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 })).toEqual({ rc: -EINVAL, index: 1, id: 0 });
    expect(snapshot(m)).toEqual(before);
    p2mLock(m, 0, 'test');
    p2mSetLocked(m, 0, 201, p2mEntry(mfn, P2M.ram_rw));
    p2mUnlock(m, 0);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 }).rc).toBe(0);
    clean(m);
  });

  it('a read-only grant map of a stolen page is a reference Return does not revoke: -EBUSY (a count above the Maps\', no type count)', () => {
    const m = testMachine();
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 }).rc).toBe(0);
    guestGrantAccess(m, 0, 5, 2, 200, true);
    expect(mapGrantRef(m, 2, { dom: domid(0), ref: grantRef(5), host_gfn: gfn(150), readonly: true }).status).toBe(GNTST_okay);
    expect(m.ft.typeCount(mfnOf(m, 0, 200))).toBe(0);
    const before = snapshot(m);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 })).toEqual({ rc: -EBUSY, index: 0, id: 0 });
    expect(snapshot(m)).toEqual(before);
  });

  it('checks 1–4 go page by page: a busy first page is -EBUSY at 0 even when the second page\'s gfn is occupied', () => {
    const m = testMachine();
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 }).rc).toBe(0);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 101 }).rc).toBe(0); // occupies the second `at`
    guestGrantAccess(m, 0, 5, 2, 200, true);
    expect(mapGrantRef(m, 2, { dom: domid(0), ref: grantRef(5), host_gfn: gfn(150), readonly: true }).status).toBe(GNTST_okay);
    const before = snapshot(m);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2, at: 100 })).toEqual({ rc: -EBUSY, index: 0, id: 0 });
    expect(dmReturn(m, 0, { fe: 1, gfn: 201, count: 1, at: 101 })).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    expect(snapshot(m)).toEqual(before);
  });

  it('fe\'s own grant mapping of the stolen frame at the return gfn is no Map of it: -EEXIST, not -EBUSY', () => {
    const m = testMachine();
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 }).rc).toBe(0);
    guestGrantAccess(m, 0, 5, 1, 200, true);
    expect(mapGrantRef(m, 1, { dom: domid(0), ref: grantRef(5), host_gfn: gfn(150), readonly: true }).status).toBe(GNTST_okay);
    expect(mfnOf(m, 1, 150)).toBe(mfnOf(m, 0, 200));
    const before = snapshot(m);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1, at: 150 })).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    expect(snapshot(m)).toEqual(before);
  });

  it('a Map be made of a stolen page at its return gfn since the implicit one went is "a Map of this very frame": revoked, and the page returned', () => {
    const m = testMachine();
    const mfn = mfnOf(m, 1, 10);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 }).rc).toBe(0);
    expect(dmRevoke(m, 0, { fe: 1, gfn: 10, count: 1 })).toBe(0);
    const again = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 200 }, count: 1, at: 10 });
    expect(again.rc).toBe(0);
    expect(m.ft.count(mfn)).toBe(2);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 }).rc).toBe(0);
    expect([typeAt(m, 1, 10), mfnOf(m, 1, 10), m.ft.owner(mfn), m.ft.count(mfn)]).toEqual([P2M.ram_rw, mfn, 1, 1]);
    expect(registryOf(m).activeCount()).toBe(0);
    clean(m);
  });

  it('-E2BIG (steal-keeps-quota: the quota stayed with fe) when fe\'s tot_pages + count would pass its max_pages; up to it exactly is fine', () => {
    const m = testMachine({ bugs: 'steal-keeps-quota', domains: [{ memory_pages: 64, max_pages: 66, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 0 }] });
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 }).rc).toBe(0);
    expect(populateRange(m, 1, 100, 2)).toBe(0); // fe fills its quota again: 64 of 64
    const before = snapshot(m);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 })).toEqual({ rc: -E2BIG, index: -1, id: 0 });
    expect(snapshot(m)).toEqual(before);
    expect(decreaseReservation(m, 1, [100])).toBe(1); // 63 of 64: one page fits, two do not
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 })).toEqual({ rc: -E2BIG, index: -1, id: 0 });
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 }).rc).toBe(0);
    expect([m.dom.at(1, DOM.TOT_PAGES), m.dom.at(1, DOM.MAX_PAGES)]).toEqual([64, 64]);
  });

  it('no table page left for fe\'s entry at a far `at`: -ENOMEM before anything changes (p2m_set_entry failing); the default `at` fits', () => {
    // d2 (fe, backend d1) has a share of three table pages, all in use: a far gfn needs two more.
    const m = testMachine({ domains: [{ memory_pages: 16, privileged: true }] });
    expect(domainCreate(m, { domid: 1, max_pages: 64, nr_vcpus: 1, privileged: false, p2m_pages: 3 })).toBe(1);
    expect(domainCreate(m, { domid: 2, max_pages: 16, nr_vcpus: 1, privileged: false, p2m_pages: 3, backend: 1 })).toBe(2);
    expect(populateRange(m, 1, 0, 4)).toBe(0);
    expect(populateRange(m, 2, 0, 16)).toBe(0);
    const mfn = mfnOf(m, 2, 10);
    expect(dmSteal(m, 1, { fe: 2, gfn: 10, count: 1, into: 100 }).rc).toBe(0);
    const before = [m.dom.at(1, DOM.TOT_PAGES), m.dom.at(2, DOM.TOT_PAGES), m.ft.owner(mfn), p2mGet(m, 1, 100), p2mGet(m, 2, 10), m.ft.countInfo(mfn)];
    expect(dmReturn(m, 1, { fe: 2, gfn: 100, count: 1, at: 0x800000 })).toEqual({ rc: -ENOMEM, index: -1, id: 0 });
    expect([m.dom.at(1, DOM.TOT_PAGES), m.dom.at(2, DOM.TOT_PAGES), m.ft.owner(mfn), p2mGet(m, 1, 100), p2mGet(m, 2, 10), m.ft.countInfo(mfn)]).toEqual(before);
    expect(typeAt(m, 2, 10)).toBe(P2M.mmio_direct);
    expect(dmReturn(m, 1, { fe: 2, gfn: 100, count: 1 }).rc).toBe(0);
    expect([typeAt(m, 2, 10), m.ft.owner(mfn)]).toEqual([P2M.ram_rw, 2]);
  });

  it('a reference taken between the checks and the freeze (a racer\'s get_page): -EBUSY at that page, the counts frozen before it restored, nothing changed', () => {
    const m = testMachine();
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 3, into: 200 }).rc).toBe(0);
    const mfns = [200, 201, 202].map((g) => mfnOf(m, 0, g));
    const before = snapshot(m);
    const cas = m.ft.casCount.bind(m.ft);
    // The racer: one get_page on the third frame just before Return's cmpxchg of it.
    m.ft.casCount = (mfn, expected, value): boolean => {
      if (mfn === mfns[2]) m.ft.storeCount(mfn, m.ft.countInfo(mfn) + 1);
      return cas(mfn, expected, value);
    };
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 3 })).toEqual({ rc: -EBUSY, index: 2, id: 0 });
    m.ft.casCount = cas;
    expect(mfns.map((f) => m.ft.countInfo(f))).toEqual([PGC_allocated | 2, PGC_allocated | 2, PGC_allocated | 3]);
    m.ft.storeCount(mfns[2]!, PGC_allocated | 2); // the racer's put_page
    expect(snapshot(m)).toEqual(before);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 3 }).rc).toBe(0);
    clean(m);
  });

  it('every Map of the returned backend gfns goes, with the nested Maps made from it; Maps of the other stolen pages stay', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 2 }] });
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 3, into: 200 }).rc).toBe(0);
    const [a, b, c] = [200, 201, 202].map((g) => mfnOf(m, 0, g)) as [number, number, number];
    expect(dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 200 }, count: 3, at: 100 }).rc).toBe(0);
    expect(dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 202 }, count: 1, at: 110 }).rc).toBe(0);
    expect(dmMap(m, 2, { fe: 3, source: { kind: 'ram', gfn: 101 }, count: 1, at: 300 }).rc).toBe(0); // nested, of b
    expect([a, b, c].map((f) => m.ft.count(f))).toEqual([3, 4, 4]);
    // The middle page: its page of the 3-page Map and the nested Map go; the rest stay.
    expect(dmReturn(m, 0, { fe: 1, gfn: 201, count: 1 }).rc).toBe(0);
    expect([p2mGet(m, 2, 101), p2mGet(m, 3, 300)]).toEqual([P2M_REVOKED, P2M_REVOKED]);
    expect([typeAt(m, 2, 100), typeAt(m, 2, 102), typeAt(m, 2, 110)]).toEqual([P2M.mmio_direct, P2M.mmio_direct, P2M.mmio_direct]);
    expect([typeAt(m, 1, 11), typeAt(m, 1, 10), typeAt(m, 1, 12)]).toEqual([P2M.ram_rw, P2M.mmio_direct, P2M.mmio_direct]);
    expect([a, b, c].map((f) => m.ft.count(f))).toEqual([3, 1, 4]);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 }).rc).toBe(0);
    expect([p2mGet(m, 2, 100), typeAt(m, 2, 102), typeAt(m, 2, 110)]).toEqual([P2M_REVOKED, P2M.mmio_direct, P2M.mmio_direct]);
    expect(dmReturn(m, 0, { fe: 1, gfn: 202, count: 1 }).rc).toBe(0);
    expect([p2mGet(m, 2, 102), p2mGet(m, 2, 110)]).toEqual([P2M_REVOKED, P2M_REVOKED]);
    expect([a, b, c].map((f) => [m.ft.owner(f), m.ft.count(f)])).toEqual([
      [1, 1],
      [1, 1],
      [1, 1],
    ]);
    clean(m);
  });
});

describe('dmReturnRevokePhase (the scenario runner\'s split Return)', () => {
  it('if every check passes, every Map of the pages is revoked and nothing else changes; a refused Return revokes nothing', () => {
    const m = testMachine();
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 }).rc).toBe(0);
    const mfns = [200, 201].map((g) => mfnOf(m, 0, g));
    expect(dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 201 }, count: 1, at: 100 }).rc).toBe(0);
    const before = snapshot(m);
    dmReturnRevokePhase(m, 0, { fe: 1, gfn: 200, count: 0 }); // count: -EINVAL
    dmReturnRevokePhase(m, 2, { fe: 1, gfn: 200, count: 2 }); // d2 has no authority over d1: -EPERM
    dmReturnRevokePhase(m, 0, { fe: 1, gfn: 200, count: 2, at: 20 }); // fe's RAM at 20: -EEXIST
    dmReturnRevokePhase(m, 0, { fe: 1, gfn: 200, count: 3 }); // 202 is no stolen page: -EINVAL
    expect(snapshot(m)).toEqual(before);
    dmReturnRevokePhase(m, 0, { fe: 1, gfn: 200, count: 2 });
    expect([p2mGet(m, 1, 10), p2mGet(m, 1, 11), p2mGet(m, 2, 100)]).toEqual([P2M_REVOKED, P2M_REVOKED, P2M_REVOKED]);
    // Not yet returned: be owns the frames and maps them; only the Maps' references went.
    expect(mfns.map((f) => [m.ft.owner(f), m.ft.count(f)])).toEqual([
      [0, 1],
      [0, 1],
    ]);
    expect([mfnOf(m, 0, 200), mfnOf(m, 0, 201)]).toEqual(mfns);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 }).rc).toBe(0);
    expect([typeAt(m, 1, 10), typeAt(m, 1, 11), mfnOf(m, 1, 10), mfnOf(m, 1, 11)]).toEqual([P2M.ram_rw, P2M.ram_rw, ...mfns]);
    clean(m);
  });
});

describe('Return\'s BUGGIFY switches, on one thread', () => {
  it('return-revoke-before-checks: only the implicit Map may sit at the return gfn (-EEXIST for a re-Map), and a reference makes it -EBUSY with the Maps already gone', () => {
    const m = testMachine({ bugs: 'return-revoke-before-checks' });
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 }).rc).toBe(0);
    expect(dmRevoke(m, 0, { fe: 1, gfn: 10, count: 1 })).toBe(0);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 200 }, count: 1, at: 10 }).rc).toBe(0);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 })).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    // With the implicit Maps in place it returns, as without the bug.
    const mfns = [12, 13].map((g) => mfnOf(m, 1, g));
    expect(dmSteal(m, 0, { fe: 1, gfn: 12, count: 2, into: 210 }).rc).toBe(0);
    expect(dmReturn(m, 0, { fe: 1, gfn: 210, count: 2 }).rc).toBe(0);
    expect(mfns.map((f) => [m.ft.owner(f), m.ft.count(f)])).toEqual([
      [1, 1],
      [1, 1],
    ]);
    // A grant map of the second page: the freeze fails at it after the revocations; the first count is restored.
    const s = [14, 15].map((g) => mfnOf(m, 1, g));
    expect(dmSteal(m, 0, { fe: 1, gfn: 14, count: 2, into: 220 }).rc).toBe(0);
    guestGrantAccess(m, 0, 5, 2, 221, true);
    expect(mapGrantRef(m, 2, { dom: domid(0), ref: grantRef(5), host_gfn: gfn(150), readonly: true }).status).toBe(GNTST_okay);
    expect(dmReturn(m, 0, { fe: 1, gfn: 220, count: 2 })).toEqual({ rc: -EBUSY, index: 1, id: 0 });
    expect([p2mGet(m, 1, 14), p2mGet(m, 1, 15)]).toEqual([P2M_REVOKED, P2M_REVOKED]);
    expect(s.map((f) => [m.ft.owner(f), m.ft.countInfo(f)])).toEqual([
      [0, PGC_allocated | 1],
      [0, PGC_allocated | 2],
    ]);
  });

  it('without return-revoke-before-checks, the same references: -EBUSY with the Maps in place', () => {
    const m = testMachine();
    expect(dmSteal(m, 0, { fe: 1, gfn: 14, count: 2, into: 220 }).rc).toBe(0);
    guestGrantAccess(m, 0, 5, 2, 221, true);
    expect(mapGrantRef(m, 2, { dom: domid(0), ref: grantRef(5), host_gfn: gfn(150), readonly: true }).status).toBe(GNTST_okay);
    expect(dmReturn(m, 0, { fe: 1, gfn: 220, count: 2 })).toEqual({ rc: -EBUSY, index: 1, id: 0 });
    expect([typeAt(m, 1, 14), typeAt(m, 1, 15)]).toEqual([P2M.mmio_direct, P2M.mmio_direct]);
  });

  it('without steal-record-by-gfn, a page be put where a Steal once put one is no stolen page: -EINVAL (stealOf: the frame, not the gfn)', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 0 }] });
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 });
    expect(dmRevoke(m, 0, { id: s.id })).toBe(0);
    expect(decreaseReservation(m, 0, [200])).toBe(1);
    expect(populateRange(m, 0, 201, 1)).toBe(0);
    expect(populateRange(m, 0, 200, 1)).toBe(0);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 })).toEqual({ rc: -EINVAL, index: 0, id: 0 });
    expect(m.ft.owner(mfnOf(m, 0, 200))).toBe(0);
  });

  it('steal-record-by-gfn: a page be put where a Steal once put one is taken for the stolen page; another frontend or a never-stolen gfn is still -EINVAL', () => {
    const m = testMachine({ bugs: 'steal-record-by-gfn', domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 0 }] });
    const stolen = mfnOf(m, 1, 10);
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 });
    expect(dmRevoke(m, 0, { id: s.id })).toBe(0);
    expect(decreaseReservation(m, 0, [200])).toBe(1); // the Steal is over
    expect(populateRange(m, 0, 201, 1)).toBe(0); // takes the freed frame back
    expect(populateRange(m, 0, 200, 1)).toBe(0);
    const fresh = mfnOf(m, 0, 200);
    expect(fresh).not.toBe(stolen);
    expect(dmReturn(m, 0, { fe: 2, gfn: 200, count: 1 })).toEqual({ rc: -EINVAL, index: 0, id: 0 });
    expect(dmReturn(m, 0, { fe: 1, gfn: 4, count: 1 })).toEqual({ rc: -EINVAL, index: 0, id: 0 });
    // The bug: the fresh page "goes back" to fe's gfn 10.
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 }).rc).toBe(0);
    expect([mfnOf(m, 1, 10), m.ft.owner(fresh)]).toEqual([fresh, 1]);
  });

  it('return-leaves-other-mapping: a Map be made of the page into another frontend stays live; without it, it is revoked', () => {
    for (const bugs of ['return-leaves-other-mapping', '']) {
      const m = testMachine({ bugs });
      const mfn = mfnOf(m, 1, 10);
      expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 }).rc).toBe(0);
      // The implicit Map goes; be re-Maps only the first page into fe, and the second into d2.
      expect(dmRevoke(m, 0, { fe: 1, gfn: 10, count: 2 })).toBe(0);
      expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 200 }, count: 1, at: 10 }).rc).toBe(0);
      expect(dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 201 }, count: 1, at: 100 }).rc).toBe(0);
      expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 }).rc).toBe(0);
      expect([typeAt(m, 1, 10), mfnOf(m, 1, 10)]).toEqual([P2M.ram_rw, mfn]);
      // The re-Map at a return gfn goes either way; the Map into d2 only without the bug.
      expect(registryOf(m).activeCount()).toBe(bugs === '' ? 0 : 1);
      expect(p2mGet(m, 2, 100) === P2M_REVOKED).toBe(bugs === '');
    }
  });
});
