import { describe, expect, it } from 'vitest';
import { testMachine } from '../../../tests/test-machine.js';
import { EEXIST, EINVAL, EOPNOTSUPP, EPERM } from '../../public/errno.js';
import { P2M } from '../../public/types.js';
import { entryMfn, entryType, P2M_REVOKED } from '../../layout/p2m.js';
import { checkNoLeaks, checkQuiescent } from '../../checker/checker.js';
import { designOf } from '../../xen/design.js';
import { DS } from '../../layout/domains.js';
import { domainDestroy } from '../../xen/domain.js';
import { bufferCopy, foreignMap } from '../../xen/memory.js';
import { p2mGet } from '../../xen/p2m.js';
import type { Machine } from '../../xen/machine.js';
import { IOMMUF, iommuFlags } from '../../xen/iommu.js';
import { storeOf } from './lend.js';
import { expectClean } from '../../../tests/expect-clean.js';

// d0 dom0 (privileged); d1 the lender, d2's device model; d2 the borrower.
const machine = (bugs?: string): Machine =>
  testMachine({ design: 'lending', domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64 }, { memory_pages: 64, backend: 1 }], ...(bugs !== undefined ? { bugs } : {}) });
const clean = (m: Machine): void => expectClean(m);
const mfnOf = (m: Machine, d: number, g: number): number => entryMfn(p2mGet(m, d, g));

describe('design lending', () => {
  it('lends the lender RAM into the borrower p2m with a reference and a lent count, and reclaims it at once', () => {
    const m = machine();
    const lend = designOf(m);
    const mfn = mfnOf(m, 1, 4);
    const r = lend.map(m, 1, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 2, at: 100 });
    expect(r.rc).toBe(0);
    expect(entryType(p2mGet(m, 2, 100))).toBe(P2M.mmio_direct);
    expect(mfnOf(m, 2, 100)).toBe(mfn);
    expect(m.ft.owner(mfn)).toBe(1); // the lender keeps ownership
    expect(m.ft.count(mfn)).toBe(2);
    expect(storeOf(m).lent[mfn]).toBe(1);
    clean(m);
    expect(lend.map(m, 1, { fe: 2, source: { kind: 'ram', gfn: 6 }, count: 1, at: 101 })).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    expect(lend.map(m, 0, { fe: 2, source: { kind: 'bar', mfn: 0 }, count: 1, at: 110 }).rc).toBe(-EINVAL);
    expect(lend.map(m, 2, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 110 }).rc).toBe(-EPERM);
    expect(lend.steal(m, 1, { fe: 2, gfn: 4, count: 1 }).rc).toBe(-EOPNOTSUPP);
    expect(lend.revoke(m, 2, { id: r.id })).toBe(-EPERM); // only its lender reclaims a lend
    expect(lend.revoke(m, 1, { fe: 2, gfn: 101, count: 1 })).toBe(0); // one page of the range
    expect(p2mGet(m, 2, 101)).toBe(P2M_REVOKED);
    expect(lend.liveRecords(m)).toBe(1);
    expect(lend.revoke(m, 1, { id: r.id })).toBe(0);
    expect(lend.revoke(m, 1, { id: r.id })).toBe(0); // gone is done
    expect(lend.revoke(m, 1, { id: 9999 })).toBe(-EINVAL);
    expect(m.ft.count(mfn)).toBe(1);
    expect(storeOf(m).lent[mfn]).toBe(0);
    expect(lend.liveRecords(m)).toBe(0);
    clean(m);
  });

  it('refuses foreign maps of a lent frame even from dom0, and the borrower copy sees a hole', () => {
    const m = machine();
    const r = designOf(m).map(m, 1, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
    expect(r.rc).toBe(0);
    expect(foreignMap(m, 0, 1, 4, 200)).toBe(-EPERM);
    expect(foreignMap(m, 0, 2, 100, 201)).toBe(-EINVAL);
    expect(bufferCopy(m, 2, 'from_guest', 100, 0, 8, new Uint8Array(4096))).toBeLessThan(0);
    expect(m.ft.count(mfnOf(m, 1, 4))).toBe(2); // the refused map took nothing
    clean(m);
    expect(designOf(m).revoke(m, 1, { id: r.id })).toBe(0);
    expect(foreignMap(m, 0, 1, 4, 200)).toBe(0);
    clean(m);
  });

  it('a dying lender takes its lends back; nothing leaks', () => {
    const m = machine();
    expect(designOf(m).map(m, 1, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 3, at: 100 }).rc).toBe(0);
    expect(domainDestroy(m, 1)).toBe(0);
    expect(p2mGet(m, 2, 100)).toBe(P2M_REVOKED);
    expect(designOf(m).liveRecords(m)).toBe(0);
    for (let d = m.nd - 1; d >= 0; d--) if (m.dom.state(d) !== DS.FREE) expect(domainDestroy(m, d)).toBe(0);
    expect(checkNoLeaks(m)).toBe(true);
    expect(m.log.records()).toEqual([]);
  });

  it('keeps lent pages out of the borrower IOMMU (rule 4); the check catches an IOMMU that maps them', () => {
    for (const bugs of [undefined, 'lending-lent-in-iommu']) {
      const m = testMachine({ design: 'lending', domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64 }, { memory_pages: 64, backend: 1, passthrough: 'sync_pt' }], ...(bugs !== undefined ? { bugs } : {}) });
      expect(designOf(m).map(m, 1, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(0);
      expect(iommuFlags(m, 2, 100)).toBe(bugs === undefined ? 0 : IOMMUF.readable | IOMMUF.writable);
      expect(iommuFlags(m, 2, 4)).toBe(IOMMUF.readable | IOMMUF.writable); // its own RAM stays in
      checkQuiescent(m);
      expect(m.log.records().map((v) => v.invariant)).toEqual(bugs === undefined ? [] : ['isolation']);
    }
  });

  it('the check catches a lent count that lies (the foreign-map refusal depends on it)', () => {
    const m = machine();
    expect(designOf(m).map(m, 1, { fe: 2, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(0);
    storeOf(m).lent[mfnOf(m, 1, 4)] = 0;
    checkQuiescent(m);
    expect(m.log.records().map((v) => v.invariant)).toContain('records_match_frames');
  });
});
