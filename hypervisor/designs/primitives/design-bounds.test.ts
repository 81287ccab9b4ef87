/**
 * The primitives' files the first mutation runs of map/revoke/steal/return
 * left out (docs/verification.md §8): the design object (index.ts), a dying
 * domain's records (teardown.ts), the checker's pass over the registry
 * (check.ts) and the shared look-ups (common.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { testMachine } from '../../../tests/test-machine.js';
import type { Machine } from '../../xen/machine.js';
import { primitives } from './index.js';
import { dmMap } from './map.js';
import { dmReturn } from './return.js';
import { dmSteal } from './steal.js';
import { registryOf, stealOf } from './common.js';
import { IDX, KIND, REC } from './registry.js';
import { p2mGet } from '../../xen/p2m.js';
import { entryMfn, P2M_REVOKED } from '../../layout/p2m.js';
import { checkNoLeaks, checkQuiescent } from '../../checker/checker.js';
import { domainDestroy } from '../../xen/domain.js';
import { IOMMUF, iommuFlags } from '../../xen/iommu.js';
import { disarmHooks } from '../../xen/hooks.js';

const mfnOf = (m: Machine, d: number, g: number): number => entryMfn(p2mGet(m, d, g));
const clean = (m: Machine): void => {
  checkQuiescent(m);
  expect(m.log.records().map((r) => `${r.invariant}: ${r.text}`)).toEqual([]);
};

afterEach(() => {
  disarmHooks();
});

describe('the design object (index.ts)', () => {
  it('its state is the region up to the registry index: the simulator digest leaves the derived index out', () => {
    // No Xen counterpart: the registry's index (registry.ts) is derived from its records, so a digest of the
    // design's state (host/sim/run.ts, MemoryDesign.stateBytes) stops where the index begins.
    const m = testMachine();
    const state = primitives.stateBytes?.(m.config);
    expect(state).toBe(registryOf(m).ix.byteOffset);
    expect(state).toBe(m.sabs.design.byteLength - IDX.WORDS * 4);
    expect(primitives.regionBytes(m.config)).toBe(m.sabs.design.byteLength);
  });

  it('a Map\'d page is in a sync_pt frontend\'s IOMMU read-write: the seed excludes nothing (p2m_get_iommu_flags maps mmio_direct)', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0, passthrough: 'sync_pt' }] });
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(0);
    expect(iommuFlags(m, 1, 100)).toBe(IOMMUF.readable | IOMMUF.writable);
    clean(m);
  });
});

describe('a dying domain (teardown.ts, where domain_relinquish_resources would call it)', () => {
  it('a frontend\'s death ends its Steals and revokes its Maps, and leaves the other frontend\'s Steal and Map alone', () => {
    const m = testMachine();
    const reg = registryOf(m);
    const stolen1 = mfnOf(m, 1, 10);
    const stolen2 = mfnOf(m, 2, 10);
    const s1 = dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 });
    const s2 = dmSteal(m, 0, { fe: 2, gfn: 10, count: 1, into: 210 });
    const m1 = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
    const m2 = dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
    expect([s1.rc, s2.rc, m1.rc, m2.rc]).toEqual([0, 0, 0, 0]);
    expect(domainDestroy(m, 1)).toBe(0);
    // d1's Steal is over (its record gone, the frame no longer held for d1) but the frame stays the backend's:
    // steal_page moved its ownership, and relinquish_memory frees only what d1 owns.
    expect(reg.find(s1.id + 1)).toBe(-1);
    expect([m.ft.owner(stolen1), stealOf(m, stolen1)]).toEqual([0, undefined]);
    // d1's Map is a tombstone; d2's Steal (its implicit Map too) and Map are live, as they were.
    expect(reg.at(reg.find(m1.id), REC.STATE)).toBe(2);
    for (const id of [s2.id, s2.id + 1, m2.id]) expect(reg.at(reg.find(id), REC.STATE)).toBe(1);
    expect(stealOf(m, stolen2)).toEqual({ r: reg.find(s2.id + 1), i: 0, fe: 2 });
    expect(entryMfn(p2mGet(m, 2, 100))).toBe(mfnOf(m, 0, 4));
    clean(m);
    // And Return still gives d2 its page back.
    expect(dmReturn(m, 0, { fe: 2, gfn: 210, count: 1 }).rc).toBe(0);
    expect(m.ft.owner(stolen2)).toBe(2);
    clean(m);
  });

  it('a backend\'s death ends the Steals it made (the frames go with its RAM) and revokes what it mapped, nested Maps of it too', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
    const reg = registryOf(m);
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 });
    const map = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 });
    // d1 re-Maps a page d0 Map'd into it on to its own frontend d2 (a nested Map).
    const nested = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 101 }, count: 1, at: 120 });
    expect([s.rc, map.rc, nested.rc]).toEqual([0, 0, 0]);
    expect(reg.at(reg.find(nested.id), REC.KIND)).toBe(KIND.MAP_NESTED);
    expect(domainDestroy(m, 0)).toBe(0);
    // Every record d0 was a side of is gone or a tombstone; the nested Map went with its parent's page.
    expect(reg.activeCount()).toBe(0);
    expect(reg.find(s.id + 1)).toBe(-1);
    expect([p2mGet(m, 1, 10), p2mGet(m, 1, 11), p2mGet(m, 1, 100), p2mGet(m, 2, 120)]).toEqual([P2M_REVOKED, P2M_REVOKED, P2M_REVOKED, P2M_REVOKED]);
    clean(m);
    expect(domainDestroy(m, 1)).toBe(0);
    expect(domainDestroy(m, 2)).toBe(0);
    expect(checkNoLeaks(m)).toBe(true);
  });
});

