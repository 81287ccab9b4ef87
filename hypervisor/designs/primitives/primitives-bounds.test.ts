/**
 * The primitives' paths the first mutation runs found untested
 * (docs/verification.md §8): Map traced, the chaos rendezvous of a Map with
 * a destroy, a teardown between the checks and the registry lock, what a
 * record holds, sources of every kind, BAR superpages at a misaligned gfn,
 * and a full registry.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { testMachine } from '../../../tests/test-machine.js';
import type { Machine } from '../../xen/machine.js';
import { dmMap } from './map.js';
import { dmRevoke, faultServer } from './revoke.js';
import { dmReturn } from './return.js';
import { dmSteal } from './steal.js';
import { registryOf } from './common.js';
import { KIND, REC } from './registry.js';
import { EBUSY, EEXIST, EINVAL, ENOENT, ENOMEM, ENOSPC, EPERM, ESRCH } from '../../public/errno.js';
import { gfn, P2M } from '../../public/types.js';
import { p2mGet, p2mGfnLimit, p2mLock, p2mSetLocked, p2mUnlock } from '../../xen/p2m.js';
import { PGC_allocated } from '../../layout/frametable.js';
import { entryMfn, entryType, p2mEntry, P2M_HOLE, P2M_REVOKED } from '../../layout/p2m.js';
import { CTL } from '../../layout/control.js';
import { DOM, DS } from '../../layout/domains.js';
import { MAX_MAPPINGS } from '../../layout/constants.js';
import { domainCreate, domainDestroy, populateRange } from '../../xen/domain.js';
import { decreaseReservation, foreignMap } from '../../xen/memory.js';
import { armHook, disarmHooks } from '../../xen/hooks.js';
import { realSched, setSched } from '../../xen/platform.js';
import { clearTracer, hostRing, setHostTracer } from '../../xen/trace.js';
import { EV, kindOf, RING, TK } from '../../layout/trace.js';
import { ioreqServerCreate } from '../../xen/ioreq.js';
import { VcpuContext } from '../../xen/guest-cpu.js';
import { expectClean } from '../../../tests/expect-clean.js';

const mfnOf = (m: Machine, d: number, g: number): number => entryMfn(p2mGet(m, d, g));
const clean = (m: Machine): void => expectClean(m);
const fields = [REC.KIND, REC.BACKEND, REC.FRONTEND, REC.SRC, REC.FE_GFN, REC.COUNT, REC.LIVE, REC.TYPE, REC.PARENT, REC.PARENT_ID, REC.STATE];
const record = (m: Machine, id: number): number[] => fields.map((f) => registryOf(m).at(registryOf(m).find(id), f));

afterEach(() => {
  disarmHooks();
  setSched(realSched);
  clearTracer();
});

describe('Map', () => {
  it('traced, it answers as untraced and leaves a begin and an end event', () => {
    const m = testMachine({ trace: { rings: 2, ring_events: 64 } });
    const t = m.trace!;
    setHostTracer(t);
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 });
    const bad = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 0, at: 100 });
    clearTracer();
    expect(r.rc).toBe(0);
    expect(record(m, r.id)[0]).toBe(KIND.MAP_RAM);
    expect(bad.rc).toBe(-EINVAL);
    const ring = hostRing(t);
    const head = Atomics.load(t.rings, t.ringIdx(ring, RING.HEAD));
    const kinds = Array.from({ length: head }, (_, i) => kindOf(t.ev[t.eventIdx(ring, i) + EV.KIND]!));
    expect(kinds.filter((k) => k === TK.PRIM_B)).toHaveLength(2);
    expect(kinds.filter((k) => k === TK.PRIM_E)).toHaveLength(2);
  });

  it('chaos destroy-mid-map: a Map into the armed frontend says it began and waits, holding no lock, until the host moves on or 50 ms pass', () => {
    const m = testMachine();
    let now = 5_000_000;
    let spins = 0;
    let answerAt = Infinity;
    setSched({
      ...realSched,
      now_us: () => now,
      relax: () => {
        spins++;
        now += 100;
        if (spins >= answerAt) Atomics.store(m.control.w, CTL.MIDMAP_FE, 0); // the host started the destroy
      },
    });
    // Armed for d2: a Map into d1 does not wait.
    Atomics.store(m.control.w, CTL.MIDMAP_FE, 3);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(0);
    expect([spins, Atomics.load(m.control.w, CTL.MIDMAP_FE)]).toEqual([0, 3]);
    // Into d2: it waits the whole 50 ms when the host never answers.
    expect(dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(0);
    expect(Atomics.load(m.control.w, CTL.MIDMAP_FE)).toBe(-3);
    expect(spins).toBe(500);
    // Armed again, answered after 7 spins: the Map goes on at once.
    spins = 0;
    answerAt = 7;
    Atomics.store(m.control.w, CTL.MIDMAP_FE, 3);
    expect(dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 1, at: 101 }).rc).toBe(0);
    expect([spins, Atomics.load(m.control.w, CTL.MIDMAP_FE)]).toEqual([7, 0]);
  });

  it('a frontend or backend destroyed between the checks and the registry lock: -ESRCH, nothing mapped (notDying under the lock)', () => {
    for (const dying of [1, 2]) {
      // d1 is d2's backend; d0 destroys one of them at the hook.
      const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
      armHook('map.after_checks', () => expect(domainDestroy(m, dying)).toBe(0));
      expect(dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(-ESRCH);
      expect(m.dom.state(dying)).not.toBe(DS.RUNNING);
      expect(registryOf(m).activeCount()).toBe(0);
      const other = 3 - dying;
      expect(p2mGet(m, other, 100)).toBe(P2M_HOLE);
    }
  });

  it('what a record holds: a BAR Map\'s kind, first frame and no parent; a nested Map\'s parent and its id', () => {
    const m = testMachine({ bars: [{ name: 'gpu', owner: 0, nr_pages: 8 }], domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
    const bar = m.sabs.bars[0]!.base_mfn;
    const b = dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: bar + 2 }, count: 3, at: 100 });
    expect(record(m, b.id)).toEqual([KIND.MAP_BAR, 0, 1, bar + 2, 100, 3, 3, P2M.mmio_direct, 0, 0, 1]);
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 200, type: P2M.mmio_dm });
    // d1 passes on what it received as mmio_dm: a nested Map of it.
    const n = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 201 }, count: 1, at: 300 });
    expect(record(m, n.id)).toEqual([KIND.MAP_NESTED, 1, 2, 201, 300, 1, 1, P2M.mmio_direct, registryOf(m).find(r.id) + 1, r.id, 1]);
    expect(mfnOf(m, 2, 300)).toBe(mfnOf(m, 0, 5));
    // Frames of a BAR Map passed on are nested too.
    const nb = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 100 }, count: 3, at: 310 });
    expect(nb.rc).toBe(0);
    expect(record(m, nb.id)[0]).toBe(KIND.MAP_NESTED);
    // RAM followed by a Map'd page: one kind per Map, -EINVAL at the first page of the other.
    const edge = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 6 }, count: 1, at: 64 });
    expect(edge.rc).toBe(0);
    expect(dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 63 }, count: 2, at: 320 })).toEqual({ rc: -EINVAL, index: 1, id: 0 });
    expect(dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 64 }, count: 1, at: 320 }).rc).toBe(0);
    clean(m);
  });

  it('a source page of be that is read-only RAM is no Map source (-EINVAL)', () => {
    const m = testMachine();
    p2mLock(m, 0, 'test');
    p2mSetLocked(m, 0, 7, p2mEntry(mfnOf(m, 0, 7), P2M.ram_ro));
    p2mUnlock(m, 0);
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 6 }, count: 2, at: 100 })).toEqual({ rc: -EINVAL, index: 1, id: 0 });
    expect(p2mGet(m, 1, 100)).toBe(P2M_HOLE);
  });

  it('a BAR range aligned on the frame but not on the gfn is 4 KiB pages (mmio_order needs both)', () => {
    const m = testMachine({ nr_frames: 4096, bars: [{ name: 'gpu', owner: 0, nr_pages: 512 }], domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }] });
    const bar = m.sabs.bars[0]!.base_mfn;
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: bar }, count: 512, at: 0x800001 });
    expect(r.rc).toBe(0);
    expect(m.dom.at(1, DOM.P2M_RESERVED)).toBe(0);
    expect(mfnOf(m, 1, 0x800001 + 511)).toBe(bar + 511);
    expect(entryType(p2mGet(m, 1, 0x800001))).toBe(P2M.mmio_direct);
    expect(dmRevoke(m, 0, { id: r.id })).toBe(0);
  });

  it('a full registry: Steals whose frames were freed give their records back first; with none, -ENOSPC and nothing done', () => {
    const m = testMachine({ nr_frames: 2048, domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0, p2m_size: 4096 }, { memory_pages: 64, backend: 0 }] });
    // A Steal from d2 whose frame d0 then frees: its Steal is over, its record still there.
    const s = dmSteal(m, 0, { fe: 2, gfn: 10, count: 1, into: 200 });
    expect(s.rc).toBe(0);
    expect(dmRevoke(m, 0, { id: s.id })).toBe(0);
    expect(decreaseReservation(m, 0, [200])).toBe(1);
    const reg = registryOf(m);
    expect(reg.activeCount()).toBe(1); // the Steal record; its implicit Map is a tombstone
    // Fill the registry with live Maps (the tombstone is reused by the first).
    let n = 0;
    while (reg.activeCount() < MAX_MAPPINGS) expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 + n++ }).rc).toBe(0);
    const refs = m.ft.count(mfnOf(m, 0, 4));
    // Full: the over Steal's record is reaped for the next Map.
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 + n }).rc).toBe(0);
    expect(reg.activeCount()).toBe(MAX_MAPPINGS);
    // Now nothing to reap: -ENOSPC, no entry, no reference.
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 101 + n })).toEqual({ rc: -ENOSPC, index: -1, id: 0 });
    expect(p2mGet(m, 1, 101 + n)).toBe(P2M_HOLE);
    expect(m.ft.count(mfnOf(m, 0, 4))).toBe(refs + 1);
  });
});

describe('Revoke', () => {
  it('a revoked gfn faults to the server of the backend whose mapping was revoked there, not the first server (the seed\'s per-server FAULT set)', () => {
    for (const bugs of ['', 'fault-to-first-server']) {
      const m = testMachine({ bugs, domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
      const s0 = ioreqServerCreate(m, 0, 2, [], 'none');
      const s1 = ioreqServerCreate(m, 1, 2, [], 'none');
      expect([s0, s1].every((s) => s >= 0) && s0 !== s1).toBe(true);
      const a = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
      const b = dmMap(m, 0, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 1, at: 101 });
      expect(dmRevoke(m, 1, { id: a.id })).toBe(0);
      expect(dmRevoke(m, 0, { id: b.id })).toBe(0);
      expect([faultServer(m, 2, 100), faultServer(m, 2, 101)], bugs).toEqual(bugs === '' ? [s1, s0] : [s0, s0]);
      if (bugs === '') {
        // Not revoked: RAM, a hole, a gfn out of range, a superpage gfn: no fault owner.
        for (const g of [5, 200, -1]) expect(faultServer(m, 2, g)).toBe(-1);
        // d1's server gone: its revoked gfn has no server (Xen's null handler answers).
        expect(domainDestroy(m, 1)).toBe(0);
        expect(faultServer(m, 2, 100)).toBe(-1);
        expect(faultServer(m, 2, 101)).toBe(s0);
      }
    }
  });

  it('transitive Revoke takes the nested pages made from the revoked pages, and only those', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }] });
    const p = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 3, at: 100 });
    const q = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 8 }, count: 1, at: 110 });
    const c1 = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 101 }, count: 2, at: 200 }); // pages 1, 2 of p
    const c2 = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 110 }, count: 1, at: 210 }); // of q
    expect([p, q, c1, c2].map((r) => r.rc)).toEqual([0, 0, 0, 0]);
    expect(dmRevoke(m, 0, { fe: 1, gfn: 100, count: 1 })).toBe(0); // page 0 of p: nothing made from it
    expect([200, 201, 210].map((g) => entryType(p2mGet(m, 2, g)))).toEqual([P2M.mmio_direct, P2M.mmio_direct, P2M.mmio_direct]);
    expect(dmRevoke(m, 0, { fe: 1, gfn: 102, count: 1 })).toBe(0); // page 2 of p: c1's page 1 goes
    expect([p2mGet(m, 2, 200) === P2M_REVOKED, p2mGet(m, 2, 201) === P2M_REVOKED, p2mGet(m, 2, 210) === P2M_REVOKED]).toEqual([false, true, false]);
    // By id, the rest of p: c1's last page, and c1 is a tombstone; q's child stays.
    expect(dmRevoke(m, 0, { id: p.id })).toBe(0);
    expect(p2mGet(m, 2, 200)).toBe(P2M_REVOKED);
    expect(registryOf(m).at(registryOf(m).find(c1.id), REC.STATE)).toBe(2);
    expect(registryOf(m).at(registryOf(m).find(p.id), REC.LIVE)).toBe(0);
    expect(entryType(p2mGet(m, 2, 210))).toBe(P2M.mmio_direct);
    expect(m.ft.count(mfnOf(m, 0, 5))).toBe(1);
    clean(m);
  });

  it('a range Revoke of one frontend leaves the same gfns of another frontend alone; a backend that is not privileged revokes its own', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 1 }, { memory_pages: 64, backend: 1 }] });
    const a = dmMap(m, 1, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 });
    const b = dmMap(m, 1, { fe: 3, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 });
    expect(a.rc + b.rc).toBe(0);
    expect(dmRevoke(m, 1, { fe: 2, gfn: 100, count: 2 })).toBe(0);
    expect([p2mGet(m, 2, 100), p2mGet(m, 3, 100)].map((e) => e === P2M_REVOKED)).toEqual([true, false]);
    expect(dmRevoke(m, 1, { fe: 0, gfn: 100, count: 1 })).toBe(-EPERM); // dom0 is nobody's frontend here
    // d3 destroyed and freed: d1, its backend, gets 0 from a range Revoke (nothing is left).
    expect(domainDestroy(m, 3)).toBe(0);
    expect(m.dom.state(3)).toBe(DS.FREE);
    expect(dmRevoke(m, 1, { fe: 3, gfn: 100, count: 1 })).toBe(0);
    expect(registryOf(m).at(registryOf(m).find(b.id), REC.STATE)).toBe(2);
  });

  it('revoking a Steal\'s implicit Map unlinks it from the Steal record, which lives on until Return', () => {
    const m = testMachine();
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 });
    const reg = registryOf(m);
    const steal = reg.find(s.id + 1);
    expect(reg.at(steal, REC.LINK)).toBe(reg.find(s.id) + 1);
    expect(dmRevoke(m, 0, { fe: 1, gfn: 10, count: 1 })).toBe(0);
    expect(reg.at(steal, REC.LINK)).toBe(reg.find(s.id) + 1); // one page left
    expect(dmRevoke(m, 0, { id: s.id })).toBe(0);
    expect(reg.at(steal, REC.LINK)).toBe(0);
    expect(reg.at(steal, REC.STATE)).toBe(1);
    expect(dmReturn(m, 0, { fe: 1, gfn: 200, count: 2 }).rc).toBe(0);
    clean(m);
  });

  it('an id whose tombstone was reused answers 0; with revoke-dead-frontend-esrch, -ENOENT (and a freed frontend -ESRCH)', () => {
    for (const bugs of ['', 'revoke-dead-frontend-esrch']) {
      const m = testMachine({ bugs });
      const old = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
      expect(dmRevoke(m, 0, { id: old.id })).toBe(0);
      const reg = registryOf(m);
      const slot = reg.find(old.id);
      // Fill every other record, then one more Map: the tombstone is reused.
      let n = 1;
      while (reg.activeCount() < MAX_MAPPINGS - 1) expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 + n++ }).rc).toBe(0);
      expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 + n }).rc).toBe(0);
      expect(reg.find(old.id)).toBe(-1);
      expect(reg.at(slot, REC.STATE)).toBe(1);
      expect(dmRevoke(m, 0, { id: old.id }), bugs).toBe(bugs === '' ? 0 : -ENOENT);
      expect(dmRevoke(m, 0, { id: 10 ** 6 })).toBe(-ENOENT);
      expect(domainDestroy(m, 2)).toBe(0);
      expect(dmRevoke(m, 0, { fe: 2, gfn: 100, count: 1 }), bugs).toBe(bugs === '' ? 0 : -ESRCH);
    }
  });

  it('traced, a Revoke leaves its begin and end events and revokes as untraced', () => {
    const m = testMachine({ trace: { rings: 2, ring_events: 64 } });
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 });
    const t = m.trace!;
    setHostTracer(t);
    expect(dmRevoke(m, 0, { id: r.id })).toBe(0);
    clearTracer();
    expect(p2mGet(m, 1, 101)).toBe(P2M_REVOKED);
    const ring = hostRing(t);
    const head = Atomics.load(t.rings, t.ringIdx(ring, RING.HEAD));
    const evs = Array.from({ length: head }, (_, i) => t.eventIdx(ring, i)).map((i) => [kindOf(t.ev[i + EV.KIND]!), t.ev[i + EV.A]!, t.ev[i + EV.B]!]);
    expect(evs.filter(([k]) => k === TK.PRIM_B)).toEqual([[TK.PRIM_B, 1, 2]]);
    expect(evs.filter(([k]) => k === TK.PRIM_E)).toHaveLength(1);
  });

  it('revoke-put-before-flush: a vCPU of the frontend still reaching the page before the entry goes has lost its right to it already', () => {
    for (const bugs of ['', 'revoke-put-before-flush']) {
      const m = testMachine({ bugs });
      const r = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
      const fe = new VcpuContext(m, { domid: 1, vcpu: 0, slot: m.dom.at(1, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
      fe.start();
      expect(fe.read32(gfn(100), 0)).toBe(0);
      fe.stop();
      armHook('revoke.before_remove', () => {
        fe.start();
        fe.read32(gfn(100), 0); // the entry is still there: a racing access on another pCPU
        fe.stop();
      });
      expect(dmRevoke(m, 0, { id: r.id })).toBe(0);
      expect(m.log.records().map((x) => x.invariant), bugs).toEqual(bugs === '' ? [] : ['isolation']);
      expect(m.ft.count(mfnOf(m, 0, 4))).toBe(1);
    }
  });
});

describe('Steal', () => {
  it('traced, it answers as untraced and leaves a begin and an end event', () => {
    const m = testMachine({ trace: { rings: 2, ring_events: 64 } });
    const t = m.trace!;
    setHostTracer(t);
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 });
    clearTracer();
    expect(s.rc).toBe(0);
    expect(m.ft.owner(mfnOf(m, 0, 201))).toBe(0);
    const ring = hostRing(t);
    const head = Atomics.load(t.rings, t.ringIdx(ring, RING.HEAD));
    const evs = Array.from({ length: head }, (_, i) => t.eventIdx(ring, i)).map((i) => [kindOf(t.ev[i + EV.KIND]!), t.ev[i + EV.A]!, t.ev[i + EV.B]!]);
    expect(evs.filter(([k]) => k === TK.PRIM_B)).toEqual([[TK.PRIM_B, 1, 2]]);
  });

  it('a frontend destroyed between the checks and the registry lock: -ESRCH, nothing taken', () => {
    const m = testMachine();
    const mfn = mfnOf(m, 1, 10);
    armHook('steal.after_checks', () => expect(domainDestroy(m, 1)).toBe(0));
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 })).toEqual({ rc: -ESRCH, index: -1, id: 0 });
    expect(p2mGet(m, 0, 200)).toBe(P2M_HOLE);
    expect(m.ft.owner(mfn)).not.toBe(0);
    expect(registryOf(m).activeCount()).toBe(0);
  });

  it('with no `into`: the lowest run of holes above be\'s highest RAM gfn, ram_ro and superpages included, a run cut by anything else', () => {
    const m = testMachine();
    p2mLock(m, 0, 'test');
    p2mSetLocked(m, 0, 80, p2mEntry(mfnOf(m, 0, 5), P2M.ram_ro)); // RAM up to 80 (read-only)
    p2mSetLocked(m, 0, 82, p2mEntry(mfnOf(m, 0, 6), P2M.mmio_dm)); // not RAM: cuts the run 81–
    p2mUnlock(m, 0);
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 2 });
    expect(s.rc).toBe(0);
    expect([mfnOf(m, 0, 83), mfnOf(m, 0, 84)]).toEqual([mfnOf(m, 1, 10), mfnOf(m, 1, 11)]);
    expect(p2mGet(m, 0, 81)).toBe(P2M_HOLE);
    // The next goes above those: they are be's RAM now (the hole at 81 is below it).
    expect(dmSteal(m, 0, { fe: 1, gfn: 12, count: 1 }).rc).toBe(0);
    expect(mfnOf(m, 0, 85)).toBe(mfnOf(m, 1, 12));
    expect(p2mGet(m, 0, 81)).toBe(P2M_HOLE);
    // A backend whose RAM is superpages: above the last superpage's last gfn.
    const big = testMachine({ nr_frames: 4096, domains: [{ memory_pages: 1024, max_pages: 1100, privileged: true }, { memory_pages: 64, backend: 0 }] });
    expect(dmSteal(big, 0, { fe: 1, gfn: 10, count: 1 }).rc).toBe(0);
    expect(mfnOf(big, 0, 1024)).toBe(mfnOf(big, 1, 10));
  });

  it('no table page left for be\'s new entries: -ENOMEM, nothing taken (p2m_set_entry failing)', () => {
    // d1 (d2's backend) has a share of three table pages, all in use: a far gfn needs two more.
    const m = testMachine({ domains: [{ memory_pages: 16, privileged: true }] });
    expect(domainCreate(m, { domid: 1, max_pages: 64, nr_vcpus: 1, privileged: false, p2m_pages: 3 })).toBe(1);
    expect(domainCreate(m, { domid: 2, max_pages: 16, nr_vcpus: 1, privileged: false, p2m_pages: 3, backend: 1 })).toBe(2);
    expect(populateRange(m, 1, 0, 4)).toBe(0);
    expect(populateRange(m, 2, 0, 16)).toBe(0);
    const before = [m.dom.at(1, DOM.TOT_PAGES), m.dom.at(2, DOM.TOT_PAGES), mfnOf(m, 2, 10)];
    expect(dmSteal(m, 1, { fe: 2, gfn: 10, count: 1, into: 0x800000 })).toEqual({ rc: -ENOMEM, index: -1, id: 0 });
    expect([m.dom.at(1, DOM.TOT_PAGES), m.dom.at(2, DOM.TOT_PAGES), mfnOf(m, 2, 10)]).toEqual(before);
    expect(entryType(p2mGet(m, 2, 10))).toBe(P2M.ram_rw);
    expect(dmSteal(m, 1, { fe: 2, gfn: 10, count: 1, into: 100 }).rc).toBe(0); // in its table: fits
  });

  it('fewer than two free records: Steals whose frames were freed are reaped first; then -ENOSPC and nothing taken', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0, p2m_size: 4096 }, { memory_pages: 64, backend: 0 }] });
    const s = dmSteal(m, 0, { fe: 2, gfn: 10, count: 1, into: 200 });
    expect(dmRevoke(m, 0, { id: s.id })).toBe(0);
    expect(decreaseReservation(m, 0, [200])).toBe(1); // the Steal is over; its record stays until reaped
    const reg = registryOf(m);
    let n = 0;
    while (reg.activeCount() < MAX_MAPPINGS - 1) expect(dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 + n++ }).rc).toBe(0);
    // One free record and the over Steal's: reaped, the new Steal takes two.
    expect(dmSteal(m, 0, { fe: 2, gfn: 11, count: 1, into: 201 }).rc).toBe(0);
    expect(reg.activeCount()).toBe(MAX_MAPPINGS);
    const mfn = mfnOf(m, 2, 12);
    expect(dmSteal(m, 0, { fe: 2, gfn: 12, count: 1, into: 202 })).toEqual({ rc: -ENOSPC, index: -1, id: 0 });
    expect([m.ft.owner(mfn), entryType(p2mGet(m, 2, 12)), p2mGet(m, 0, 202)]).toEqual([2, P2M.ram_rw, P2M_HOLE]);
  });

  it('steal-keeps-quota: a backend with room below its max_pages steals (up to it exactly), the max_pages unmoved', () => {
    const m = testMachine({ bugs: 'steal-keeps-quota', domains: [{ memory_pages: 64, max_pages: 66, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 0 }] });
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 }).rc).toBe(0);
    expect([0, 1].map((d) => [m.dom.at(d, DOM.TOT_PAGES), m.dom.at(d, DOM.MAX_PAGES)])).toEqual([
      [66, 66],
      [62, 64],
    ]);
  });
});

describe('Steal into no named gfn', () => {
  it('never into a balloon hole below be\'s RAM, nor next to a non-RAM entry above it (the guest may populate the hole again)', () => {
    const m = testMachine();
    expect(decreaseReservation(m, 0, [30, 31])).toBe(2);
    p2mLock(m, 0, 'test');
    p2mSetLocked(m, 0, 90, p2mEntry(mfnOf(m, 0, 6), P2M.mmio_dm)); // above the RAM, not RAM: no floor
    p2mUnlock(m, 0);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2 }).rc).toBe(0);
    expect([mfnOf(m, 0, 64), mfnOf(m, 0, 65)]).toEqual([mfnOf(m, 1, 10), mfnOf(m, 1, 11)]);
    expect([p2mGet(m, 0, 30), p2mGet(m, 0, 31), p2mGet(m, 0, 91)]).toEqual([P2M_HOLE, P2M_HOLE, P2M_HOLE]);
  });
});

describe('Steal: the freeze, the unlocked transfer, no room above the RAM', () => {
  it('a reference taken between the checks and the freeze (a racer\'s get_page): steal_page\'s cmpxchg fails, -EBUSY at that page, the counts frozen before it restored, nothing taken', () => {
    const m = testMachine();
    const mfns = [10, 11, 12].map((g) => mfnOf(m, 1, g));
    const cas = m.ft.casCount.bind(m.ft);
    m.ft.casCount = (mfn, expected, value): boolean => {
      const r = cas(mfn, expected, value);
      if (mfn === mfns[1]) m.ft.storeCount(mfns[2]!, m.ft.countInfo(mfns[2]!) + 1); // the racer, after the checks, before the third page's freeze
      return r;
    };
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 3, into: 200 })).toEqual({ rc: -EBUSY, index: 2, id: 0 });
    m.ft.casCount = cas;
    expect(mfns.map((f) => [m.ft.owner(f), m.ft.countInfo(f)])).toEqual([
      [1, PGC_allocated | 1],
      [1, PGC_allocated | 1],
      [1, PGC_allocated | 2],
    ]);
    expect([10, 11, 12].map((g) => entryType(p2mGet(m, 1, g)))).toEqual([P2M.ram_rw, P2M.ram_rw, P2M.ram_rw]);
    expect([200, 201, 202].map((g) => p2mGet(m, 0, g))).toEqual([P2M_HOLE, P2M_HOLE, P2M_HOLE]);
    expect([m.dom.at(0, DOM.TOT_PAGES), m.dom.at(1, DOM.TOT_PAGES), registryOf(m).activeCount()]).toEqual([64, 64, 0]);
    m.ft.storeCount(mfns[2]!, PGC_allocated | 1); // the racer's put_page
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 3, into: 200 }).rc).toBe(0);
    clean(m);
  });

  it('the checks go page by page: a referenced first page is -EBUSY at 0 even when the second is no RAM (steal_page: count_info == PGC_allocated | 1)', () => {
    const m = testMachine();
    expect(foreignMap(m, 0, 1, 63, 90)).toBe(0); // d0 maps fe's gfn 63: a reference, no grant
    const mfn = mfnOf(m, 1, 63);
    expect(m.ft.countInfo(mfn)).toBe(PGC_allocated | 2);
    expect(dmSteal(m, 0, { fe: 1, gfn: 63, count: 2, into: 200 })).toEqual({ rc: -EBUSY, index: 0, id: 0 }); // gfn 64: a hole
    expect(dmSteal(m, 0, { fe: 1, gfn: 64, count: 1, into: 200 })).toEqual({ rc: -EINVAL, index: 0, id: 0 });
    expect([m.ft.owner(mfn), entryType(p2mGet(m, 1, 63)), p2mGet(m, 0, 200)]).toEqual([1, P2M.ram_rw, P2M_HOLE]);
  });

  it('fe\'s own RAM mapped read-only is not its plain RAM: -EINVAL, nothing taken (docs/primitives.md, Steal)', () => {
    const m = testMachine();
    const mfn = mfnOf(m, 1, 11);
    p2mLock(m, 1, 'test');
    p2mSetLocked(m, 1, 11, p2mEntry(mfn, P2M.ram_ro));
    p2mUnlock(m, 1);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 })).toEqual({ rc: -EINVAL, index: 1, id: 0 });
    expect([m.ft.owner(mfn), m.ft.owner(mfnOf(m, 1, 10)), p2mGet(m, 0, 200), p2mGet(m, 0, 201)]).toEqual([1, 1, P2M_HOLE, P2M_HOLE]);
  });

  it('fe\'s gfn 0 is stealable: an unused grant entry (frame 0, no GTF_permit_access) grants nothing; be\'s gfn 0 as `into` is occupied, -EEXIST', () => {
    const m = testMachine();
    expect(dmSteal(m, 0, { fe: 1, gfn: 0, count: 1, into: 0 })).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    const mfn = mfnOf(m, 1, 0);
    expect(dmSteal(m, 0, { fe: 1, gfn: 0, count: 1, into: 200 }).rc).toBe(0);
    expect([m.ft.owner(mfn), mfnOf(m, 0, 200), entryType(p2mGet(m, 1, 0))]).toEqual([0, mfn, P2M.mmio_direct]);
    clean(m);
  });

  it('the destination is exactly `count` gfns: one page into the hole just below a stolen page, or into be\'s last gfn, is fine', () => {
    const m = testMachine();
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 }).rc).toBe(0);
    expect(dmSteal(m, 0, { fe: 1, gfn: 11, count: 1, into: 199 }).rc).toBe(0);
    expect(dmSteal(m, 0, { fe: 1, gfn: 12, count: 2, into: p2mGfnLimit(m, 0) - 2 })).toEqual({ rc: 0, index: -1, id: expect.any(Number) as number });
    expect([mfnOf(m, 0, 199), mfnOf(m, 0, p2mGfnLimit(m, 0) - 1)]).toEqual([mfnOf(m, 1, 11), mfnOf(m, 1, 13)]);
  });

  it('steal-unlocked-transfer: the locks drop before the transfer, a reference taken in that window is frozen into the count and lost; without it the window is after the Steal', () => {
    for (const bugs of ['steal-unlocked-transfer', '']) {
      const m = testMachine({ bugs });
      const mfn = mfnOf(m, 1, 10);
      let seen = -1;
      armHook('steal.window', () => {
        seen = entryType(p2mGet(m, 1, 10));
        m.ft.storeCount(mfn, m.ft.countInfo(mfn) + 1); // a racing get_page (grant map, foreign map, copy)
      });
      expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 }).rc).toBe(0);
      // The bug: the window is before fe's entry changes, and the racer's reference is gone from the count.
      expect([seen, m.ft.countInfo(mfn)]).toEqual(bugs === '' ? [P2M.mmio_direct, PGC_allocated | 3] : [P2M.ram_rw, PGC_allocated | 2]);
    }
  });

  it('with no `into` and be\'s RAM up to the top of its p2m: no run of holes above it, -ENOSPC, nothing taken', () => {
    const m = testMachine();
    const top = p2mGfnLimit(m, 0) - 1;
    expect(populateRange(m, 0, top, 1)).toBe(0);
    const mfn = mfnOf(m, 1, 10);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1 })).toEqual({ rc: -ENOSPC, index: -1, id: 0 });
    expect([m.ft.owner(mfn), entryType(p2mGet(m, 1, 10)), p2mGet(m, 0, 64), registryOf(m).activeCount()]).toEqual([1, P2M.ram_rw, P2M_HOLE, 0]);
    expect(dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 64 }).rc).toBe(0); // a named gfn below it is fine
  });
});
