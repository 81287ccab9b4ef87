import { describe, expect, it } from 'vitest';
import { testMachine } from '../../../tests/test-machine.js';
import { dmMap } from './map.js';
import { dmReturn } from './return.js';
import { dmRevoke } from './revoke.js';
import { dmSteal } from './steal.js';
import { EBUSY, EEXIST, EFAULT, EINVAL, ENOENT, EPERM, ESRCH } from '../../public/errno.js';
import { GNTST_bad_page, GNTST_okay } from '../../public/errno.js';
import { P2M } from '../../public/types.js';
import { p2mGet } from '../../xen/p2m.js';
import { entryMfn, entryType, P2M_REVOKED } from '../../layout/p2m.js';
import { DOM } from '../../layout/domains.js';
import { checkNoLeaks, checkQuiescent } from '../../checker/checker.js';
import { bufferCopy, decreaseReservation, foreignMap } from '../../xen/memory.js';
import { guestGrantAccess, mapGrantRef } from '../../xen/grant-table.js';
import { domid, gfn, grantRef } from '../../public/types.js';
import { domainDestroy } from '../../xen/domain.js';

const word = (m: ReturnType<typeof testMachine>, d: number, g: number): number => {
  const mfn = entryMfn(p2mGet(m, d, g));
  return m.frames.i32[(mfn * m.config.page_size_bytes) / 4]!;
};
const setWord = (m: ReturnType<typeof testMachine>, d: number, g: number, v: number): void => {
  const mfn = entryMfn(p2mGet(m, d, g));
  m.frames.i32[(mfn * m.config.page_size_bytes) / 4] = v;
};
const clean = (m: ReturnType<typeof testMachine>): void => {
  checkQuiescent(m);
  expect(m.log.records()).toEqual([]);
};

describe('Map / Revoke', () => {
  it('maps backend RAM into the frontend as mmio_direct with a page reference, and Revoke takes it back', () => {
    const m = testMachine();
    setWord(m, 0, 4, 0x1234);
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 });
    expect(r.rc).toBe(0);
    expect(entryType(p2mGet(m, 1, 100))).toBe(P2M.mmio_direct);
    expect(word(m, 1, 100)).toBe(0x1234);
    expect(m.ft.count(entryMfn(p2mGet(m, 0, 4)))).toBe(2);
    clean(m);
    expect(dmRevoke(m, 0, { id: r.id })).toBe(0);
    expect(p2mGet(m, 1, 100)).toBe(P2M_REVOKED);
    expect(m.ft.count(entryMfn(p2mGet(m, 0, 4)))).toBe(1);
    expect(dmRevoke(m, 0, { id: r.id })).toBe(0); // idempotent
    expect(dmRevoke(m, 0, { id: 9999 })).toBe(-ENOENT);
    expect(dmRevoke(m, 2, { id: r.id })).toBe(-ENOENT); // not d2's mapping
    // A revoked gfn may be mapped again.
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(0);
    clean(m);
  });

  it('checks arguments, authority, source and destination in order, all or nothing', () => {
    const m = testMachine();
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 0, at: 100 }).rc).toBe(-EINVAL);
    expect(dmMap(m, 0, { fe: 9, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(-ESRCH);
    expect(dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(-EPERM);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100, type: P2M.ram_rw }).rc).toBe(-EINVAL);
    const bad = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 62 }, count: 4, at: 100 });
    expect(bad).toEqual({ rc: -EINVAL, index: 2, id: 0 });
    expect(p2mGet(m, 1, 100)).toBe(0);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 63 })).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    clean(m);
  });

  it('Map\'d gfns are not RAM to the frontend: copies, grants, foreign maps, balloon and Steal refuse them', () => {
    const m = testMachine();
    dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
    expect(bufferCopy(m, 1, 'from_guest', 100, 0, 8, new Uint8Array(16))).toBe(-EFAULT);
    guestGrantAccess(m, 1, 8, 2, 100, false);
    expect(mapGrantRef(m, 2, { dom: domid(1), ref: grantRef(8), host_gfn: gfn(120), readonly: false }).status).toBe(GNTST_bad_page);
    expect(foreignMap(m, 0, 1, 100, 130)).toBe(-EINVAL);
    expect(decreaseReservation(m, 1, [100])).toBe(0); // no extent done, as for a hole (memory.c decrease_reservation)
    expect(dmSteal(m, 0, { fe: 1, gfn: 100, count: 1, into: 200 }).rc).toBe(-EINVAL);
    clean(m);
  });

  it('BAR maps need the backend\'s iomem_caps, never the frontend\'s', () => {
    const m = testMachine({ bars: [{ name: 'gpu0', owner: 0, nr_pages: 8 }] });
    const base = m.sabs.bars[0]!.base_mfn;
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: base + 6 }, count: 4, at: 100 }).rc).toBe(-EINVAL);
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: base }, count: 2, at: 100 });
    expect(r.rc).toBe(0);
    expect(entryMfn(p2mGet(m, 1, 100))).toBe(base);
    const m2 = testMachine({ bars: [{ name: 'gpu0', owner: 1, nr_pages: 8 }], domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }] });
    expect(dmMap(m2, 0, { fe: 1, source: { kind: 'bar', mfn: m2.sabs.bars[0]!.base_mfn }, count: 1, at: 100 }).rc).toBe(-EPERM);
    expect(dmRevoke(m, 0, { id: r.id })).toBe(0);
    clean(m);
  });

  it('nested Maps are revoked transitively, and refused without transitive Revoke', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
    const a = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 });
    const b = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 100 }, count: 2, at: 110 });
    expect(b.rc).toBe(0);
    clean(m);
    expect(dmRevoke(m, 0, { id: a.id })).toBe(0);
    expect(p2mGet(m, 2, 110)).toBe(P2M_REVOKED);
    expect(m.ft.count(entryMfn(p2mGet(m, 0, 4)))).toBe(1);
    clean(m);
    const n = testMachine({ transitive_revoke: false, domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
    dmMap(n, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
    expect(dmMap(n, 1, { fe: 2, source: { kind: 'ram', gfn: 100 }, count: 1, at: 110 }).rc).toBe(-EPERM);
  });

  it('with revoke-skip-nested the orphaned nested mapping is caught', () => {
    const m = testMachine({ bugs: 'revoke-skip-nested', domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
    const a = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
    dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 100 }, count: 1, at: 110 });
    dmRevoke(m, 0, { id: a.id });
    checkQuiescent(m);
    expect(m.log.counts().no_use_after_revoke.violations).toBeGreaterThan(0);
  });
});

describe('Steal / Return', () => {
  it('moves ownership and quota, keeps contents, leaves the frontend an implicit Map, and Return undoes it', () => {
    const m = testMachine();
    setWord(m, 1, 10, 0xabc);
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 });
    expect(s.rc).toBe(0);
    expect(m.dom.at(1, DOM.TOT_PAGES)).toBe(63);
    expect(m.dom.at(0, DOM.TOT_PAGES)).toBe(65);
    expect(entryType(p2mGet(m, 1, 10))).toBe(P2M.mmio_direct);
    expect(word(m, 0, 200)).toBe(0xabc);
    expect(m.ft.owner(entryMfn(p2mGet(m, 0, 200)))).toBe(0);
    clean(m);
    setWord(m, 0, 200, 0xdef);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 }).rc).toBe(0);
    expect(entryType(p2mGet(m, 1, 10))).toBe(P2M.ram_rw);
    expect(word(m, 1, 10)).toBe(0xdef);
    expect(p2mGet(m, 0, 200)).toBe(0);
    expect(m.dom.at(1, DOM.TOT_PAGES)).toBe(64);
    clean(m);
  });

  it('refuses granted, referenced and non-RAM pages; the quota moves with the pages, there and back', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 65, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 0 }] });
    guestGrantAccess(m, 1, 8, 2, 10, false);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 })).toEqual({ rc: -EBUSY, index: 0, id: 0 });
    expect(foreignMap(m, 0, 1, 11, 150)).toBe(0);
    expect(dmSteal(m, 0, { fe: 1, gfn: 11, count: 1, into: 200 }).rc).toBe(-EBUSY);
    expect(dmSteal(m, 0, { fe: 1, gfn: 300, count: 1, into: 200 }).rc).toBe(-EINVAL);
    const quota = (): number[] => [m.dom.at(0, DOM.MAX_PAGES), m.dom.at(1, DOM.MAX_PAGES)];
    const before = quota();
    expect(dmSteal(m, 0, { fe: 1, gfn: 12, count: 2, into: 200 }).rc).toBe(0); // past dom0's own room: its quota grows
    expect(quota()).toEqual([before[0]! + 2, before[1]! - 2]);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 }).rc).toBe(0);
    expect(quota()).toEqual(before);
    expect(dmSteal(m, 0, { fe: 1, gfn: 12, count: 1, into: 5 }).rc).toBe(-EEXIST);
    expect(dmSteal(m, 0, { fe: 1, gfn: 12, count: 1 }).rc).toBe(0);
    expect(dmSteal(m, 0, { fe: 1, gfn: 12, count: 1 }).rc).toBe(-EINVAL); // stolen already
    expect(dmReturn(m, 0, { fe: 2, gfn: 64, count: 1 }).rc).toBe(-EINVAL); // stolen from d1, not d2
    clean(m);
  });

  it('Return revokes outstanding Maps of the stolen pages first', () => {
    const m = testMachine();
    dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 });
    const other = dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 200 }, count: 1, at: 100 });
    expect(other.rc).toBe(0);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 }).rc).toBe(0);
    expect(p2mGet(m, 2, 100)).toBe(P2M_REVOKED);
    clean(m);
  });

  it('with steal-skip-refcount-check a foreign-mapped page is stolen and the checker sees the lost reference', () => {
    const m = testMachine({ bugs: 'steal-skip-refcount-check' });
    foreignMap(m, 0, 1, 11, 150);
    expect(dmSteal(m, 0, { fe: 1, gfn: 11, count: 1, into: 200 }).rc).toBe(0);
    checkQuiescent(m);
    expect(m.log.counts().refcounts.violations).toBeGreaterThan(0);
  });

  it('with map-as-ram-rw the frontend gets RAM it does not own, and the checker says so', () => {
    const m = testMachine({ bugs: 'map-as-ram-rw' });
    dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
    checkQuiescent(m);
    expect(m.log.counts().mapped_not_ram.violations).toBeGreaterThan(0);
  });
});

describe('life cycle', () => {
  it('frontend and backend deaths with mappings and stolen pages leak nothing', () => {
    const m = testMachine();
    dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 });
    dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 });
    dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 5 }, count: 1, at: 100 });
    expect(domainDestroy(m, 1)).toBe(0);
    expect(m.ft.owner(entryMfn(p2mGet(m, 0, 200)))).toBe(0); // stolen pages stay the backend's
    expect(domainDestroy(m, 0)).toBe(0);
    expect(p2mGet(m, 2, 100)).toBe(P2M_REVOKED);
    clean(m);
    expect(domainDestroy(m, 2)).toBe(0);
    expect(checkNoLeaks(m)).toBe(true);
    expect(m.log.totalViolations()).toBe(0);
    void GNTST_okay;
  });
});
