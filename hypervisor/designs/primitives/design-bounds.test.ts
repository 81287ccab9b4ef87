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
import { dmRevoke } from './revoke.js';
import { dmReturn } from './return.js';
import { dmSteal } from './steal.js';
import { registryOf, releaseStolen, stealOf } from './common.js';
import { checkMappings } from './check.js';
import type { Invariant } from '../../layout/invariants.js';
import { IDX, KIND, REC, Registry } from './registry.js';
import { p2mGet, p2mLock, p2mSetLocked, p2mUnlock } from '../../xen/p2m.js';
import { P2M } from '../../public/types.js';
import { EINVAL, ENOSPC } from '../../public/errno.js';
import { MAX_MAPPINGS } from '../../layout/constants.js';
import { entryMfn, p2mEntry, P2M_REVOKED } from '../../layout/p2m.js';
import { checkNoLeaks } from '../../checker/checker.js';
import { domainDestroy, populateRange } from '../../xen/domain.js';
import { decreaseReservation } from '../../xen/memory.js';
import { IOMMUF, iommuFlags } from '../../xen/iommu.js';
import { armHook, disarmHooks } from '../../xen/hooks.js';
import { domainCrash } from '../../xen/domain-crash.js';
import { DS } from '../../layout/domains.js';
import { expectClean } from '../../../tests/expect-clean.js';

const mfnOf = (m: Machine, d: number, g: number): number => entryMfn(p2mGet(m, d, g));
const clean = (m: Machine): void => expectClean(m);

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
    // Both answers are the MemoryDesign interface's booleans (xen/design.ts): false, not just falsy.
    expect([primitives.iommuExcludes(m, 1, p2mGet(m, 1, 100)), primitives.foreignMapRefused(m, mfnOf(m, 1, 100))]).toEqual([false, false]);
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


// ---- the checker's pass (check.ts). Xen has no such checker: these are xgsim's invariants 1, 4 and 11
// (docs/architecture.md's table) over what Xen's own rules keep — a frame is mapped only while a reference
// and a right to it last (get_page / put_page), and owned by the domain steal_page gave it to.

/** The texts checkMappings reports for `inv`, and the checks it counted, over one pass. */
function pass(m: Machine, inv: Invariant): { texts: string[]; checks: number } {
  const before = m.log.counts()[inv].checks;
  const seen = m.log.records().length;
  checkMappings(m);
  return { texts: m.log.records().slice(seen).filter((r) => r.invariant === inv).map((r) => r.text), checks: m.log.counts()[inv].checks - before };
}
const twoLevels = (): Machine =>
  testMachine({ bars: [{ name: 'gpu', owner: 0, nr_pages: 8 }], domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });

describe('a dying domain: the assertion at the end (teardown.ts)', () => {
  it('a Steal of the dying domain that no stolen frame names any more outlives the reap: BUG, either side', () => {
    // The contract broken on purpose (the stolen-frame table lost the entry), as Xen's BUG_ONs after
    // relinquish_memory catch a page the walk left: the hypervisor's own invariant, fatal and loud.
    for (const dying of [1, 0]) {
      const m = testMachine();
      const reg = registryOf(m);
      const mfn = mfnOf(m, 1, 10);
      const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 });
      expect(dmSteal(m, 0, { fe: 2, gfn: 10, count: 1, into: 210 }).rc).toBe(0); // another frontend's, never at fault
      expect(dmRevoke(m, 0, { id: s.id })).toBe(0);
      releaseStolen(m, mfn);
      expect(() => domainDestroy(m, dying)).toThrow(`d${dying} dying: Steal record ${reg.find(s.id + 1)} outlived its pages`);
    }
  });
});

describe('the checker\'s pass over the registry (check.ts)', () => {
  it('counts one check per pass, per live page and per mapped entry, and finds nothing wrong in what the primitives built', () => {
    const m = twoLevels();
    const bar = m.sabs.bars[0]!.base_mfn;
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 }).rc).toBe(0);
    expect(dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 101 }, count: 1, at: 120 }).rc).toBe(0);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: bar }, count: 2, at: 130, type: P2M.mmio_dm }).rc).toBe(0);
    expect(dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 130 }, count: 2, at: 140 }).rc).toBe(0);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 }).rc).toBe(0);
    // records_match_frames: the pass, the index, then RAM pages traced to their root backend (2 Map'd, 1 nested,
    // 1 implicit Map; the BAR Map and the nested Map of it have no frame-table entry), 1 stolen frame held, 1 live Steal page.
    expect(pass(m, 'records_match_frames')).toEqual({ texts: [], checks: 2 + 4 + 1 + 1 });
    // mapped_not_ram: one per nested Map (2), one per frame-carrying mmio entry (d1: 2 + 2 BAR + 1 stolen; d2: 1 + 2).
    expect(pass(m, 'mapped_not_ram')).toEqual({ texts: [], checks: 2 + 8 });
    expect(pass(m, 'no_use_after_revoke')).toEqual({ texts: [], checks: 0 });
    // A revoked page's entry carries no frame: not counted; the Revoke takes its nested page with it (one nested Map left).
    expect(dmRevoke(m, 0, { fe: 1, gfn: 101, count: 1 })).toBe(0);
    expect(pass(m, 'mapped_not_ram')).toEqual({ texts: [], checks: 1 + 6 });
    expect(pass(m, 'records_match_frames')).toEqual({ texts: [], checks: 2 + 2 + 1 + 1 });
    clean(m);
  });

  it('an mmio_direct or mmio_dm entry on a frame with no live page of a mapping into that domain at that gfn is mapped_not_ram', () => {
    const m = testMachine();
    const mfn = mfnOf(m, 0, 20);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(0);
    // As a Map that skipped its record would leave them: the same gfn in another frontend, and two more gfns.
    for (const [d, g, t] of [[2, 100, P2M.mmio_direct], [1, 150, P2M.mmio_direct], [1, 151, P2M.mmio_dm]] as const) {
      p2mLock(m, d, 'test');
      p2mSetLocked(m, d, g, p2mEntry(mfn, t));
      p2mUnlock(m, d);
    }
    expect(pass(m, 'mapped_not_ram').texts).toEqual([
      `d1 gfn 150: mmio_direct on mfn ${mfn} with no live mapping`,
      `d1 gfn 151: mmio_dm on mfn ${mfn} with no live mapping`,
      `d2 gfn 100: mmio_direct on mfn ${mfn} with no live mapping`,
    ]);
  });

  it('a nested Map whose parent no longer maps a page it was made from is a use-after-revoke path; the parent\'s other pages, and the child\'s revoked ones, do not matter', () => {
    const m = testMachine({ bugs: 'revoke-skip-nested', domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
    // The parent maps d0's gfns 4–8 at d1's 100–104; the child re-Maps d1's 101–102 at d2's 120–121.
    const parent = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 5, at: 100 });
    const child = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 101 }, count: 2, at: 120 });
    const whole = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 12 }, count: 1, at: 110 });
    const orphan = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 110 }, count: 1, at: 122 });
    expect([parent.rc, child.rc, whole.rc, orphan.rc]).toEqual([0, 0, 0, 0]);
    // The parent's pages around the child's go; those the child was made from stay.
    expect(dmRevoke(m, 0, { fe: 1, gfn: 100, count: 1 })).toBe(0);
    expect(dmRevoke(m, 0, { fe: 1, gfn: 103, count: 1 })).toBe(0);
    expect(pass(m, 'no_use_after_revoke').texts).toEqual([]);
    // A whole parent revoked: a tombstone.
    expect(dmRevoke(m, 0, { id: whole.id })).toBe(0);
    const say = (id: number): string => `nested mapping ${id} (d1→d2) still maps pages its parent's Revoke took`;
    expect(pass(m, 'no_use_after_revoke').texts).toEqual([say(orphan.id)]);
    // The child's first page revoked by its own backend, then the parent's page under it: nothing lost.
    expect(dmRevoke(m, 1, { fe: 2, gfn: 120, count: 1 })).toBe(0);
    expect(dmRevoke(m, 0, { fe: 1, gfn: 101, count: 1 })).toBe(0);
    expect(pass(m, 'no_use_after_revoke').texts).toEqual([say(orphan.id)]);
    // The parent's page under the child's live page, the parent still live (gfn 104): orphaned by that page.
    expect(dmRevoke(m, 0, { fe: 1, gfn: 102, count: 1 })).toBe(0);
    expect(registryOf(m).at(registryOf(m).find(parent.id), REC.STATE)).toBe(1);
    expect(pass(m, 'no_use_after_revoke').texts).toEqual([say(child.id), say(orphan.id)]);
  });

  it('a nested Map whose parent slot holds another mapping now, or names no slot, is a use-after-revoke path', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
    const reg = registryOf(m);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(0);
    const child = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 100 }, count: 1, at: 120 });
    const c = reg.find(child.id);
    const say = `nested mapping ${child.id} (d1→d2) still maps pages its parent's Revoke took`;
    reg.set(c, REC.PARENT_ID, reg.at(c, REC.PARENT_ID) + 7); // the slot reused by a later mapping
    expect(pass(m, 'no_use_after_revoke').texts).toEqual([say]);
    reg.set(c, REC.PARENT_ID, reg.at(c, REC.PARENT_ID) - 7);
    expect(pass(m, 'no_use_after_revoke').texts).toEqual([]);
    const p = reg.at(c, REC.PARENT);
    reg.set(c, REC.PARENT, 0);
    expect(pass(m, 'no_use_after_revoke').texts).toEqual([say]);
    reg.set(c, REC.PARENT, p);
    expect(pass(m, 'no_use_after_revoke').texts).toEqual([]);
  });

  it('records_match_frames: a Map\'d frame (nested ones traced to the root) or a stolen frame owned by another domain, a live Steal page with no frame recorded', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
    const a = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 });
    const n = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 101 }, count: 1, at: 120 });
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 });
    expect([a.rc, n.rc, s.rc]).toEqual([0, 0, 0]);
    expect(pass(m, 'records_match_frames').texts).toEqual([]);
    const f5 = mfnOf(m, 0, 5);
    m.ft.setOwner(f5, 2); // as if the frame had changed hands under the live Map
    expect(pass(m, 'records_match_frames').texts).toEqual([
      `mapping ${a.id} page 1 (d0→d1 gfn 101): frame ${f5} owned by d2, not its backend d0`,
      `mapping ${n.id} page 0 (d1→d2 gfn 120): frame ${f5} owned by d2, not its backend d0`,
    ]);
    m.ft.setOwner(f5, 0);
    const stolen = mfnOf(m, 0, 201);
    m.ft.setOwner(stolen, 1);
    const implicit = s.id; // the Steal's implicit Map (its page 1 is stolen on the same frame)
    expect(pass(m, 'records_match_frames').texts).toEqual([
      `mapping ${implicit} page 1 (d0→d1 gfn 11): frame ${stolen} owned by d1, not its backend d0`,
      `stolen frame ${stolen} (from d1) owned by d1, not its Steal's backend d0`,
    ]);
    m.ft.setOwner(stolen, 0);
    releaseStolen(m, stolen); // the stolen-frame table lost the entry of the Steal's page 1
    expect(pass(m, 'records_match_frames').texts).toEqual([`Steal ${s.id + 1} page 1 (d1→d0) is live but no frame is recorded as taken by it`]);
  });

  it('the registry index against its records is checked too (records_match_frames)', () => {
    const m = testMachine();
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(0);
    const reg = registryOf(m);
    reg.ix[IDX.LIVE_N] = 2;
    expect(pass(m, 'records_match_frames').texts).toEqual(['registry index: live: index says 2, records 1']);
    reg.ix[IDX.LIVE_N] = 1;
  });
});

describe('what the primitives share (common.ts)', () => {
  it('a frontend or backend that crashed between the checks and the registry lock is not dying yet: the primitive goes on, and the destroy that follows revokes it', () => {
    // Xen: domain_crash only shuts the domain down; d->is_dying is set by domain_kill (the toolstack's destroy),
    // which then relinquishes what the domain holds (domain_relinquish_resources).
    for (const [op, crashed] of [['map', 1], ['map', 0], ['steal', 1], ['return', 1]] as const) {
      const m = testMachine();
      if (op === 'return') expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 }).rc).toBe(0);
      armHook(`${op}.after_checks`, () => expect(domainCrash(m, crashed, 'test')).toBe(true));
      const r = op === 'map' ? dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }) : op === 'steal' ? dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 }) : dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 });
      disarmHooks();
      expect([op, r.rc]).toEqual([op, 0]);
      expect(m.dom.state(crashed)).toBe(DS.CRASHED);
      expect(registryOf(m).activeCount()).toBe(op === 'return' ? 0 : op === 'steal' ? 2 : 1);
      expect(domainDestroy(m, crashed)).toBe(0);
      expect(registryOf(m).activeCount()).toBe(0);
      clean(m);
    }
  });
});

describe('the stolen-frame table (common.ts)', () => {
  it('a stolen frame the backend freed, handed to another frontend and stolen again: the first Steal\'s page ends, the table names the second', () => {
    // steal_page ties a Steal to the frame: once the backend frees it (decrease_reservation → free_domheap_pages)
    // that Steal is over, whatever the heap does with the frame next.
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, max_pages: 66, backend: 0 }] });
    const reg = registryOf(m);
    const mfn = mfnOf(m, 1, 10);
    const first = dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 });
    expect(first.rc).toBe(0);
    expect(dmRevoke(m, 0, { id: first.id })).toBe(0); // the implicit Map's reference goes
    expect(decreaseReservation(m, 0, [200])).toBe(1);
    expect(m.ft.owner(mfn)).not.toBe(0);
    // The Steal is over (stealOf), its record not given back yet (reapSteals does that when records run short).
    expect(stealOf(m, mfn)).toBeUndefined();
    expect(reg.at(reg.find(first.id + 1), REC.STATE)).toBe(1);
    expect(populateRange(m, 2, 100, 1)).toBe(0);
    expect(mfnOf(m, 2, 100)).toBe(mfn); // the heap hands the frame just freed out first
    const second = dmSteal(m, 0, { fe: 2, gfn: 100, count: 1, into: 210 });
    expect(second.rc).toBe(0);
    expect(reg.find(first.id + 1)).toBe(-1);
    expect(stealOf(m, mfn)).toEqual({ r: reg.find(second.id + 1), i: 0, fe: 2 });
    clean(m);
    expect(dmReturn(m, 0, { fe: 2, gfn: 210, count: 1 }).rc).toBe(0);
    expect([m.ft.owner(mfn), stealOf(m, mfn), reg.activeCount()]).toEqual([2, undefined, 0]);
    clean(m);
  });
});

describe('a BAR source (common.ts barOf)', () => {
  it('the range must lie within one BAR: up to its last page is fine, one page past it or below its base is -EINVAL', () => {
    // Xen's XEN_DOMCTL_memory_mapping asks iomem_access_permitted(d, mfn, mfn + nr - 1): the whole range.
    const m = testMachine({ bars: [{ name: 'gpu0', owner: 0, nr_pages: 8 }, { name: 'gpu1', owner: 0, nr_pages: 8 }] });
    const [b0, b1] = m.sabs.bars.map((b) => b.base_mfn) as [number, number];
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: b0 + 6 }, count: 2, at: 100 }).rc).toBe(0);
    expect(b1).toBe(b0 + 8); // the BARs lie end to end: a range over both is in neither
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: b0 + 7 }, count: 2, at: 110 }).rc).toBe(-EINVAL);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: b1 }, count: 8, at: 120 }).rc).toBe(0);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: b0 - 1 }, count: 2, at: 130 }).rc).toBe(-EINVAL);
    clean(m);
  });
});

describe('the registry index (registry.ts checkIndex)', () => {
  it('names what no longer matches the records, and only that', () => {
    // No Xen counterpart (Xen keeps no registry): the index is derived from the records (registry.ts), and the
    // checker's pass reports each way it can drift from them. Ten live Maps of d0 → d1, record 9 nested under
    // record 0, records 3 and 5 tombstones.
    const make = (): Registry => {
      const reg = new Registry(new SharedArrayBuffer(Registry.bytes(16, 16)), 16, 16);
      for (let i = 0; i < 10; i++) {
        const r = reg.alloc();
        reg.set(r, REC.KIND, i === 9 ? KIND.MAP_NESTED : KIND.MAP_RAM);
        reg.set(r, REC.FRONTEND, 1);
        reg.set(r, REC.BACKEND, 0);
        reg.set(r, REC.PARENT, i === 9 ? 1 : 0);
        reg.set(r, REC.ID, reg.nextId());
        reg.activate(r);
      }
      reg.retire(3);
      reg.retire(5);
      expect(reg.checkIndex()).toEqual([]);
      return reg;
    };
    const breaks: Array<[(reg: Registry) => void, string[]]> = [
      [(reg) => void (reg.ix[IDX.USED_BITS] = reg.ix[IDX.USED_BITS]! & ~1), ['record 0 (state 1) marked free', 'used: index says 10, records 9']],
      [(reg) => reg.set(7, REC.STATE, 0), ['record 7 free but marked used', 'live: index says 8, records 7', 'record 7 on the frontend list of 1', 'frontend lists hold 8 records, 7 live ones belong there', 'record 7 on the backend list of 0', 'backend lists hold 8 records, 7 live ones belong there']],
      [(reg) => reg.set(2, REC.FRONTEND, 2), ['record 2 on the frontend list of 1']],
      [(reg) => reg.set(2, REC.BACKEND, 2), ['record 2 on the backend list of 0']],
      [(reg) => reg.set(9, REC.PARENT, 3), ['record 9 on the parent list of 0']],
      [(reg) => reg.set(4, REC.ID, 999), ['record 4: its id 999 not found']],
      [(reg) => void (reg.ix[IDX.LIVE_N] = 3), ['live: index says 3, records 8']],
      [(reg) => reg.set(3, REC.STATE, 1), ['record 3 (state 1) in the tombstone heap', 'live: index says 8, records 9', 'tombstones: index says 2, records 1', 'heap: index says 2, records 1', 'frontend lists hold 8 records, 9 live ones belong there', 'backend lists hold 8 records, 9 live ones belong there']],
      [(reg) => void reg.alloc(), ['record 10 free but marked used']],
      [(reg) => void ([reg.ix[IDX.HEAP], reg.ix[IDX.HEAP + 1]] = [reg.ix[IDX.HEAP + 1]!, reg.ix[IDX.HEAP]!]), ['tombstone heap broken at 1']],
      [(reg) => void (reg.ix[IDX.USED] = 11), ['used: index says 11, records 10']],
      [(reg) => void (reg.ix[IDX.TOMBS] = 1), ['tombstones: index says 1, records 2']],
      [(reg) => void (reg.ix[IDX.HEAP_N] = 1), ['heap: index says 1, records 2']],
      [(reg) => void (reg.ix[IDX.FE_PREV + 0] = 5), ['record 0: broken back link on the frontend list of 1']],
    ];
    for (const [k, [b, want]] of breaks.entries()) {
      const reg = make();
      b(reg);
      expect(reg.checkIndex(), `break ${k}`).toEqual(want);
    }
  });
});

describe('the registry look-ups (common.ts recordAt, stealAt)', () => {
  it('a frontend passing on a stolen page re-Maps the Steal\'s implicit Map: that Map is the nested Map\'s parent, not the Steal record', () => {
    // The implicit Map is what put the page at fe's gfn (docs/primitives.md, Steal); the Steal record only
    // remembers where the frame came from, and is no mapping (Revoke of its id is -EINVAL).
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
    const reg = registryOf(m);
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 });
    expect(s.rc).toBe(0);
    const n = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 11 }, count: 1, at: 120 });
    expect(n.rc).toBe(0);
    const r = reg.find(n.id);
    expect([reg.at(r, REC.KIND), reg.at(r, REC.PARENT), reg.at(r, REC.PARENT_ID)]).toEqual([KIND.MAP_NESTED, reg.find(s.id) + 1, s.id]);
    expect(mfnOf(m, 2, 120)).toBe(mfnOf(m, 0, 201));
    clean(m);
    // Return revokes the implicit Map and so the nested one.
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 }).rc).toBe(0);
    expect(p2mGet(m, 2, 120)).toBe(P2M_REVOKED);
    clean(m);
  });

  it('steal-record-by-gfn: a Return of two stolen pages finds both; a gfn be only Map\'d out is no Steal of it (-EINVAL)', () => {
    // The bug looks a Steal up by be's gfn (stealAt) instead of by the frame; a Map record of be, whose SRC is
    // also a gfn of be, is still no Steal.
    const m = testMachine({ bugs: 'steal-record-by-gfn' });
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(0);
    const mfn = mfnOf(m, 1, 10);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 }).rc).toBe(0);
    expect(dmReturn(m, 0, { fe: 1, gfn: 4, count: 1 })).toEqual({ rc: -EINVAL, index: 0, id: 0 });
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 }).rc).toBe(0);
    expect([mfnOf(m, 1, 10), m.ft.owner(mfn), registryOf(m).activeCount()]).toEqual([mfn, 1, 1]);
    clean(m);
  });
});

describe('ending Steals (common.ts endStealPage, reapSteals)', () => {
  it('a Return of one page of two ends that page only: the Steal record lives on with its other page, and the checker agrees', () => {
    // The Steal is tied to each frame it took (steal_page per page): giving one back ends that page's Steal.
    const m = testMachine();
    const reg = registryOf(m);
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 });
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 }).rc).toBe(0);
    const r = reg.find(s.id + 1);
    expect([reg.at(r, REC.STATE), reg.at(r, REC.LIVE), reg.live(r, 0), reg.live(r, 1)]).toEqual([1, 1, false, true]);
    clean(m);
    expect(dmReturn(m, 0, { fe: 1, gfn: 201, count: 1 }).rc).toBe(0);
    expect(reg.find(s.id + 1)).toBe(-1);
    clean(m);
  });

  it('a full registry reaps only the Steals whose frames were freed: a live Steal keeps its record, and the next Map is -ENOSPC', () => {
    const m = testMachine({ nr_frames: 2048, domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0, p2m_size: 4096 }, { memory_pages: 64, backend: 0 }] });
    const reg = registryOf(m);
    const over = dmSteal(m, 0, { fe: 2, gfn: 10, count: 1, into: 200 });
    expect(dmRevoke(m, 0, { id: over.id })).toBe(0);
    expect(decreaseReservation(m, 0, [200])).toBe(1); // that Steal is over
    const live = dmSteal(m, 0, { fe: 2, gfn: 11, count: 1, into: 201 }); // this one is not
    expect(live.rc).toBe(0);
    let n = 0;
    while (reg.activeCount() < MAX_MAPPINGS) expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 + n++ }).rc).toBe(0);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 + n }).rc).toBe(0); // the over one reaped
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 101 + n }).rc).toBe(-ENOSPC);
    expect(reg.at(reg.find(live.id + 1), REC.STATE)).toBe(1);
    expect(stealOf(m, mfnOf(m, 0, 201))).toEqual({ r: reg.find(live.id + 1), i: 0, fe: 2 });
  });
});
