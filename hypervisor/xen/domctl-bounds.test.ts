/**
 * domctl.ts at its bounds (xen/common/domctl.c): XEN_DOMCTL_max_mem's checks
 * and the ratchet it leaves, iomem_permission's range bounds, the crashed
 * domain it still finds and its BUGGIFY switch, destroydomain's two refusals.
 */
import { describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { DOM, DS } from '../layout/domains.js';
import { IOMEM_MFN_LIMIT } from '../layout/constants.js';
import { EINVAL, EPERM, ESRCH } from '../public/errno.js';
import { domainCrash } from './domain.js';
import { domctlDestroy, domctlIomemPermission, domctlMaxMem, iomemPermitted } from './domctl.js';
import { GLOBAL_LOCK, type Machine } from './machine.js';

const machine = (bugs = ''): Machine =>
  testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 16, backend: 0 }, { memory_pages: 16, backend: 0 }], bars: [{ name: 'gpu', owner: 0, nr_pages: 16 }], bugs });

describe('domctl max_mem', () => {
  it('refuses an unprivileged caller first, then a bad max, then a domain not running or crashed', () => {
    const m = machine();
    expect(domctlMaxMem(m, 1, 2, -1, )).toBe(-EPERM);
    expect(domctlMaxMem(m, 1, 9, 32)).toBe(-EPERM);
    expect(domctlMaxMem(m, 0, 9, 1.5)).toBe(-EINVAL);
    expect(domctlMaxMem(m, 0, 1, -1)).toBe(-EINVAL);
    expect(domctlMaxMem(m, 0, 1, NaN)).toBe(-EINVAL);
    for (const d of [-1, 1.5, m.nd, m.nd - 1, 9]) expect(domctlMaxMem(m, 0, d, 32), `d ${d}`).toBe(-ESRCH);
    expect(m.dom.at(1, DOM.MAX_PAGES)).toBe(16);
    m.dom.set(2, DOM.STATE, DS.DYING);
    expect(domctlMaxMem(m, 0, 2, 32)).toBe(-ESRCH);
    m.dom.set(2, DOM.STATE, DS.RUNNING);
    expect(domainCrash(m, 2, 'test')).toBe(true);
    expect(domctlMaxMem(m, 0, 2, 40)).toBe(0); // a crashed domain is still found
    expect(m.dom.at(2, DOM.MAX_PAGES)).toBe(40);
  });

  it('sets max_pages; below tot_pages the domain ratchets down, at or above it not', () => {
    const m = machine();
    expect(m.dom.at(1, DOM.TOT_PAGES)).toBe(16);
    expect(domctlMaxMem(m, 0, 1, 15)).toBe(0);
    expect([m.dom.at(1, DOM.MAX_PAGES), m.dom.at(1, DOM.RATCHET)]).toEqual([15, 1]);
    expect(domctlMaxMem(m, 0, 1, 16)).toBe(0);
    expect([m.dom.at(1, DOM.MAX_PAGES), m.dom.at(1, DOM.RATCHET)]).toEqual([16, 0]);
    expect(domctlMaxMem(m, 0, 1, 0)).toBe(0);
    expect([m.dom.at(1, DOM.MAX_PAGES), m.dom.at(1, DOM.RATCHET)]).toEqual([0, 1]);
    expect(domctlMaxMem(m, 0, 1, 100)).toBe(0);
    expect([m.dom.at(1, DOM.MAX_PAGES), m.dom.at(1, DOM.RATCHET)]).toEqual([100, 0]);
    expect(m.dom.at(2, DOM.MAX_PAGES)).toBe(16);
    expect(m.locks.heldCount()).toBe(0);
  });
});

describe('domctl iomem_permission', () => {
  it('a range up to IOMEM_MFN_LIMIT is looked at, one frame more is -EINVAL; whole numbers only', () => {
    const m = machine();
    const base = m.sabs.bars[0]!.base_mfn;
    expect(domctlIomemPermission(m, 0, 1, IOMEM_MFN_LIMIT - 2, 2, true)).toBe(-EPERM); // dom0 holds no such frames
    expect(domctlIomemPermission(m, 0, 1, IOMEM_MFN_LIMIT - 2, 3, true)).toBe(-EINVAL);
    expect(domctlIomemPermission(m, 1, 1, IOMEM_MFN_LIMIT - 2, 3, true)).toBe(-EINVAL); // the range before privilege
    expect(domctlIomemPermission(m, 0, 1, base + 0.5, 1, true)).toBe(-EINVAL);
    expect(domctlIomemPermission(m, 0, 1, base, 1.5, true)).toBe(-EINVAL);
    expect(domctlIomemPermission(m, 0, 1, base, -1, true)).toBe(-EINVAL);
    expect(domctlIomemPermission(m, 0, 1, 2 ** 64, 1, true)).toBe(-EINVAL);
    expect(domctlIomemPermission(m, 0, 1, base, 16, true)).toBe(0);
    expect(iomemPermitted(m, 1, base, 16)).toBe(true);
    expect(domctlIomemPermission(m, 0, 1, base + 15, 1, false)).toBe(0);
    expect([iomemPermitted(m, 1, base, 15), iomemPermitted(m, 1, base + 15, 1)]).toEqual([true, false]);
    expect(m.locks.heldCount()).toBe(0);
  });

  it('finds a crashed domain; an unprivileged caller is told -EPERM for an absent one, -EPERM after the checks for a present one', () => {
    const m = machine();
    const base = m.sabs.bars[0]!.base_mfn;
    expect(domainCrash(m, 1, 'test')).toBe(true);
    expect(domctlIomemPermission(m, 0, 1, base, 2, true)).toBe(0);
    expect(iomemPermitted(m, 1, base, 2)).toBe(true);
    expect(domctlIomemPermission(m, 2, 9, base, 2, true)).toBe(-EPERM);
    expect(domctlIomemPermission(m, 2, -1, base, 2, true)).toBe(-EPERM);
    expect(domctlIomemPermission(m, 0, m.nd, base, 2, true)).toBe(-ESRCH);
    expect(domctlIomemPermission(m, 2, 1, base, 2, false)).toBe(-EPERM);
    expect(iomemPermitted(m, 1, base, 2)).toBe(true);
    // The lookup comes first (do_domctl's rcu_lock_domain_by_id): an absent domain with a bad range too.
    expect(domctlIomemPermission(m, 0, 9, -1, 2, true)).toBe(-ESRCH);
    expect(domctlIomemPermission(m, 0, 9, base, 0, true)).toBe(-ESRCH);
    expect(domctlIomemPermission(m, 2, 9, base, 0, true)).toBe(-EPERM);
  });

  it('iomem-permission-unchecked-caller: the caller\'s own caps are not asked', () => {
    const good = machine();
    const bad = machine('iomem-permission-unchecked-caller');
    for (const m of [good, bad]) expect(iomemPermitted(m, 0, 5, 1)).toBe(false);
    expect(domctlIomemPermission(good, 0, 1, 5, 1, true)).toBe(-EPERM);
    expect(domctlIomemPermission(bad, 0, 1, 5, 1, true)).toBe(0);
    expect(iomemPermitted(bad, 1, 5, 1)).toBe(true);
    expect(domctlIomemPermission(bad, 1, 2, 5, 1, true)).toBe(-EPERM); // privilege is still asked
    // Frame 0 is a frame like any other: in range, refused only for the caps.
    expect(domctlIomemPermission(good, 0, 1, 0, 1, true)).toBe(-EPERM);
    expect(domctlIomemPermission(bad, 0, 1, 0, 1, true)).toBe(0);
    expect(iomemPermitted(bad, 1, 0, 1)).toBe(true);
  });
});

describe('domctl destroydomain', () => {
  it('refuses an unprivileged caller and the caller itself; otherwise destroys', () => {
    const m = machine();
    expect(domctlDestroy(m, 1, 2, -1)).toBe(-EPERM);
    expect(domctlDestroy(m, 1, 1, -1)).toBe(-EPERM);
    expect(domctlDestroy(m, 0, 0, -1)).toBe(-EINVAL);
    expect(m.dom.state(0)).toBe(DS.RUNNING);
    expect(m.dom.state(2)).toBe(DS.RUNNING);
    expect(domctlDestroy(m, 0, 9, -1)).toBe(-ESRCH);
    expect(domctlDestroy(m, 0, 2, -1)).toBe(0);
    expect(m.dom.state(2)).toBe(DS.FREE);
    expect(domctlDestroy(m, 0, 2, -1)).toBe(-ESRCH);
    expect(GLOBAL_LOCK.DOMCTL).toBeGreaterThanOrEqual(0);
  });
});
