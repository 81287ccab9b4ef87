/**
 * dm.ts at its bounds: XEN_DMOP_set_mem_type (xen/arch/x86/hvm/dm.c) — who
 * may call it (rcu_lock_remote_domain_by_id, xsm_dm_op's XSM_DM_PRIV), the
 * range and type checks before any gfn is touched, gfn by gfn up to the first
 * refusal (allow_p2m_type_change: RAM types only), the flush only when write
 * access is taken away, -ENOMEM where a superpage cannot be split, and the
 * target's reference given back on every exit.
 */
import { describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { DOM } from '../layout/domains.js';
import { entryMfn, entryType, P2M_HOLE } from '../layout/p2m.js';
import { EINVAL, ENOMEM, EPERM, ESRCH } from '../public/errno.js';
import { P2M } from '../public/types.js';
import { dmSetMemType } from './dm.js';
import { domainCreate, populateRange } from './domain.js';
import { decreaseReservation, populatePhysmap } from './memory.js';
import { designOf } from './design.js';
import type { Machine } from './machine.js';
import { p2mGet, p2mGfnLimit } from './p2m.js';

const refs = (m: Machine, d: number): number => m.dom.at(d, DOM.REFCNT);
const types = (m: Machine, d: number, gfns: readonly number[]): number[] => gfns.map((g) => entryType(p2mGet(m, d, g)));
const RW = P2M.ram_rw;
const RO = P2M.ram_ro;

describe('dm_op set_mem_type', () => {
  // d0 privileged; d1 unprivileged, device model of d2; d3 served by d0; d4 by nobody.
  const machine = (): Machine =>
    testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 16 }, { memory_pages: 16, backend: 1 }, { memory_pages: 16, backend: 0 }, { memory_pages: 16 }] });

  it('who may: the control domain and the target\'s device model; not the target itself, another domain, a free or absent domid', () => {
    const m = machine();
    const before = [0, 1, 2, 3, 4].map((d) => refs(m, d));
    expect(dmSetMemType(m, 1, 2, 3, 1, RO)).toBe(0); // its device model, unprivileged
    expect(dmSetMemType(m, 0, 4, 3, 1, RO)).toBe(0); // the control domain, no device model in between
    expect(dmSetMemType(m, 0, 3, 3, 1, RO)).toBe(0);
    expect(dmSetMemType(m, 3, 2, 4, 1, RO)).toBe(-EPERM); // another domain
    expect(dmSetMemType(m, 2, 4, 4, 1, RO)).toBe(-EPERM); // no backend: BACKEND 0 is not d${-1} + 1… nor d2's
    expect(dmSetMemType(m, 1, 1, 4, 1, RO)).toBe(-EPERM); // itself
    expect(dmSetMemType(m, 0, 0, 4, 1, RO)).toBe(-EPERM); // itself, privileged
    expect(dmSetMemType(m, 0, 7, 4, 1, RO)).toBe(-ESRCH); // free slot
    expect(dmSetMemType(m, 0, m.nd, 4, 1, RO)).toBe(-ESRCH);
    expect(dmSetMemType(m, 0, -1, 4, 1, RO)).toBe(-ESRCH);
    expect(types(m, 2, [3, 4])).toEqual([RO, RW]);
    expect(types(m, 4, [3, 4])).toEqual([RO, RW]);
    expect([0, 1, 2, 3, 4].map((d) => refs(m, d))).toEqual(before);
  });

  it('the range and the type are checked before any gfn changes', () => {
    const m = machine();
    const all = Array.from({ length: 16 }, (_, g) => g);
    const rw = all.map(() => RW);
    const lim = p2mGfnLimit(m, 3);
    for (const [first, nr] of [
      [1.5, 2],
      [2, 1.5],
      [2, 0],
      [2, -1],
      [-1, 3],
      [NaN, 1],
      [2, NaN],
      [14, lim - 14 + 1], // ends one past the p2m
      [lim, 1],
    ] as const) {
      expect(dmSetMemType(m, 0, 3, first, nr, RO), `${first}+${nr}`).toBe(-EINVAL);
    }
    for (const t of [P2M.grant_map_rw, P2M.map_foreign, P2M.mmio_dm, P2M.mmio_direct, P2M.ram_shared]) expect(dmSetMemType(m, 0, 3, 2, 2, t)).toBe(-EINVAL);
    expect(types(m, 3, all)).toEqual(rw);
    expect(refs(m, 3)).toBe(0);
  });

  it('gfn by gfn: the range exactly, and a hole stops it with the gfns before it changed', () => {
    const m = machine();
    expect(dmSetMemType(m, 0, 3, 4, 3, RO)).toBe(0);
    expect(types(m, 3, [3, 4, 5, 6, 7])).toEqual([RW, RO, RO, RO, RW]);
    expect(decreaseReservation(m, 3, [10])).toBe(1);
    expect(dmSetMemType(m, 0, 3, 8, 5, RO)).toBe(-EINVAL);
    expect(types(m, 3, [8, 9, 11, 12])).toEqual([RO, RO, RW, RW]);
    expect(p2mGet(m, 3, 10)).toBe(P2M_HOLE);
    expect(dmSetMemType(m, 0, 3, 10, 1, RW)).toBe(-EINVAL);
    expect(dmSetMemType(m, 0, 3, 4, 6, RW)).toBe(0); // back, ram_ro and ram_rw mixed
    expect(types(m, 3, [4, 5, 6, 7, 8, 9])).toEqual([RW, RW, RW, RW, RW, RW]);
    expect(refs(m, 3)).toBe(0);
  });

  it('allow_p2m_type_change: a page a design mapped (mmio_direct), and its revoked gfn (mmio_dm, no frame) are -EINVAL, unchanged', () => {
    const m = machine();
    const r = designOf(m).map(m, 0, { fe: 3, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 });
    expect(r.rc).toBe(0);
    const before = [p2mGet(m, 3, 100), p2mGet(m, 3, 101)];
    expect(types(m, 3, [100, 101])).toEqual([P2M.mmio_direct, P2M.mmio_direct]);
    for (const t of [RO, RW]) {
      expect(dmSetMemType(m, 0, 3, 100, 1, t)).toBe(-EINVAL);
      expect(dmSetMemType(m, 0, 3, 100, 2, t)).toBe(-EINVAL);
    }
    expect([p2mGet(m, 3, 100), p2mGet(m, 3, 101)]).toEqual(before);
    expect(designOf(m).revoke(m, 0, { id: r.id })).toBe(0);
    const revoked = p2mGet(m, 3, 101);
    expect([entryType(revoked), entryMfn(revoked)]).toEqual([P2M.mmio_dm, -1]);
    expect(dmSetMemType(m, 0, 3, 101, 1, RO)).toBe(-EINVAL);
    expect(p2mGet(m, 3, 101)).toBe(revoked);
  });

  it('the frame stays; rw → ro flushes (the epoch moves), ro → rw and no change do not', () => {
    const m = machine();
    const mfn = entryMfn(p2mGet(m, 3, 5));
    const epoch = (): number => m.dom.at(3, DOM.FLUSH_EPOCH);
    const e0 = epoch();
    expect(dmSetMemType(m, 0, 3, 5, 1, RW)).toBe(0);
    expect(epoch()).toBe(e0);
    expect(dmSetMemType(m, 0, 3, 5, 1, RO)).toBe(0);
    const e1 = epoch();
    expect(e1).toBeGreaterThan(e0);
    expect(entryMfn(p2mGet(m, 3, 5))).toBe(mfn);
    expect(dmSetMemType(m, 0, 3, 5, 1, RO)).toBe(0);
    expect(epoch()).toBe(e1);
    expect(dmSetMemType(m, 0, 3, 5, 1, RW)).toBe(0);
    expect(epoch()).toBe(e1);
    expect(p2mGet(m, 3, 5)).toBe(p2mGet(m, 3, 5));
    expect(entryMfn(p2mGet(m, 3, 5))).toBe(mfn);
    expect(types(m, 3, [5])).toEqual([RW]);
    expect(m.log.records()).toEqual([]);
  });

  it('the last gfn of the p2m is in range', () => {
    const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }] });
    expect(domainCreate(m, { domid: 1, max_pages: 8, nr_vcpus: 1, privileged: false, paddr_bits: 32, p2m_pages: 8 })).toBe(1);
    const last = p2mGfnLimit(m, 1) - 1;
    expect(last).toBe(2 ** 20 - 1);
    expect(populatePhysmap(m, 1, [last - 1, last])).toBe(2);
    expect(dmSetMemType(m, 0, 1, last - 1, 2, RO)).toBe(0);
    expect(types(m, 1, [last - 1, last])).toEqual([RO, RO]);
    expect(dmSetMemType(m, 0, 1, last, 1, RW)).toBe(0);
    expect(types(m, 1, [last - 1, last])).toEqual([RO, RW]);
    expect(dmSetMemType(m, 0, 1, last, 2, RW)).toBe(-EINVAL);
  });

  it('a gfn inside a superpage with no table page left to split it: -ENOMEM, nothing changed', () => {
    const m = testMachine({ nr_frames: 2048, domains: [{ memory_pages: 64, privileged: true }] });
    expect(domainCreate(m, { domid: 1, max_pages: 600, nr_vcpus: 1, privileged: false, p2m_pages: 2 })).toBe(1);
    expect(populateRange(m, 1, 0, 512)).toBe(0);
    const e7 = p2mGet(m, 1, 7);
    expect(dmSetMemType(m, 0, 1, 6, 2, RO)).toBe(-ENOMEM);
    expect(p2mGet(m, 1, 7)).toBe(e7);
    expect(types(m, 1, [6, 7])).toEqual([RW, RW]);
    expect(refs(m, 1)).toBe(0);
    expect(dmSetMemType(m, 0, 1, 6, 2, RW)).toBe(0); // no change asked: nothing to split
  });
});
