/**
 * More of grant_table.c's behaviour, from the survivors of grant-table.ts's
 * second mutation run (docs/verification.md §8): what the BUGGIFY variants
 * do on one thread, pins a map takes without looking again, reduce_status_for_pin
 * with two write pins, a handle one past the mapper's storage, and the
 * unmap's shootdown.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { GNTST_bad_copy_arg, GNTST_bad_handle, GNTST_general_error, GNTST_no_space, GNTST_okay } from '../public/errno.js';
import { domid, gfn, grantRef, GTF_reading, GTF_sub_page, GTF_writing } from '../public/types.js';
import type { CopyPtr } from '../public/guest.js';
import { gnttabCopy, guestEndAccess, guestGrantAccess, guestStoreBegin, guestStoreEnd, mapGrantRef, unmapGrantRef } from './grant-table.js';
import { testMachine } from '../../tests/test-machine.js';
import { p2mGet } from './p2m.js';
import { entryMfn } from '../layout/p2m.js';
import { checkQuiescent } from '../checker/checker.js';
import { DOM } from '../layout/domains.js';
import { createMachineSabs, Machine } from './machine.js';
import { domainCreate, populateRange } from './domain.js';
import { parseBuggify } from './buggify.js';
import { armHook, disarmHooks } from './hooks.js';
import { VcpuContext } from './guest-cpu.js';

type M = ReturnType<typeof testMachine>;
const map = (m: M, ld: number, rd: number, ref: number, at: number, ro = false) => mapGrantRef(m, ld, { dom: domid(rd), ref: grantRef(ref), host_gfn: gfn(at), readonly: ro });
const status = (m: M, d: number, ref: number) => Atomics.load(m.grants.shared, m.grants.sharedIdx(d, ref)) & (GTF_reading | GTF_writing);
const viaRef = (d: number, ref: number, offset = 0): CopyPtr => ({ kind: 'ref', domid: domid(d), ref: grantRef(ref), offset });
const viaGfn = (g: number, offset = 0): CopyPtr => ({ kind: 'gfn', gfn: gfn(g), offset });
const mfnOf = (m: M, d: number, g: number): number => entryMfn(p2mGet(m, d, g));
const clean = (m: M) => {
  checkQuiescent(m);
  expect(m.log.records().map((r) => `${r.invariant}: ${r.text}`)).toEqual([]);
};
/** Re-point a granted entry at another gfn, as the guest would (a plain store, bracketed for the checker). */
const repoint = (m: M, d: number, ref: number, g: number): void => {
  guestStoreBegin(m, d, ref);
  Atomics.store(m.grants.shared, m.grants.sharedIdx(d, ref) + 1, g);
  guestStoreEnd(m, d, ref);
};

afterEach(() => {
  disarmHooks();
});

describe('pins a map takes on an entry already pinned', () => {
  it('map_grant_ref of a pinned entry uses act->mfn: a frame the guest points the entry at since is not looked at', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    const a = map(m, 2, 1, 8, 100, true);
    repoint(m, 1, 8, 6);
    const b = map(m, 2, 1, 8, 101); // the first write pin: _set_status_v1 runs, the frame is not looked up again
    expect(b.status).toBe(GNTST_okay);
    expect(mfnOf(m, 2, 101)).toBe(mfnOf(m, 1, 5));
    for (const h of [a.handle, b.handle]) expect(unmapGrantRef(m, 2, h)).toBe(GNTST_okay);
    expect(m.ft.typeCount(mfnOf(m, 1, 5))).toBe(0);
  });

  it('a second write pin does not run _set_status_v1: status bits the guest wiped stay wiped', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    const a = map(m, 2, 1, 8, 100);
    guestGrantAccess(m, 1, 8, 2, 5, false); // the guest's plain store wipes GTF_reading|GTF_writing
    const b = map(m, 2, 1, 8, 101);
    expect(b.status).toBe(GNTST_okay);
    expect(status(m, 1, 8)).toBe(0);
    for (const h of [a.handle, b.handle]) expect(unmapGrantRef(m, 2, h)).toBe(GNTST_okay);
  });

  it('two write pins: the first unpin keeps GTF_writing (reduce_status_for_pin), a read pin\'s unpin takes no type reference', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    const mfn = mfnOf(m, 1, 5);
    const w1 = map(m, 2, 1, 8, 100);
    const w2 = map(m, 2, 1, 8, 101);
    expect(m.ft.typeCount(mfn)).toBe(2);
    expect(unmapGrantRef(m, 2, w1.handle)).toBe(GNTST_okay);
    expect(status(m, 1, 8)).toBe(GTF_reading | GTF_writing);
    const r = map(m, 2, 1, 8, 102, true);
    expect(unmapGrantRef(m, 2, w2.handle)).toBe(GNTST_okay);
    expect(status(m, 1, 8)).toBe(GTF_reading);
    // Only the read pin left, no write pin: the entry is still d2's.
    const again = map(m, 2, 1, 8, 103, true);
    expect(again.status).toBe(GNTST_okay);
    for (const h of [r.handle, again.handle]) expect(unmapGrantRef(m, 2, h)).toBe(GNTST_okay);
    expect(m.ft.typeCount(mfn)).toBe(0);
    expect(m.ft.count(mfn)).toBe(1);
    clean(m);
  });
});

describe('handles and copies at their ends', () => {
  it('a handle one past the mapper\'s storage is bad, even when the next domain\'s first handle is in use', () => {
    const m = testMachine();
    guestGrantAccess(m, 0, 3, 2, 5, false);
    const theirs = map(m, 2, 0, 3, 100);
    expect(theirs).toEqual({ status: GNTST_okay, handle: 0 });
    expect(unmapGrantRef(m, 1, m.grants.handles(1))).toBe(GNTST_bad_handle);
    expect(entryMfn(p2mGet(m, 2, 100))).toBe(mfnOf(m, 0, 5));
    expect(unmapGrantRef(m, 2, theirs.handle)).toBe(GNTST_okay);
  });

  it('a copy into a grant refused for its offset releases the destination\'s write pin, not a read pin', () => {
    const m = testMachine();
    const ps = m.config.page_size_bytes;
    guestGrantAccess(m, 1, 8, 2, 5, false);
    const ro = map(m, 2, 1, 8, 100, true); // a read pin the bad release would take
    expect(gnttabCopy(m, 2, { src: viaGfn(7), dst: viaRef(1, 8, ps - 2), len: 4 })).toBe(GNTST_bad_copy_arg);
    expect(status(m, 1, 8)).toBe(GTF_reading);
    expect(m.ft.typeCount(mfnOf(m, 1, 5))).toBe(0);
    expect(unmapGrantRef(m, 2, ro.handle)).toBe(GNTST_okay);
    expect(guestEndAccess(m, 1, 8)).toBe(true);
    clean(m);
  });
});

describe('BUGGIFY variants on one thread', () => {
  it('grant-double-fetch maps the frame the entry names after validation; the correct map, the one it validated', () => {
    for (const bugs of ['', 'grant-double-fetch']) {
      const m = testMachine({ bugs });
      guestGrantAccess(m, 1, 8, 2, 5, false);
      armHook('grant.after_validate', () => repoint(m, 1, 8, 6));
      const r = map(m, 2, 1, 8, 100);
      expect(r.status).toBe(GNTST_okay);
      expect(mfnOf(m, 2, 100), bugs).toBe(mfnOf(m, 1, bugs === '' ? 5 : 6));
    }
  });

  it('grant-map-status-before-checks: a map of a GTF_sub_page entry is still refused (the mask is a map\'s), a copy of it taken', () => {
    const m = testMachine({ bugs: 'grant-map-status-before-checks' });
    guestGrantAccess(m, 1, 8, 2, 5, true);
    guestStoreBegin(m, 1, 8);
    Atomics.or(m.grants.shared, m.grants.sharedIdx(1, 8), GTF_sub_page);
    guestStoreEnd(m, 1, 8);
    expect(map(m, 2, 1, 8, 100, true).status).toBe(GNTST_general_error);
    expect(status(m, 1, 8)).toBe(0); // refused by _set_status_v1 itself: nothing set
    expect(gnttabCopy(m, 2, { src: viaRef(1, 8), dst: viaGfn(7), len: 4 })).toBe(GNTST_okay);
  });

  it('maptrack-racy-pop with no racer hands out the same handles as the locked pop, and stops at the limit', () => {
    const mk = (bugs: string): Machine => {
      const m = new Machine(createMachineSabs({ nr_frames: 1024, page_size_bytes: 4096, p2m_pool_pages: 64, bars: [], checking: true, buggify: parseBuggify(bugs), seed: 1, max_domains: 2 }));
      [{}, { max_maptrack_frames: 1 }].forEach((l, d) => expect(domainCreate(m, { domid: d, max_pages: 300, nr_vcpus: 1, p2m_pages: 16, privileged: d === 0, ...l })).toBe(d));
      expect(populateRange(m, 0, 0, 8)).toBe(0);
      for (let r = 0; r < 3; r++) guestGrantAccess(m, 0, r, 1, r, true);
      return m;
    };
    const run = (m: Machine): number[] => {
      const hs: number[] = [];
      for (let k = 0; k < 256; k++) hs.push(map(m, 1, 0, k >> 7, 1000 + k, true).handle);
      expect(map(m, 1, 0, 2, 2000, true).status).toBe(GNTST_no_space);
      expect(unmapGrantRef(m, 1, hs[5]!)).toBe(GNTST_okay);
      expect(unmapGrantRef(m, 1, hs[9]!)).toBe(GNTST_okay);
      hs.push(map(m, 1, 0, 2, 2000, true).handle, map(m, 1, 0, 2, 2001, true).handle);
      expect(map(m, 1, 0, 2, 2002, true).status).toBe(GNTST_no_space);
      return hs;
    };
    const good = run(mk(''));
    expect(new Set(good.slice(0, 256)).size).toBe(256);
    expect(good.slice(256)).toEqual([good[9], good[5]]);
    expect(run(mk('maptrack-racy-pop'))).toEqual(good);
  });

  it('gnttab-copy-double-lock holds both granters\' table locks at once (lock order reported); the copy\'s answers are those of the correct copy', () => {
    const copies = (m: M): number[] => {
      guestGrantAccess(m, 1, 8, 0, 5, true);
      guestGrantAccess(m, 2, 9, 0, 6, false);
      const ps = m.config.page_size_bytes;
      return [
        gnttabCopy(m, 0, { src: viaRef(1, 8), dst: viaRef(2, 9), len: 4 }),
        gnttabCopy(m, 0, { src: viaRef(2, 9), dst: viaRef(1, 8), len: 4 }), // into a read-only grant
        gnttabCopy(m, 0, { src: viaRef(1, -1), dst: viaRef(2, 9), len: 4 }),
        gnttabCopy(m, 0, { src: viaRef(1, 8), dst: viaRef(2, 512), len: 4 }),
        gnttabCopy(m, 0, { src: viaRef(1, 8), dst: viaRef(2, 9, ps), len: 4 }),
        gnttabCopy(m, 0, { src: viaRef(1, 8), dst: viaRef(1, 8), len: 4 }),
      ];
    };
    const good = testMachine();
    const bad = testMachine({ bugs: 'gnttab-copy-double-lock' });
    expect(copies(bad)).toEqual(copies(good));
    expect(good.log.records()).toEqual([]);
    expect(bad.log.records().map((r) => r.invariant)).toContain('lock_order');
  });

  it('skip-tlb-flush-on-unmap: the mapper\'s vCPU keeps reaching the granted frame after the unmap, and the checker says so', () => {
    for (const bugs of ['', 'skip-tlb-flush-on-unmap']) {
      const m = testMachine({ bugs });
      guestGrantAccess(m, 1, 8, 2, 5, false);
      const r = map(m, 2, 1, 8, 100);
      const cpu = new VcpuContext(m, { domid: 2, vcpu: 0, slot: m.dom.at(2, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
      cpu.start();
      cpu.read32(gfn(100), 0); // cached
      cpu.stop();
      expect(unmapGrantRef(m, 2, r.handle)).toBe(GNTST_okay);
      cpu.start();
      cpu.read32(gfn(100), 0);
      cpu.stop();
      // The stale access is a use after the unmap, and reaches a frame the mapper has no right to any more (isolation).
      expect(m.log.records().map((x) => x.invariant), bugs).toEqual(bugs === '' ? [] : ['no_use_after_revoke', 'isolation']);
    }
  });
});
