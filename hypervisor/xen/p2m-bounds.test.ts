/**
 * More of the p2m's bounds, from the survivors of p2m.ts's second mutation
 * run (docs/verification.md §8): the shootdown's wait on a scheduler with no
 * IPI of its own, lastOwing's ends, the revocation costs of a second
 * revocation, a Map superpage of mmio_dm, and the checks of p2m_set_entry
 * for a superpage over a table that holds holes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { CTL } from '../layout/control.js';
import { DOM } from '../layout/domains.js';
import { VC } from '../layout/vcpus.js';
import { PAGE_GEN, p2mEntry } from '../layout/p2m.js';
import { EEXIST, ENOMEM } from '../public/errno.js';
import { domid, gfn, P2M } from '../public/types.js';
import { domainCreate, populateRange } from './domain.js';
import { VcpuContext } from './guest-cpu.js';
import type { Machine } from './machine.js';
import { p2mCreate, p2mInsertSuper, p2mLeafWord, p2mLock, p2mMapSuperLocked, p2mSetLocked, p2mSuperFits, p2mUnlock } from './p2m.js';
import { realSched, setSched, type Sched } from './platform.js';
import { decreaseReservation } from './memory.js';
import { dmMap } from '../designs/primitives/map.js';

const ctl = (m: Machine, w: number): number => Atomics.load(m.control.w, w);

function guests(n: number, bugs = ''): { m: Machine; cpus: VcpuContext[]; be: VcpuContext } {
  const m = testMachine({ bugs, domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0, vcpus: n }] });
  const be = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
  be.start();
  const cpus = Array.from({ length: n }, (_, v) => new VcpuContext(m, { domid: 1, vcpu: v, slot: m.dom.at(1, DOM.VCPU_BASE) + v, memory_pages: 64, seed: 1 }));
  for (const c of cpus) c.start();
  return { m, cpus, be };
}

/** The clock starts far from 0 and moves 10 µs a spin; an IPI to a slot acknowledges d1's epoch `delay_us` later. */
function clockAndIpis(m: Machine, delay_us: number, withIpi = true): { s: Sched; asked: number[] } {
  let now = 1_000_000;
  const asked: number[] = [];
  const pending: Array<{ slot: number; at: number }> = [];
  const deliver = (): void => {
    for (const p of pending.splice(0)) {
      if (p.at <= now) m.vcpus.set(p.slot, VC.ACK_EPOCH, m.dom.at(1, DOM.FLUSH_EPOCH));
      else pending.push(p);
    }
  };
  const s: Sched = {
    ...realSched,
    now_us: () => now,
    relax: () => {
      now += 10;
      // Without IPIs (real threads): each vCPU of d1 in guest mode acknowledges at its next boundary, here the next spin.
      if (!withIpi) for (let v = 0; v < m.dom.at(1, DOM.NR_VCPUS); v++) pending.push({ slot: m.dom.at(1, DOM.VCPU_BASE) + v, at: now + delay_us });
      deliver();
    },
  };
  if (withIpi) {
    s.awaitAck = (slot) => {
      asked.push(slot);
      pending.push({ slot, at: now + delay_us });
      deliver();
    };
  }
  return { s, asked };
}

describe('TLB shootdown bounds', () => {
  afterEach(() => setSched(realSched));

  it('on real threads (no awaitAck) the wait spins until the vCPU acknowledges by itself', () => {
    const { m, cpus, be } = guests(1);
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 10 }, count: 1, at: 100 });
    setSched(clockAndIpis(m, 500, false).s);
    expect(be.hc.dm_revoke({ id: r.id })).toBe(0);
    expect(m.vcpus.at(m.dom.at(1, DOM.VCPU_BASE), VC.ACK_EPOCH)).toBe(m.dom.at(1, DOM.FLUSH_EPOCH));
    expect(ctl(m, CTL.REVOKE_VCPUS_PAUSED)).toBe(1);
    setSched(realSched);
    cpus[0]!.stop();
    be.stop();
  });

  it('the pause of a second revocation is its own (the costs are differences), and a revocation that waited for nobody paused for 0 µs', () => {
    const { m, cpus, be } = guests(2);
    const ids = [10, 11].map((g, k) => dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: g }, count: 1, at: 100 + k }).id);
    setSched(clockAndIpis(m, 1000).s);
    expect(be.hc.dm_revoke({ id: ids[0]! })).toBe(0);
    expect(ctl(m, CTL.REVOKE_PAUSE_US)).toBe(2000);
    expect(be.hc.dm_revoke({ id: ids[1]! })).toBe(0);
    expect(ctl(m, CTL.REVOKE_PAUSE_US)).toBe(4000);
    expect(ctl(m, CTL.REVOKE_PAUSE_MAX_US)).toBe(2000);
    setSched(realSched);
    for (const c of cpus) c.stop();
    // Nobody in guest mode: no pause at all.
    const third = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 12 }, count: 1, at: 102 });
    expect(be.hc.dm_revoke({ id: third.id })).toBe(0);
    expect(ctl(m, CTL.REVOKE_PAUSE_US)).toBe(4000);
    expect(ctl(m, CTL.REVOKE_VCPUS_PAUSED)).toBe(4);
    be.stop();
  });

  it('shootdown-skip-one-ack leaves out the highest vCPU in guest mode that owes, vCPU 0 included, never one that is offline', () => {
    const { m, cpus, be } = guests(3, 'shootdown-skip-one-ack');
    const base = m.dom.at(1, DOM.VCPU_BASE);
    const ids = [10, 11].map((g, k) => dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: g }, count: 1, at: 100 + k }).id);
    cpus[2]!.stop(); // offline, its acknowledgement stale: not the one left out
    const a = clockAndIpis(m, 0);
    setSched(a.s);
    expect(be.hc.dm_revoke({ id: ids[0]! })).toBe(0);
    expect(a.asked).toEqual([base]);
    // Only vCPU 0 owes now (vCPU 1 is ahead): it is the one left out.
    m.vcpus.set(base + 1, VC.ACK_EPOCH, m.dom.at(1, DOM.FLUSH_EPOCH) + 1);
    expect(be.hc.dm_revoke({ id: ids[1]! })).toBe(0);
    expect(a.asked).toEqual([base]);
  });
});

describe('p2m bounds', () => {
  it('a Map superpage of mmio_dm has its split page reserved too; a revocation\'s splits are its own', () => {
    const m = testMachine({ nr_frames: 4096, bars: [{ name: 'gpu', owner: 0, nr_pages: 512 }], domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }] });
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: m.sabs.bars[0]!.base_mfn }, count: 512, at: 0x800000, type: P2M.mmio_dm });
    expect(r.rc).toBe(0);
    const pages = m.dom.at(1, DOM.P2M_PAGES);
    expect(m.dom.at(1, DOM.P2M_RESERVED)).toBe(1);
    const be = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
    be.start();
    expect(be.hc.dm_revoke({ fe: domid(1), gfn: gfn(0x800000 + 9), count: 1 })).toBe(0);
    expect([m.dom.at(1, DOM.P2M_PAGES), m.dom.at(1, DOM.P2M_RESERVED)]).toEqual([pages, 0]);
    expect(be.hc.dm_revoke({ fe: domid(1), gfn: gfn(0x800000 + 10), count: 1 })).toBe(0); // split already
    expect(ctl(m, CTL.REVOKE_SPLITS)).toBe(1);
    expect(ctl(m, CTL.REVOCATIONS)).toBe(2);
    be.stop();
  });

  it('a split\'s new table starts with every GEN at 0 (the split writes 512 entries, not one more)', () => {
    const m = testMachine({ nr_frames: 4096, domains: [{ memory_pages: 1024, privileged: true }] });
    expect(decreaseReservation(m, 0, [600])).toBe(1);
    for (const g of [512, 513, 1023]) expect(Atomics.load(m.p2m.w, p2mLeafWord(m, 0, g) + PAGE_GEN), `gfn ${g}`).toBe(0);
  });

  it('a superpage over a table whose first entry is a hole is -EEXIST; one without room -ENOMEM; a Map superpage refused charges nothing', () => {
    const m = testMachine({ nr_frames: 2048, domains: [{ memory_pages: 16, privileged: true }] });
    expect(domainCreate(m, { domid: 1, max_pages: 16, nr_vcpus: 1, privileged: false, p2m_pages: 5 })).toBe(1);
    expect(populateRange(m, 1, 0, 4)).toBe(0); // 3 of 5 pages
    p2mLock(m, 1, 'test');
    try {
      p2mSetLocked(m, 1, 1024 + 5, p2mEntry(5, P2M.mmio_dm)); // a level-1 table for 1024–1535, gfn 1024 a hole: 4 of 5
      expect(p2mSuperFits(m, 1, 1024)).toBe(false);
      expect(p2mInsertSuper(m, 1, 1024, 2, p2mEntry(1024, P2M.mmio_dm))).toBe(-EEXIST);
      expect(p2mMapSuperLocked(m, 1, 0, p2mEntry(1024, P2M.mmio_direct))).toBe(-EEXIST);
      expect([m.dom.at(1, DOM.P2M_PAGES), m.dom.at(1, DOM.P2M_RESERVED)]).toEqual([4, 0]);
      // A 2 MiB superpage far away needs a level-2 table: 1 page left, so it fits; a second one does not.
      expect(p2mInsertSuper(m, 1, 0x800000, 2, p2mEntry(1536, P2M.mmio_dm))).toBe(0);
      expect(p2mInsertSuper(m, 1, 0xc00000, 2, p2mEntry(1536, P2M.mmio_dm))).toBe(-ENOMEM);
    } finally {
      p2mUnlock(m, 1);
    }
  });

  it('p2m_init takes a share of one page', () => {
    const m = testMachine({ domains: [{ memory_pages: 16, privileged: true }] });
    expect(p2mCreate(m, 5, 36, 1, 3)).toBe(0);
    expect(m.dom.at(5, DOM.P2M_PAGES_MAX)).toBe(1);
  });
});
