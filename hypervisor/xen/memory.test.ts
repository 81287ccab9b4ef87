/**
 * memory.ts as Xen's source has it (docs/decisions.md, "Hypercall
 * semantics"): memory_op's extent counts, a Map'd or revoked gfn answering
 * as a hole, populate over occupied gfns (p2m_add_page), foreign maps
 * (p2m_add_foreign), remove_from_physmap; and each BUGGIFY switch putting
 * the old behaviour back.
 */
import { describe, expect, it } from 'vitest';
import { EEXIST, EFAULT, EINVAL, ENOENT, ENXIO, EPERM, ESRCH, E2BIG, GNTST_okay } from '../public/errno.js';
import { domid, gfn, grantRef, P2M } from '../public/types.js';
import { testMachine } from '../../tests/test-machine.js';
import { bufferCopy, decreaseReservation, foreignMap, populatePhysmap, removeFromPhysmap } from './memory.js';
import { designOf } from './design.js';
import { domainCrash } from './domain-crash.js';
import { domainDestroy } from './domain.js';
import { guestGrantAccess, mapGrantRef } from './grant-table.js';
import { p2mGet } from './p2m.js';
import { entryMfn, entryType, P2M_HOLE, P2M_REVOKED } from '../layout/p2m.js';
import { DOM, DS } from '../layout/domains.js';
import type { Machine } from './machine.js';
import { expectAllDestroyed, expectClean } from '../../tests/expect-clean.js';

const tot = (m: Machine, d: number): number => m.dom.at(d, DOM.TOT_PAGES);
const clean = (m: Machine): void => expectClean(m, { conserved: true });
const destroyAll = expectAllDestroyed;
const scratch = new Uint8Array(4 * 4096);

/**
 * d0 dom0; d1 a frontend of d0 with room above its quota; d2 a frontend of
 * d1 (d1 is its device model, unprivileged); a BAR of d0. d1 gets:
 * 100 Map'd mmio_direct, 101 Map'd mmio_dm, 102 revoked, 103 a BAR Map, 110 a hole.
 */
function machine(bugs?: string): Machine {
  const m = testMachine({
    domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, max_pages: 80, backend: 0 }, { memory_pages: 64, backend: 1 }],
    bars: [{ name: 'bar0', owner: 0, nr_pages: 4 }],
    ...(bugs !== undefined ? { bugs } : {}),
  });
  const map = (src: { kind: 'ram'; gfn: number } | { kind: 'bar'; mfn: number }, at: number, type: number = P2M.mmio_direct): number => {
    const r = designOf(m).map(m, 0, { fe: 1, source: src, count: 1, at, type: type as typeof P2M.mmio_direct });
    expect(r.rc).toBe(0);
    return r.id;
  };
  map({ kind: 'ram', gfn: 4 }, 100);
  map({ kind: 'ram', gfn: 5 }, 101, P2M.mmio_dm);
  const id = map({ kind: 'ram', gfn: 6 }, 102);
  expect(designOf(m).revoke(m, 0, { id })).toBe(0);
  map({ kind: 'bar', mfn: m.sabs.bars[0]!.base_mfn }, 103);
  expect(p2mGet(m, 1, 102)).toBe(P2M_REVOKED);
  return m;
}

describe('memory_op returns the extents done (do_memory_op: nr_done)', () => {
  it('a short count on the first failure, 0 if the first failed; never an errno', () => {
    const m = machine();
    expect(populatePhysmap(m, 1, [110, 111, 2 ** 24, 112])).toBe(2); // 2^24 is past the 36-bit space
    expect(decreaseReservation(m, 1, [110, 111, 112])).toBe(2); // 112 is a hole
    expect(decreaseReservation(m, 1, [112])).toBe(0);
    expect(populatePhysmap(m, 2, [110])).toBe(0); // d2 is at max_pages
    expect(tot(m, 1)).toBe(64);
    clean(m);
    destroyAll(m);
  });

  it('memop-errno-per-call: the failing extent\'s errno when none was done', () => {
    const m = machine('memop-errno-per-call');
    expect(populatePhysmap(m, 2, [110])).toBe(-E2BIG);
    expect(populatePhysmap(m, 1, [110, 2 ** 24])).toBe(1);
    expect(decreaseReservation(m, 1, [112])).toBe(-EINVAL);
    expect(removeFromPhysmap(m, 1, 2 ** 24)).toBe(-EINVAL);
  });
});

describe('a frontend\'s Map\'d and revoked gfns answer as a hole', () => {
  const gfns = { hole: 110, mmio_direct: 100, mmio_dm: 101, revoked: 102, bar: 103 };

  it('decrease_reservation, remove_from_physmap, hypercall copies, and a foreign map of them', () => {
    const m = machine();
    for (const [what, g] of Object.entries(gfns)) {
      expect(decreaseReservation(m, 1, [g]), what).toBe(0);
      expect(removeFromPhysmap(m, 1, g), what).toBe(-ENOENT);
      expect(bufferCopy(m, 1, 'from_guest', g, 0, 8, scratch), what).toBe(-EFAULT);
      expect(bufferCopy(m, 1, 'to_guest', g, 0, 8, scratch), what).toBe(-EFAULT);
      expect(foreignMap(m, 0, 1, g, 200), what).toBe(-EINVAL);
    }
    expect(entryType(p2mGet(m, 1, 100))).toBe(P2M.mmio_direct);
    expect(entryType(p2mGet(m, 1, 101))).toBe(P2M.mmio_dm);
    expect(p2mGet(m, 1, 102)).toBe(P2M_REVOKED);
    clean(m);
    destroyAll(m);
  });

  it('populate over mmio_dm or revoked: done and charged as for a hole; the mapping stays; the page goes with the domain', () => {
    const m = machine();
    const before101 = p2mGet(m, 1, 101);
    expect(populatePhysmap(m, 1, [110, 101, 102])).toBe(3);
    expect(tot(m, 1)).toBe(67);
    expect(p2mGet(m, 1, 101)).toBe(before101);
    expect(p2mGet(m, 1, 102)).toBe(P2M_REVOKED);
    // The backend can still Map over the revoked gfn, and Revoke the mmio_dm one.
    expect(designOf(m).map(m, 0, { fe: 1, source: { kind: 'ram', gfn: 6 }, count: 1, at: 102, type: P2M.mmio_direct }).rc).toBe(0);
    expect(designOf(m).revoke(m, 0, { fe: domid(1), gfn: gfn(101), count: 1 })).toBe(0);
    expect(p2mGet(m, 1, 101)).toBe(P2M_REVOKED);
    clean(m);
    destroyAll(m);
  });

  it('populate over mmio_direct (RAM or BAR) crashes the guest, as p2m_add_page does for a special entry', () => {
    for (const g of [100, 103]) {
      const m = machine();
      expect(populatePhysmap(m, 1, [110, g, 111])).toBe(1);
      expect(m.dom.state(1)).toBe(DS.CRASHED);
      expect(tot(m, 1)).toBe(65); // the crashing extent's page was given back
      expect(entryType(p2mGet(m, 1, g))).toBe(P2M.mmio_direct);
      clean(m);
      destroyAll(m);
    }
  });

  it('mapped-gfn-distinguishable: remove_from_physmap EINVAL, populate EEXIST', () => {
    const m = machine('mapped-gfn-distinguishable');
    expect(removeFromPhysmap(m, 1, 110)).toBe(-ENOENT);
    expect(removeFromPhysmap(m, 1, 100)).toBe(-EINVAL);
    expect(removeFromPhysmap(m, 1, 102)).toBe(-EINVAL);
    expect(populatePhysmap(m, 1, [101])).toBe(0);
    expect(tot(m, 1)).toBe(64);
  });
});

describe('populate over an occupied gfn and remove_from_physmap of RAM (p2m_add_page, XENMEM_remove_from_physmap)', () => {
  it('RAM is replaced by a fresh page; the old page stays allocated, unmapped, until the domain dies', () => {
    const m = machine();
    const old = entryMfn(p2mGet(m, 1, 7));
    m.frames.i32[(old * 4096) / 4] = 0x0dd;
    expect(populatePhysmap(m, 1, [7])).toBe(1);
    expect(entryMfn(p2mGet(m, 1, 7))).not.toBe(old);
    expect(m.frames.i32[(entryMfn(p2mGet(m, 1, 7)) * 4096) / 4]).toBe(0);
    expect(m.ft.owner(old)).toBe(1);
    expect(tot(m, 1)).toBe(65);
    expect(removeFromPhysmap(m, 1, 8)).toBe(0);
    expect(p2mGet(m, 1, 8)).toBe(P2M_HOLE);
    expect(tot(m, 1)).toBe(65);
    clean(m);
    destroyAll(m);
  });

  it('over a grant or foreign map the guest is crashed', () => {
    const m = machine();
    guestGrantAccess(m, 2, 3, 0, 9, false);
    expect(mapGrantRef(m, 0, { dom: domid(2), ref: grantRef(3), host_gfn: gfn(150), readonly: false }).status).toBe(GNTST_okay);
    expect(populatePhysmap(m, 0, [150])).toBe(0);
    expect(m.dom.state(0)).toBe(DS.CRASHED);
    clean(m);
  });

  it('occupied-gfn-eexist: populate over RAM or a special entry EEXIST; remove_from_physmap frees the RAM', () => {
    const m = machine('occupied-gfn-eexist');
    expect(populatePhysmap(m, 1, [7])).toBe(0);
    expect(populatePhysmap(m, 1, [100])).toBe(0);
    expect(m.dom.state(1)).toBe(DS.RUNNING);
    expect(removeFromPhysmap(m, 1, 8)).toBe(0);
    expect(tot(m, 1)).toBe(63);
  });
});

describe('foreign maps (p2m_add_foreign)', () => {
  it('dom0 or the target\'s device model; not itself; any domain that still exists', () => {
    const m = machine();
    expect(foreignMap(m, 1, 2, 3, 150)).toBe(0); // d1 is d2's device model (d->target)
    expect(foreignMap(m, 2, 1, 3, 150)).toBe(-EPERM); // not the other way round
    expect(foreignMap(m, 1, 0, 3, 151)).toBe(-EPERM);
    expect(foreignMap(m, 1, 1, 3, 151)).toBe(-EPERM); // rcu_lock_remote_domain_by_id: itself
    expect(foreignMap(m, 0, 0, 3, 151)).toBe(-EPERM);
    expect(foreignMap(m, 0, 7, 3, 151)).toBe(-ESRCH);
    expect(foreignMap(m, 0, 7, 3, 2 ** 24)).toBe(-ESRCH); // the source before the destination
    expect(foreignMap(m, 0, 2, 3, 2 ** 24)).toBe(-EINVAL);
    expect(domainCrash(m, 2, 'test')).toBe(true);
    expect(foreignMap(m, 0, 2, 4, 151)).toBe(0); // a crashed domain: core dumps
    expect(domainDestroy(m, 2)).toBe(0);
    expect(m.dom.state(2)).toBe(DS.ZOMBIE); // two of its pages are still mapped
    expect(foreignMap(m, 0, 2, 5, 152)).toBe(-EINVAL); // its p2m is gone
    expect(removeFromPhysmap(m, 1, 150)).toBe(0);
    expect(removeFromPhysmap(m, 0, 151)).toBe(0);
    expect(m.dom.state(2)).toBe(DS.FREE);
    expect(foreignMap(m, 0, 2, 5, 152)).toBe(-ESRCH);
    clean(m);
    destroyAll(m);
  });

  it('onto the caller\'s RAM the old page is freed; onto a grant or foreign map ENXIO', () => {
    const m = machine();
    const t0 = tot(m, 0);
    expect(foreignMap(m, 0, 2, 3, 9)).toBe(0);
    expect(entryType(p2mGet(m, 0, 9))).toBe(P2M.map_foreign);
    expect(tot(m, 0)).toBe(t0 - 1);
    expect(foreignMap(m, 0, 2, 4, 9)).toBe(-ENXIO);
    guestGrantAccess(m, 2, 3, 0, 9, false);
    expect(mapGrantRef(m, 0, { dom: domid(2), ref: grantRef(3), host_gfn: gfn(150), readonly: false }).status).toBe(GNTST_okay);
    expect(foreignMap(m, 0, 2, 4, 150)).toBe(-ENXIO);
    clean(m);
  });

  it('onto the caller\'s Map\'d or revoked gfn: a hole\'s answer, the mapping stays; onto a BAR Map the caller is crashed', () => {
    const m = machine();
    for (const g of [100, 101, 102]) {
      const before = p2mGet(m, 1, g);
      expect(foreignMap(m, 1, 2, 3, g)).toBe(0);
      expect(p2mGet(m, 1, g)).toBe(before);
    }
    expect(m.ft.count(entryMfn(p2mGet(m, 2, 3)))).toBe(1); // no reference kept
    expect(foreignMap(m, 1, 2, 3, 103)).toBe(-EPERM);
    expect(m.dom.state(1)).toBe(DS.CRASHED);
    clean(m);
    destroyAll(m);
  });

  it('foreign-map-old-rules: dom0 only, running sources only, itself allowed, onto RAM EEXIST', () => {
    const m = machine('foreign-map-old-rules');
    expect(foreignMap(m, 1, 2, 3, 150)).toBe(-EPERM);
    expect(foreignMap(m, 0, 2, 3, 9)).toBe(-EEXIST);
    expect(foreignMap(m, 0, 7, 3, 2 ** 24)).toBe(-EINVAL);
    expect(foreignMap(m, 0, 0, 3, 150)).toBe(0);
    expect(domainCrash(m, 2, 'test')).toBe(true);
    expect(foreignMap(m, 0, 2, 4, 151)).toBe(-ESRCH);
  });
});
