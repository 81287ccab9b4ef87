/**
 * Every refusal of the four primitives with its code and index, in
 * docs/primitives.md's order, and that a refusal changes nothing; what each
 * success leaves behind (entries, references, quotas, records). Xen has no
 * such dm_ops: where a check stands for one of Xen's, the comment names it.
 */
import { describe, expect, it } from 'vitest';
import { testMachine } from '../../../tests/test-machine.js';
import type { Machine } from '../../xen/machine.js';
import { dmMap } from './map.js';
import { dmReturn } from './return.js';
import { dmRevoke } from './revoke.js';
import { dmSteal } from './steal.js';
import { isRamMfn, registryOf } from './common.js';
import { KIND, REC } from './registry.js';
import { E2BIG, EBUSY, EEXIST, EINVAL, ENOENT, ENOMEM, EPERM, ESRCH } from '../../public/errno.js';
import { GNTST_okay } from '../../public/errno.js';
import { P2M, domid, gfn, grantRef } from '../../public/types.js';
import { p2mGet } from '../../xen/p2m.js';
import { entryMfn, entryType, P2M_HOLE, P2M_REVOKED } from '../../layout/p2m.js';
import { DOM } from '../../layout/domains.js';
import { MAX_PAGES_PER_OP } from '../../layout/constants.js';
import { domainCrash } from '../../xen/domain-crash.js';
import { domainCreate, domainDestroy, populateRange } from '../../xen/domain.js';
import { foreignMap } from '../../xen/memory.js';
import { guestGrantAccess, mapGrantRef } from '../../xen/grant-table.js';
import { expectClean } from '../../../tests/expect-clean.js';

const mfnOf = (m: Machine, d: number, g: number): number => entryMfn(p2mGet(m, d, g));
const clean = (m: Machine): void => expectClean(m);
/** What a refusal must leave as it was: the p2ms of d0–d2 around the gfns used, the counts of their RAM, the quotas, the registry. */
function snapshot(m: Machine): unknown {
  const p2m = [0, 1, 2].map((d) => Array.from({ length: 320 }, (_, g) => p2mGet(m, d, g)));
  const counts = [0, 1, 2].map((d) => Array.from({ length: 64 }, (_, g) => (isRamMfn(m, mfnOf(m, d, g)) ? m.ft.countInfo(mfnOf(m, d, g)) : -1)));
  const quotas = [0, 1, 2].map((d) => [m.dom.at(d, DOM.TOT_PAGES), m.dom.at(d, DOM.MAX_PAGES)]);
  return { p2m, counts, quotas, live: registryOf(m).activeCount() };
}

describe('common checks (docs/primitives.md 1–3), in order', () => {
  it('count, then the frontend and backend running, then be ≠ fe, then authority; the same for Map, Steal and Return', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 2 }] });
    const before = snapshot(m);
    const map = (be: number, fe: number, count = 1) => dmMap(m, be, { fe, source: { kind: 'ram', gfn: 4 }, count, at: 100 }).rc;
    const steal = (be: number, fe: number, count = 1) => dmSteal(m, be, { fe, gfn: 4, count, into: 200 }).rc;
    const ret = (be: number, fe: number, count = 1) => dmReturn(m, be, { fe, gfn: 200, count }).rc;
    for (const op of [map, steal, ret]) {
      for (const count of [0, -1, 1.5, MAX_PAGES_PER_OP + 1, NaN]) expect(op(0, 1, count)).toBe(-EINVAL);
      for (const fe of [-1, 4, 99, 1.5]) expect(op(0, fe)).toBe(-ESRCH);
      expect(op(0, 0)).toBe(-EINVAL); // be == fe
      expect(op(1, 2)).toBe(-EPERM); // d1 is neither d2's backend nor privileged
      expect(op(3, 2)).toBe(-EPERM); // the frontend's own frontend has no say over it
    }
    // The count is checked before anything else: a bad count to a missing frontend is -EINVAL.
    expect(map(0, 99, 0)).toBe(-EINVAL);
    // be == fe is checked after both are found running, authority last.
    expect(dmMap(m, 9, { fe: 9, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(-ESRCH);
    expect(snapshot(m)).toEqual(before);
    // d2 is d3's backend (not privileged): it may; dom0 (privileged) may map into d3 too.
    expect(dmMap(m, 2, { fe: 3, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(0);
    expect(dmMap(m, 0, { fe: 3, source: { kind: 'ram', gfn: 4 }, count: 1, at: 101 }).rc).toBe(0);
    clean(m);
  });

  it('a crashed frontend or backend is not running: -ESRCH, and nothing changes', () => {
    for (const crashed of [1, 0]) {
      const m = testMachine();
      const before = snapshot(m);
      expect(domainCrash(m, crashed, 'test')).toBe(true);
      expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(-ESRCH);
      expect(dmSteal(m, 0, { fe: 1, gfn: 4, count: 1, into: 200 }).rc).toBe(-ESRCH);
      expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1 }).rc).toBe(-ESRCH);
      expect(snapshot(m)).toEqual(before);
    }
  });
});

describe('Map', () => {
  it('mmio_dm is the other type it installs; any other type is -EINVAL', () => {
    const m = testMachine();
    for (const type of [P2M.ram_rw, P2M.ram_ro, P2M.grant_map_rw, P2M.map_foreign]) expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100, type }).rc).toBe(-EINVAL);
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 3, at: 100, type: P2M.mmio_dm });
    expect(r).toEqual({ rc: 0, index: -1, id: r.id });
    for (let i = 0; i < 3; i++) {
      expect(entryType(p2mGet(m, 1, 100 + i))).toBe(P2M.mmio_dm);
      expect(mfnOf(m, 1, 100 + i)).toBe(mfnOf(m, 0, 4 + i));
      expect(m.ft.count(mfnOf(m, 0, 4 + i))).toBe(2);
    }
    const reg = registryOf(m);
    const rec = reg.find(r.id);
    expect([REC.KIND, REC.BACKEND, REC.FRONTEND, REC.SRC, REC.FE_GFN, REC.COUNT, REC.LIVE, REC.TYPE, REC.PARENT, REC.STATE].map((f) => reg.at(rec, f))).toEqual([KIND.MAP_RAM, 0, 1, 4, 100, 3, 3, P2M.mmio_dm, 0, 1]);
    clean(m);
    // A Map of MAX_PAGES_PER_OP pages is allowed (count check 1 is inclusive).
    const big = testMachine({ nr_frames: 2048, domains: [{ memory_pages: 600, privileged: true }, { memory_pages: 64, backend: 0, p2m_size: 2048 }] });
    expect(dmMap(big, 0, { fe: 1, source: { kind: 'ram', gfn: 0 }, count: MAX_PAGES_PER_OP, at: 1024 }).rc).toBe(0);
  });

  it('per page, source before destination: the first bad page\'s code and index, and nothing done', () => {
    const m = testMachine();
    foreignMap(m, 0, 2, 3, 90); // d0's gfn 90: a foreign map, not its RAM
    const before = snapshot(m);
    // Source: a hole of be, a foreign map, past be's RAM (62, 63 are RAM; 64 is a hole).
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 62 }, count: 3, at: 100 })).toEqual({ rc: -EINVAL, index: 2, id: 0 });
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 90 }, count: 1, at: 100 })).toEqual({ rc: -EINVAL, index: 0, id: 0 });
    // Destination: outside fe's p2m, then an occupied gfn (fe's RAM at 63).
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 2 ** 24 - 1 })).toEqual({ rc: -EINVAL, index: 1, id: 0 });
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 3, at: 61 })).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 3, at: 98 }).rc).toBe(0);
    expect(snapshot(m)).not.toEqual(before);
    // A source page bad at index 1 beats a destination bad at index 2.
    expect(dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 63 }, count: 3, at: 62 })).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    expect(dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 63 }, count: 3, at: 100 })).toEqual({ rc: -EINVAL, index: 1, id: 0 });
  });

  it('a revoked gfn may be Map\'d again; a Map\'d one may not', () => {
    const m = testMachine();
    const a = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 });
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 6 }, count: 1, at: 101 })).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    expect(dmRevoke(m, 0, { fe: 1, gfn: 101, count: 1 })).toBe(0);
    expect(p2mGet(m, 1, 100)).not.toBe(P2M_REVOKED); // only the range given
    expect(p2mGet(m, 1, 101)).toBe(P2M_REVOKED);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 6 }, count: 1, at: 101 }).rc).toBe(0);
    expect(mfnOf(m, 1, 101)).toBe(mfnOf(m, 0, 6));
    expect(dmRevoke(m, 0, { id: a.id })).toBe(0);
    clean(m);
  });

  it('a nested Map is of one parent and one kind: RAM and Map\'d pages, or two parents\' pages, mixed are -EINVAL at the first that differs', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
    const a = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
    const b = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 5 }, count: 1, at: 101 });
    expect(a.rc + b.rc).toBe(0);
    const before = snapshot(m);
    expect(dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 63 }, count: 2, at: 110 })).toEqual({ rc: -EINVAL, index: 1, id: 0 }); // RAM, then hole
    expect(dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 100 }, count: 2, at: 110 })).toEqual({ rc: -EINVAL, index: 1, id: 0 }); // two parents
    expect(dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 99 }, count: 2, at: 110 })).toEqual({ rc: -EINVAL, index: 0, id: 0 }); // a hole first
    expect(snapshot(m)).toEqual(before);
    const n = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 101 }, count: 1, at: 110 });
    expect(n.rc).toBe(0);
    const reg = registryOf(m);
    const r = reg.find(n.id);
    expect([reg.at(r, REC.KIND), reg.at(r, REC.PARENT) - 1, reg.at(r, REC.PARENT_ID)]).toEqual([KIND.MAP_NESTED, reg.find(b.id), b.id]);
    expect(m.ft.count(mfnOf(m, 0, 5))).toBe(3); // its own reference, beside its parent's
    // A revoked page of be is no source (a hole's answer).
    expect(dmRevoke(m, 0, { id: a.id })).toBe(0);
    expect(dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 100 }, count: 1, at: 111 })).toEqual({ rc: -EINVAL, index: 0, id: 0 });
    clean(m);
  });

  it('past the frontend\'s share of the p2m pool: -ENOMEM before anything changes (p2m_set_entry\'s p2m_alloc_ptp failing)', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }] });
    // d1's share: the root, one level-2 and one level-1 table; a gfn far above needs two more.
    expect(domainCreate(m, { domid: 1, max_pages: 16, nr_vcpus: 1, privileged: false, p2m_pages: 3, backend: 0 })).toBe(1);
    expect(populateRange(m, 1, 0, 4)).toBe(0);
    const refs = m.ft.countInfo(mfnOf(m, 0, 4));
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 }).rc).toBe(0); // in the table it has
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 0x800000 })).toEqual({ rc: -ENOMEM, index: -1, id: 0 });
    expect(p2mGet(m, 1, 0x800000)).toBe(P2M_HOLE);
    expect(m.ft.countInfo(mfnOf(m, 0, 4))).toBe(refs + 1);
    expect(m.dom.at(1, DOM.P2M_PAGES)).toBe(3);
    expect(registryOf(m).activeCount()).toBe(1);
  });

  it('BAR Maps: 2 MiB superpages only where gfn and frame are aligned and the range covers 512 pages (map_mmio_regions\' mmio_order)', () => {
    const m = testMachine({ nr_frames: 4096, bars: [{ name: 'gpu', owner: 0, nr_pages: 1536 }], domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }] });
    const bar = m.sabs.bars[0]!.base_mfn;
    expect(bar % 512).toBe(0);
    const reserved = (): number => m.dom.at(1, DOM.P2M_RESERVED);
    // Aligned both sides, 512 pages: one superpage, a table page reserved for its split.
    const a = dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: bar }, count: 512, at: 0x200000 });
    expect(a.rc).toBe(0);
    expect(reserved()).toBe(1);
    expect(mfnOf(m, 1, 0x200000 + 300)).toBe(bar + 300);
    // The gfn aligned, the range not starting at the superpage's first frame: 4 KiB pages.
    const d = dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: bar + 512 }, count: 512, at: 0x300001 });
    expect(d.rc).toBe(0);
    expect(reserved()).toBe(1);
    expect(dmRevoke(m, 0, { id: a.id })).toBe(0);
    expect(dmRevoke(m, 0, { id: d.id })).toBe(0);
    expect(reserved()).toBe(0);
    // Frame not aligned to the gfn: 4 KiB pages only, nothing reserved.
    const b = dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: bar + 1 }, count: 512, at: 0x400000 });
    expect(b.rc).toBe(0);
    expect(reserved()).toBe(0);
    expect(mfnOf(m, 1, 0x400000 + 511)).toBe(bar + 512);
    // One page short of 512: no superpage either.
    const c = dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: bar + 1024 }, count: 511, at: 0x600000 });
    expect(c.rc).toBe(0);
    expect(reserved()).toBe(0);
    // A range past the BAR's end is -EINVAL; one not in be's caps -EPERM.
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: bar + 1535 }, count: 2, at: 0x700000 }).rc).toBe(-EINVAL);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: bar - 1 }, count: 1, at: 0x700000 }).rc).toBe(-EINVAL);
    clean(m);
  });
});

describe('Revoke', () => {
  it('by id: only the backend that made it; a Steal\'s record id is no mapping; an id never issued is -ENOENT', () => {
    const m = testMachine();
    const a = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
    const s = dmSteal(m, 0, { fe: 2, gfn: 10, count: 1, into: 200 });
    expect(s.rc).toBe(0);
    // Steal hands out its implicit Map's id; its own record's id comes right after.
    const reg = registryOf(m);
    const stealRec = reg.find(s.id + 1);
    expect(reg.at(stealRec, REC.KIND)).toBe(KIND.STEAL);
    expect(dmRevoke(m, 0, { id: s.id + 1 })).toBe(-ENOENT);
    expect(dmRevoke(m, 1, { id: a.id })).toBe(-ENOENT);
    expect(p2mGet(m, 1, 100)).not.toBe(P2M_REVOKED);
    expect(dmRevoke(m, 0, { id: s.id + 2 })).toBe(-ENOENT);
    // The implicit Map is a mapping: its Revoke leaves the page stolen.
    expect(dmRevoke(m, 0, { id: s.id })).toBe(0);
    expect(p2mGet(m, 2, 10)).toBe(P2M_REVOKED);
    expect(m.ft.owner(mfnOf(m, 0, 200))).toBe(0);
    expect(m.ft.count(mfnOf(m, 0, 200))).toBe(1);
    clean(m);
  });

  it('by range: its own checks in order; a freed frontend is 0; only be\'s mappings in the range go', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }, { memory_pages: 64, backend: 0 }] });
    expect(dmRevoke(m, 0, { fe: 1, gfn: 100, count: 0 })).toBe(-EINVAL);
    expect(dmRevoke(m, 0, { fe: 1, gfn: 100, count: MAX_PAGES_PER_OP + 1 })).toBe(-EINVAL);
    for (const fe of [-1, m.nd, 2.5]) expect(dmRevoke(m, 0, { fe, gfn: 100, count: 1 })).toBe(-ESRCH);
    expect(dmRevoke(m, 0, { fe: 4, gfn: 100, count: 1 })).toBe(0); // a free slot: nothing is mapped into it
    expect(dmRevoke(m, 1, { fe: 1, gfn: 100, count: 1 })).toBe(-EINVAL);
    expect(dmRevoke(m, 1, { fe: 3, gfn: 100, count: 1 })).toBe(-EPERM);
    expect(dmRevoke(m, 2, { fe: 1, gfn: 100, count: 1 })).toBe(-EPERM);
    // d0 (privileged) and d1 (d2's backend) both map into d2; d0's Revoke of the range takes only its own.
    const mine = dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 4, at: 100 });
    const theirs = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 2, at: 104 });
    expect(mine.rc + theirs.rc).toBe(0);
    expect(dmRevoke(m, 0, { fe: 2, gfn: 101, count: 5 })).toBe(0);
    expect([100, 101, 102, 103, 104, 105].map((g) => p2mGet(m, 2, g) === P2M_REVOKED)).toEqual([false, true, true, true, false, false]);
    expect(m.ft.count(mfnOf(m, 0, 4))).toBe(2); // page 0 still Map'd
    expect(m.ft.count(mfnOf(m, 0, 5))).toBe(1);
    // The rest of the record, then the record itself (a tombstone: 0 again).
    expect(dmRevoke(m, 0, { fe: 2, gfn: 100, count: 1 })).toBe(0);
    expect(registryOf(m).at(registryOf(m).find(mine.id), REC.STATE)).toBe(2);
    expect(dmRevoke(m, 0, { id: mine.id })).toBe(0);
    clean(m);
    // A frontend destroyed and freed: its teardown revoked all; a range Revoke is 0.
    expect(domainDestroy(m, 3)).toBe(0);
    expect(dmRevoke(m, 0, { fe: 3, gfn: 100, count: 1 })).toBe(0);
  });

  it('a record\'s id stays good after its slot is reused: a tombstone is reused last, oldest first', () => {
    const m = testMachine();
    const reg = registryOf(m);
    const a = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
    const b = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 101 });
    const ra = reg.find(a.id);
    const rb = reg.find(b.id);
    expect(dmRevoke(m, 0, { id: b.id })).toBe(0);
    expect(dmRevoke(m, 0, { id: a.id })).toBe(0);
    expect([reg.at(ra, REC.STATE), reg.at(rb, REC.STATE)]).toEqual([2, 2]);
    // A free record is taken before any tombstone.
    const c = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 102 });
    expect([ra, rb]).not.toContain(reg.find(c.id));
    expect(reg.at(ra, REC.BACKEND)).toBe(0);
    expect(reg.at(ra, REC.FRONTEND)).toBe(1);
    expect(reg.at(ra, REC.KIND)).toBe(KIND.MAP_RAM);
    expect(dmRevoke(m, 0, { id: a.id })).toBe(0);
    expect(dmRevoke(m, 2, { id: a.id })).toBe(-ENOENT); // a tombstone keeps its backend
  });
});

describe('Steal', () => {
  it('per page: not fe\'s plain RAM -EINVAL, granted or referenced -EBUSY (steal_page: count_info == PGC_allocated | 1), at the first bad page', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 3, 2, 12, false);
    expect(mapGrantRef(m, 2, { dom: domid(1), ref: grantRef(3), host_gfn: gfn(150), readonly: false }).status).toBe(GNTST_okay);
    guestGrantAccess(m, 1, 4, 2, 14, true); // granted, not mapped
    const before = snapshot(m);
    expect(dmSteal(m, 0, { fe: 1, gfn: 62, count: 3, into: 200 })).toEqual({ rc: -EINVAL, index: 2, id: 0 }); // past fe's RAM
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 3, into: 200 })).toEqual({ rc: -EBUSY, index: 2, id: 0 }); // granted and mapped
    expect(dmSteal(m, 0, { fe: 1, gfn: 13, count: 2, into: 200 })).toEqual({ rc: -EBUSY, index: 1, id: 0 }); // granted
    expect(dmSteal(m, 0, { fe: 2, gfn: 150, count: 1, into: 200 })).toEqual({ rc: -EINVAL, index: 0, id: 0 }); // a grant map is not RAM
    expect(snapshot(m)).toEqual(before);
  });

  it('destination: outside be\'s p2m -EINVAL, occupied -EEXIST; with no `into`, the lowest holes above be\'s RAM', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 0 }] });
    const before = snapshot(m);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 2 ** 24 - 1 })).toEqual({ rc: -EINVAL, index: 1, id: 0 });
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 63 })).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    expect(snapshot(m)).toEqual(before);
    // No `into`: right above be's RAM (gfns 0–63), then above what it got.
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 2 });
    expect(s.rc).toBe(0);
    expect(entryType(p2mGet(m, 0, 64))).toBe(P2M.ram_rw);
    expect(entryType(p2mGet(m, 0, 65))).toBe(P2M.ram_rw);
    const t = dmSteal(m, 0, { fe: 2, gfn: 10, count: 1 });
    expect(t.rc).toBe(0);
    expect(mfnOf(m, 0, 66)).toBe(mfnOf(m, 2, 10));
    // Two Steal records (with their implicit Maps) live.
    expect(registryOf(m).activeCount()).toBe(4);
    clean(m);
  });

  it('what a Steal leaves: the frame be\'s with the implicit Map\'s reference, fe\'s entry mmio_direct on it, both records linked', () => {
    const m = testMachine();
    const mfn = mfnOf(m, 1, 10);
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 });
    expect(s.rc).toBe(0);
    expect(m.ft.owner(mfn)).toBe(0);
    expect(m.ft.count(mfn)).toBe(2);
    expect([entryType(p2mGet(m, 1, 10)), mfnOf(m, 1, 10)]).toEqual([P2M.mmio_direct, mfn]);
    const reg = registryOf(m);
    const map = reg.find(s.id);
    const steal = reg.find(s.id + 1);
    const f = [REC.KIND, REC.BACKEND, REC.FRONTEND, REC.SRC, REC.FE_GFN, REC.COUNT, REC.LIVE, REC.TYPE, REC.LINK, REC.STATE];
    expect(f.map((w) => reg.at(map, w))).toEqual([KIND.MAP_RAM, 0, 1, 200, 10, 1, 1, P2M.mmio_direct, steal + 1, 1]);
    expect(f.map((w) => reg.at(steal, w))).toEqual([KIND.STEAL, 0, 1, 200, 10, 1, 1, P2M.ram_rw, map + 1, 1]);
    clean(m);
  });

  it('with steal-keeps-quota a backend at its max_pages is -E2BIG and the quotas stay; without it they move', () => {
    const domains = [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 0 }];
    const m = testMachine({ bugs: 'steal-keeps-quota', domains });
    const before = snapshot(m);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 })).toEqual({ rc: -E2BIG, index: -1, id: 0 });
    expect(snapshot(m)).toEqual(before);
    const n = testMachine({ domains });
    expect(dmSteal(n, 0, { fe: 1, gfn: 10, count: 2, into: 200 }).rc).toBe(0);
    expect([0, 1].map((d) => [n.dom.at(d, DOM.TOT_PAGES), n.dom.at(d, DOM.MAX_PAGES)])).toEqual([
      [66, 66],
      [62, 62],
    ]);
  });
});

describe('Return', () => {
  it('per page: not a page stolen from fe -EINVAL, at outside fe\'s p2m -EINVAL, fe\'s gfn occupied -EEXIST, another reference -EBUSY; nothing changes', () => {
    const m = testMachine();
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 }).rc).toBe(0);
    const before = snapshot(m);
    expect(dmReturn(m, 0, { fe: 1, gfn: 199, count: 2 })).toEqual({ rc: -EINVAL, index: 0, id: 0 }); // a hole of be
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 3 })).toEqual({ rc: -EINVAL, index: 2, id: 0 });
    expect(dmReturn(m, 0, { fe: 1, gfn: 4, count: 1 })).toEqual({ rc: -EINVAL, index: 0, id: 0 }); // be's own RAM, never stolen
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2, at: 2 ** 24 - 1 })).toEqual({ rc: -EINVAL, index: 1, id: 0 });
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2, at: 20 })).toEqual({ rc: -EEXIST, index: 0, id: 0 }); // fe's RAM
    // A Map of another frame at the return gfn is not "a Map of this very frame".
    expect(dmRevoke(m, 0, { fe: 1, gfn: 11, count: 1 })).toBe(0);
    const other = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 11 });
    expect(other.rc).toBe(0);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 })).toEqual({ rc: -EEXIST, index: 1, id: 0 });
    expect(dmRevoke(m, 0, { id: other.id })).toBe(0);
    // A grant map of the stolen page (be granted it to d2) is a reference Return does not revoke: -EBUSY.
    guestGrantAccess(m, 0, 5, 2, 201, false);
    expect(mapGrantRef(m, 2, { dom: domid(0), ref: grantRef(5), host_gfn: gfn(150), readonly: false }).status).toBe(GNTST_okay);
    const busy = snapshot(m);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 })).toEqual({ rc: -EBUSY, index: 1, id: 0 });
    expect(snapshot(m)).toEqual(busy);
    clean(m);
    void before;
  });

  it('to an explicit gfn, or where each page came from; the quotas and the records go back', () => {
    const m = testMachine();
    const q = (): number[] => [0, 1].flatMap((d) => [m.dom.at(d, DOM.TOT_PAGES), m.dom.at(d, DOM.MAX_PAGES)]);
    const start = q();
    const mfn = mfnOf(m, 1, 10);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 }).rc).toBe(0);
    expect(dmRevoke(m, 0, { fe: 1, gfn: 10, count: 2 })).toBe(0);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 1, at: 120 }).rc).toBe(0);
    expect([entryType(p2mGet(m, 1, 120)), mfnOf(m, 1, 120)]).toEqual([P2M.ram_rw, mfn]);
    expect(p2mGet(m, 1, 10)).toBe(P2M_REVOKED);
    expect(p2mGet(m, 0, 200)).toBe(P2M_HOLE);
    expect(m.ft.owner(mfn)).toBe(1);
    expect(m.ft.count(mfn)).toBe(1);
    expect(dmReturn(m, 0, { fe: 1, gfn: 201, count: 1 }).rc).toBe(0); // where it was stolen from: gfn 11
    expect(entryType(p2mGet(m, 1, 11))).toBe(P2M.ram_rw);
    expect(q()).toEqual(start);
    expect(registryOf(m).activeCount()).toBe(0);
    // Returned: a second Return of the same gfn is -EINVAL.
    expect(dmReturn(m, 0, { fe: 1, gfn: 201, count: 1 })).toEqual({ rc: -EINVAL, index: 0, id: 0 });
    clean(m);
  });

  it('a stolen frame the backend ballooned out ends its Steal: a page at that gfn later is not returnable', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 0 }] });
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 });
    expect(dmRevoke(m, 0, { id: s.id })).toBe(0);
    expect(m.dom.at(0, DOM.TOT_PAGES)).toBe(65);
    expect(populateRange(m, 0, 201, 1)).toBe(0);
    expect(dmReturn(m, 0, { fe: 1, gfn: 201, count: 1 })).toEqual({ rc: -EINVAL, index: 0, id: 0 });
  });
});
