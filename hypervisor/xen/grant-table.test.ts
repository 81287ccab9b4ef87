import { describe, expect, it } from 'vitest';
import {
  GNTST_bad_copy_arg, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page, GNTST_general_error, GNTST_no_space, GNTST_okay,
} from '../public/errno.js';
import { domid, gfn, grantRef, GTF_reading, GTF_sub_page, GTF_writing, P2M } from '../public/types.js';
import type { CopyPtr } from '../public/guest.js';
import { gnttabCopy, gnttabGrowFor, grantEntriesLimit, guestEndAccess, guestGrantAccess, guestStoreBegin, guestStoreEnd, mapGrantRef, unmapGrantRef } from './grant-table.js';
import { testMachine } from '../../tests/test-machine.js';
import { p2mGet, p2mLock, p2mSetLocked, p2mUnlock } from './p2m.js';
import { entryMfn, entryType, p2mEntry } from '../layout/p2m.js';
import { CTL } from '../layout/control.js';
import { checkQuiescent } from '../checker/checker.js';
import { domainCrash } from './domain-crash.js';
import { DOM, DS } from '../layout/domains.js';
import { GrantRegion, grantSlots } from '../layout/grants.js';
import { createMachineSabs, Machine } from './machine.js';
import { domainCreate, domainDestroy, populateRange } from './domain.js';
import { NO_BUGS } from './buggify.js';
import { MAPTRACK_PER_FRAME, MAPTRACK_STORAGE_FRAMES } from '../layout/constants.js';

/** The handles a domain of Xen's default limits stores (layout/grants.ts). */
const NR_MAPTRACK_ENTRIES = MAPTRACK_STORAGE_FRAMES * MAPTRACK_PER_FRAME;

const map = (m: ReturnType<typeof testMachine>, ld: number, rd: number, ref: number, at: number, ro = false) =>
  mapGrantRef(m, ld, { dom: domid(rd), ref: grantRef(ref), host_gfn: gfn(at), readonly: ro });
const flags = (m: ReturnType<typeof testMachine>, d: number, ref: number) => Atomics.load(m.grants.shared, m.grants.sharedIdx(d, ref)) & 0xffff;
const status = (m: ReturnType<typeof testMachine>, d: number, ref: number) => flags(m, d, ref) & (GTF_reading | GTF_writing);
const viaRef = (d: number, ref: number, offset = 0): CopyPtr => ({ kind: 'ref', domid: domid(d), ref: grantRef(ref), offset });
const viaGfn = (g: number, offset = 0): CopyPtr => ({ kind: 'gfn', gfn: gfn(g), offset });
const copy = (m: ReturnType<typeof testMachine>, ld: number, src: CopyPtr, dst: CopyPtr, len = 4) => gnttabCopy(m, ld, { src, dst, len });
const clean = (m: ReturnType<typeof testMachine>) => {
  checkQuiescent(m);
  expect(m.log.records().map((r) => `${r.invariant}: ${r.text}`)).toEqual([]);
};

describe('grant storage follows each domain\'s limits (layout/grants.ts)', () => {
  it('a slot stores its limits\' worth within the budget; a table grows a frame at a time to its max_grant_frames', () => {
    const limits = [undefined, { max_grant_frames: 1, max_maptrack_frames: 1 }, { max_maptrack_frames: 0 }];
    expect(grantSlots(3, limits)).toEqual([{ entries: 1024, handles: 512 }, { entries: 512, handles: 256 }, { entries: 1024, handles: 0 }]);
    expect(GrantRegion.bytes(grantSlots(3, limits))).toBeLessThan(GrantRegion.bytes(grantSlots(3)));
    const m = new Machine(createMachineSabs({ nr_frames: 256, page_size_bytes: 4096, p2m_pool_pages: 64, bars: [], checking: true, buggify: NO_BUGS, seed: 1, max_domains: 3, grant_limits: limits }));
    limits.forEach((l, d) => expect(domainCreate(m, { domid: d, max_pages: 16, nr_vcpus: 1, p2m_pages: 16, privileged: d === 0, ...l })).toBe(d));
    expect([0, 1, 2].map((d) => m.dom.at(d, DOM.NR_GRANT_FRAMES))).toEqual([1, 1, 1]); // INITIAL_NR_GRANT_FRAMES
    expect([0, 1].map((d) => grantEntriesLimit(m, d))).toEqual([1024, 512]);
    expect(gnttabGrowFor(m, 1, 511)).toBe(true);
    expect(gnttabGrowFor(m, 1, 512)).toBe(false); // past max_grant_frames: the table stays one frame
    expect(gnttabGrowFor(m, 0, 700)).toBe(true); // grows to two frames
    expect(m.dom.at(0, DOM.NR_GRANT_FRAMES)).toBe(2);
    expect(gnttabGrowFor(m, 0, 1024)).toBe(false); // past the storage
    expect(m.grants.handles(2)).toBe(0);
  });
});

describe('grant table v1', () => {
  it('map shares the granter\'s frame, sets the status bits, and unmap clears them', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    const r = map(m, 2, 1, 8, 100);
    expect(r.status).toBe(GNTST_okay);
    const e = p2mGet(m, 2, 100);
    expect(entryType(e)).toBe(P2M.grant_map_rw);
    expect(entryMfn(e)).toBe(entryMfn(p2mGet(m, 1, 5)));
    expect(flags(m, 1, 8) & (GTF_reading | GTF_writing)).toBe(GTF_reading | GTF_writing);
    expect(m.ft.count(entryMfn(e))).toBe(2);
    // end_access refuses while pinned (Linux's gnttab_end_foreign_access_ref).
    expect(guestEndAccess(m, 1, 8)).toBe(false);
    expect(unmapGrantRef(m, 2, r.handle)).toBe(GNTST_okay);
    expect(flags(m, 1, 8) & (GTF_reading | GTF_writing)).toBe(0);
    expect(p2mGet(m, 2, 100)).toBe(0);
    expect(guestEndAccess(m, 1, 8)).toBe(true);
    expect(unmapGrantRef(m, 2, r.handle)).toBe(GNTST_bad_handle);
    checkQuiescent(m);
    expect(m.log.totalViolations()).toBe(0);
  });

  it('read-only grants map read-only and refuse writable maps', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 9, 2, 6, true);
    expect(map(m, 2, 1, 9, 100).status).toBe(GNTST_general_error); // _set_status_v1: "write-pin a r/o grant entry"
    const r = map(m, 2, 1, 9, 100, true);
    expect(r.status).toBe(GNTST_okay);
    expect(entryType(p2mGet(m, 2, 100))).toBe(P2M.grant_map_ro);
    expect(flags(m, 1, 9) & GTF_writing).toBe(0);
    expect(unmapGrantRef(m, 2, r.handle)).toBe(GNTST_okay);
  });

  it('checks in map_grant_ref\'s order, with its codes: granter, maptrack, ref, entry, frame, host mapping', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    expect(map(m, 2, 77, 100000, 100).status).toBe(GNTST_bad_domain); // the granter before the ref
    expect(map(m, 2, 1, 100000, 100).status).toBe(GNTST_bad_gntref);
    expect(map(m, 0, 1, 8, 100).status).toBe(GNTST_general_error); // granted to d2, not d0
    // A granted gfn that is not RAM of the granter.
    guestGrantAccess(m, 1, 10, 2, 200, false);
    expect(map(m, 2, 1, 10, 101).status).toBe(GNTST_bad_page);
    expect(status(m, 1, 10)).toBe(0);
    // The host mapping comes last (create_grant_p2m_mapping): outside the p2m or onto RAM, the pin is undone.
    expect(map(m, 2, 1, 8, 3).status).toBe(GNTST_general_error); // gfn 3 is RAM, not empty
    expect(map(m, 2, 1, 8, 2 ** 24).status).toBe(GNTST_general_error); // past d2's 36-bit space
    expect(status(m, 1, 8)).toBe(0);
    expect(guestEndAccess(m, 1, 8)).toBe(true);
    clean(m);
  });

  it('maptrack exhaustion is GNTST_no_space, checked before the ref; 128 pins of a kind per entry', () => {
    const m = testMachine({ domains: [{ memory_pages: 8, privileged: true }, { memory_pages: 8, backend: 0, p2m_size: 8 + NR_MAPTRACK_ENTRIES + 8 }] });
    for (let r = 0; r < 5; r++) guestGrantAccess(m, 0, r, 1, r, false);
    const handles: number[] = [];
    for (let h = 0; h < 128; h++) handles.push(map(m, 1, 0, 0, 8 + h, true).handle);
    expect(map(m, 1, 0, 0, 8 + 128, true).status).toBe(GNTST_general_error); // Xen's 8-bit pin counter is full
    const w = map(m, 1, 0, 0, 8 + 128, false); // a write pin still fits
    expect(w.status).toBe(GNTST_okay);
    handles.push(w.handle);
    for (let h = 129; h < NR_MAPTRACK_ENTRIES; h++) {
      const r = map(m, 1, 0, 1 + (h >> 7), 8 + h, true);
      expect(r.status).toBe(GNTST_okay);
      handles.push(r.handle);
    }
    expect(map(m, 1, 0, 100000, 8, true).status).toBe(GNTST_no_space); // no handle: the ref is never looked at
    expect(status(m, 0, 4)).toBe(GTF_reading);
    for (const h of handles) expect(unmapGrantRef(m, 1, h)).toBe(GNTST_okay);
    for (let r = 0; r < 5; r++) expect(guestEndAccess(m, 0, r)).toBe(true);
    clean(m);
  });

  it('an entry pinned by one grantee refuses another before setting its status bits (class 3)', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    const r = map(m, 2, 1, 8, 100, true);
    expect(r.status).toBe(GNTST_okay);
    // Re-granted to d0 while d2 holds a read pin (the plain store wipes GTF_reading; the guest's own foot).
    guestGrantAccess(m, 1, 8, 0, 5, false);
    expect(map(m, 0, 1, 8, 100).status).toBe(GNTST_general_error);
    expect(status(m, 1, 8)).toBe(0); // nothing set by the refused map
    expect(unmapGrantRef(m, 2, r.handle)).toBe(GNTST_okay);
    expect(guestEndAccess(m, 1, 8)).toBe(true);
    clean(m);
  });

  it('with grant-map-status-before-checks a refused map leaves the status bits, end_access is EBUSY, and the checker says so', () => {
    const m = testMachine({ bugs: 'grant-map-status-before-checks' });
    guestGrantAccess(m, 1, 10, 2, 200, false); // not RAM of the granter
    expect(map(m, 2, 1, 10, 101).status).toBe(GNTST_bad_page);
    expect(status(m, 1, 10)).toBe(GTF_reading | GTF_writing);
    expect(guestEndAccess(m, 1, 10)).toBe(false);
    checkQuiescent(m);
    expect(m.log.counts().grant_flags.violations).toBeGreaterThan(0);
  });

  it('a refused host mapping undoes the pin and the status bits (unless the bug leaves them)', () => {
    for (const bugs of ['', 'grant-map-status-before-checks']) {
      const m = testMachine({ bugs });
      guestGrantAccess(m, 1, 8, 2, 5, false);
      const count = m.ft.count(entryMfn(p2mGet(m, 1, 5)));
      expect(map(m, 2, 1, 8, 3).status).toBe(GNTST_general_error);
      expect(m.ft.count(entryMfn(p2mGet(m, 1, 5)))).toBe(count);
      expect(status(m, 1, 8)).toBe(bugs === '' ? 0 : GTF_reading | GTF_writing);
      expect(guestEndAccess(m, 1, 8)).toBe(bugs === '');
    }
  });

  it('copy moves bytes between a grant and the caller\'s own page', () => {
    const m = testMachine();
    const ps = m.config.page_size_bytes;
    const src = entryMfn(p2mGet(m, 1, 5));
    m.frames.u8.set([1, 2, 3, 4], src * ps + 16);
    guestGrantAccess(m, 1, 8, 2, 5, true);
    expect(copy(m, 2, viaRef(1, 8, 16), viaGfn(7))).toBe(GNTST_okay);
    const dst = entryMfn(p2mGet(m, 2, 7));
    expect([...m.frames.u8.subarray(dst * ps, dst * ps + 4)]).toEqual([1, 2, 3, 4]);
    // Writing into a read-only grant is refused (_set_status_v1).
    expect(copy(m, 2, viaGfn(7), viaRef(1, 8))).toBe(GNTST_general_error);
    expect(copy(m, 2, viaGfn(7, ps - 2), viaGfn(8))).toBe(GNTST_bad_copy_arg);
    expect(status(m, 1, 8)).toBe(0);
    clean(m);
  });

  it('copy checks in gnttab_copy_one\'s order: length 0, both domains, source, destination, then offsets', () => {
    const m = testMachine();
    const ps = m.config.page_size_bytes;
    guestGrantAccess(m, 1, 8, 2, 5, false);
    expect(copy(m, 2, viaRef(77, 100000), viaRef(77, 0), 0)).toBe(GNTST_okay); // nothing to copy, nothing checked
    expect(copy(m, 2, viaRef(1, 100000, ps), viaRef(77, 0))).toBe(GNTST_bad_domain); // both domains first
    expect(copy(m, 2, viaRef(1, 100000, ps), viaGfn(7))).toBe(GNTST_bad_gntref); // before the offset
    expect(copy(m, 2, viaRef(1, 8), viaGfn(100000))).toBe(GNTST_bad_page); // the source was claimed, then released
    expect(copy(m, 2, viaRef(1, 8, ps - 2), viaGfn(7))).toBe(GNTST_bad_copy_arg); // both claimed, then released
    expect(copy(m, 0, viaRef(1, 8), viaGfn(7))).toBe(GNTST_general_error); // granted to d2
    expect(status(m, 1, 8)).toBe(0);
    expect(guestEndAccess(m, 1, 8)).toBe(true);
    clean(m);
  });

  it('a copy writing into an entry the caller pins read-only: the frame is looked up again and must be the pinned one', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    const r = map(m, 2, 1, 8, 100, true);
    expect(r.status).toBe(GNTST_okay);
    expect(copy(m, 2, viaGfn(7), viaRef(1, 8))).toBe(GNTST_okay);
    // The granter points its (pinned) entry at another frame.
    guestStoreBegin(m, 1, 8);
    Atomics.store(m.grants.shared, m.grants.sharedIdx(1, 8) + 1, 6);
    guestStoreEnd(m, 1, 8);
    expect(copy(m, 2, viaGfn(7), viaRef(1, 8))).toBe(GNTST_general_error);
    expect(status(m, 1, 8)).toBe(GTF_reading); // GTF_writing taken off again
    expect(unmapGrantRef(m, 2, r.handle)).toBe(GNTST_okay);
    expect(guestEndAccess(m, 1, 8)).toBe(true);
    clean(m);
  });

  it('a crashed granter is still there: its grants map and copy until it is destroyed', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    expect(domainCrash(m, 1, 'test')).toBe(true);
    const r = map(m, 2, 1, 8, 100);
    expect(r.status).toBe(GNTST_okay);
    expect(copy(m, 2, viaRef(1, 8), viaGfn(7))).toBe(GNTST_okay);
    expect(unmapGrantRef(m, 2, r.handle)).toBe(GNTST_okay);
    expect(domainDestroy(m, 1)).toBe(0);
    expect(m.dom.state(1)).toBe(DS.FREE);
    expect(map(m, 2, 1, 8, 100).status).toBe(GNTST_bad_domain);
    clean(m);
  });

  it('with grant-map-refuse-crashed-granter a crashed granter\'s grant is GNTST_bad_domain', () => {
    const m = testMachine({ bugs: 'grant-map-refuse-crashed-granter' });
    guestGrantAccess(m, 1, 8, 2, 5, false);
    expect(domainCrash(m, 1, 'test')).toBe(true);
    expect(map(m, 2, 1, 8, 100).status).toBe(GNTST_bad_domain);
    expect(copy(m, 2, viaRef(1, 8), viaGfn(7))).toBe(GNTST_bad_domain);
  });

  it('a destroyed granter stays a zombie while its frame is mapped, then is freed', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    guestGrantAccess(m, 1, 9, 2, 6, false);
    const r = map(m, 2, 1, 8, 100);
    expect(domainDestroy(m, 1)).toBe(0);
    expect(m.dom.state(1)).toBe(DS.ZOMBIE);
    // Still in Xen's domain list: an entry nobody pins meets the torn-down p2m…
    expect(map(m, 2, 1, 9, 101).status).toBe(GNTST_bad_page);
    expect(copy(m, 2, viaRef(1, 9), viaGfn(7))).toBe(GNTST_bad_page);
    expect(status(m, 1, 9)).toBe(0);
    // …a further map of the entry d2 pins succeeds (map_grant_ref looks no further than act->mfn)…
    const again = map(m, 2, 1, 8, 101, true);
    expect(again.status).toBe(GNTST_okay);
    // …and a copy through it is refused: acquire_grant_for_copy checks rd->is_dying.
    expect(copy(m, 2, viaRef(1, 8), viaGfn(7))).toBe(GNTST_bad_domain);
    expect(unmapGrantRef(m, 2, again.handle)).toBe(GNTST_okay);
    expect(unmapGrantRef(m, 2, r.handle)).toBe(GNTST_okay);
    expect(m.dom.state(1)).toBe(DS.FREE);
    expect(map(m, 2, 1, 8, 101).status).toBe(GNTST_bad_domain);
    clean(m);
  });

  it('with grant-unmap-skip-unpin the pins outlive the mapping and the checker says so', () => {
    const m = testMachine({ bugs: 'grant-unmap-skip-unpin' });
    guestGrantAccess(m, 1, 8, 2, 5, false);
    const r = map(m, 2, 1, 8, 100);
    expect(unmapGrantRef(m, 2, r.handle)).toBe(GNTST_okay);
    checkQuiescent(m);
    expect(m.log.counts().grant_flags.violations).toBeGreaterThan(0);
    expect(m.log.counts().refcounts.violations).toBeGreaterThan(0);
  });
});

/** grant_table.c's edges one call at a time, after the first mutation run (docs/verification.md §8). */
describe('grant table edges', () => {
  const ctl = (m: ReturnType<typeof testMachine>, w: number): number => Atomics.load(m.control.w, w);
  const mfnOf = (m: ReturnType<typeof testMachine>, d: number, g: number): number => entryMfn(p2mGet(m, d, g));

  it('gnttab_grow_table: refs from 0 to the limit, a frame at a time, counted in GRANT_FRAMES_PEAK; none past it or of a bad ref', () => {
    const m = testMachine();
    for (const ref of [-1, 1.5, NaN, grantEntriesLimit(m, 1)]) expect(gnttabGrowFor(m, 1, ref), `ref ${ref}`).toBe(false);
    expect(gnttabGrowFor(m, 1, 0)).toBe(true);
    expect(gnttabGrowFor(m, 1, 511)).toBe(true);
    expect(m.dom.at(1, DOM.NR_GRANT_FRAMES)).toBe(1);
    expect(gnttabGrowFor(m, 1, 512)).toBe(true); // the first ref of the second frame
    expect(m.dom.at(1, DOM.NR_GRANT_FRAMES)).toBe(2);
    expect(ctl(m, CTL.GRANT_FRAMES_PEAK)).toBe(2);
  });

  it('end_foreign_access clears the flags only: the grantee and the frame words stay', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, true);
    expect(guestEndAccess(m, 1, 8)).toBe(true);
    const i = m.grants.sharedIdx(1, 8);
    expect(Atomics.load(m.grants.shared, i)).toBe(2 << 16);
    expect(Atomics.load(m.grants.shared, i + 1)).toBe(5);
  });

  it('the granter, the ref and the handle are checked whatever their value: negative, fractional, one past the end', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    for (const rd of [-1, 1.5, m.nd]) {
      const r = map(m, 2, rd, 8, 100);
      expect(r).toEqual({ status: GNTST_bad_domain, handle: -1 });
      expect(copy(m, 2, viaRef(rd, 8), viaGfn(7))).toBe(GNTST_bad_domain);
    }
    for (const ref of [-1, 1.5, 512]) {
      expect(map(m, 2, 1, ref, 100)).toEqual({ status: GNTST_bad_gntref, handle: -1 });
      expect(copy(m, 2, viaRef(1, ref), viaGfn(7))).toBe(GNTST_bad_gntref);
    }
    expect(map(m, 2, 1, 511, 100).status).toBe(GNTST_general_error); // in the table, not granted
    for (const h of [-1, 1.5, m.grants.handles(2)]) expect(unmapGrantRef(m, 2, h)).toBe(GNTST_bad_handle);
    expect(unmapGrantRef(m, 2, 0)).toBe(GNTST_bad_handle); // in range, not in use
    const ok = map(m, 2, 1, 8, 100);
    expect(ok.status).toBe(GNTST_okay);
    expect(ok.handle).toBeGreaterThanOrEqual(0);
    expect(ctl(m, CTL.GRANT_REF_PEAK)).toBe(9);
    expect(unmapGrantRef(m, 2, ok.handle)).toBe(GNTST_okay);
    clean(m);
  });

  it('a writable pin takes a type reference on the frame (get_page_type), a read-only one none; unpin gives it back', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    const mfn = mfnOf(m, 1, 5);
    const ro = map(m, 2, 1, 8, 100, true);
    expect(m.ft.typeCount(mfn)).toBe(0);
    const rw = map(m, 2, 1, 8, 101);
    expect(m.ft.typeCount(mfn)).toBe(1);
    expect(m.ft.count(mfn)).toBe(3);
    expect(unmapGrantRef(m, 2, rw.handle)).toBe(GNTST_okay);
    expect(m.ft.typeCount(mfn)).toBe(0);
    // _set_status_v1 / reduce_status_for_pin: GTF_writing went with the last write pin, GTF_reading stays with the read pin.
    expect(status(m, 1, 8)).toBe(GTF_reading);
    expect(unmapGrantRef(m, 2, ro.handle)).toBe(GNTST_okay);
    expect(status(m, 1, 8)).toBe(0);
    expect(m.ft.count(mfn)).toBe(1);
    clean(m);
  });

  it('a read unpin leaves GTF_writing while a write pin remains; the grantee stays the pinner until its last pin goes', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    const rw = map(m, 2, 1, 8, 100);
    const ro1 = map(m, 2, 1, 8, 101, true);
    const ro2 = map(m, 2, 1, 8, 102, true);
    expect(unmapGrantRef(m, 2, ro1.handle)).toBe(GNTST_okay);
    expect(status(m, 1, 8)).toBe(GTF_reading | GTF_writing);
    // Still d2's: a further map by d2 pins again.
    const again = map(m, 2, 1, 8, 103, true);
    expect(again.status).toBe(GNTST_okay);
    for (const h of [rw.handle, ro2.handle, again.handle]) expect(unmapGrantRef(m, 2, h)).toBe(GNTST_okay);
    expect(status(m, 1, 8)).toBe(0);
    clean(m);
  });

  it('an entry already pinned is not checked or marked again by a read map (_set_status_v1 only for a first pin or a first write pin)', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    const a = map(m, 2, 1, 8, 100, true);
    // The guest re-grants the pinned entry with a plain store: the status bits go (its own foot).
    guestGrantAccess(m, 1, 8, 2, 5, false);
    expect(status(m, 1, 8)).toBe(0);
    const b = map(m, 2, 1, 8, 101, true);
    expect(b.status).toBe(GNTST_okay);
    expect(status(m, 1, 8)).toBe(0); // no _set_status for a pinned entry's read map
    const c = map(m, 2, 1, 8, 102);
    expect(status(m, 1, 8)).toBe(GTF_reading | GTF_writing); // the first write pin sets them
    for (const h of [a.handle, b.handle, c.handle]) expect(unmapGrantRef(m, 2, h)).toBe(GNTST_okay);
  });

  it('GTF_sub_page: a map refuses it, a copy takes it (_set_status_v1\'s mask)', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, true);
    const i = m.grants.sharedIdx(1, 8);
    guestStoreBegin(m, 1, 8);
    Atomics.or(m.grants.shared, i, GTF_sub_page);
    guestStoreEnd(m, 1, 8);
    expect(map(m, 2, 1, 8, 100, true).status).toBe(GNTST_general_error);
    expect(status(m, 1, 8)).toBe(0);
    expect(copy(m, 2, viaRef(1, 8), viaGfn(7))).toBe(GNTST_okay);
  });

  it('a read-only frame of the granter (ram_ro) is granted read-only only; a copy reads from one and never writes to one (get_paged_frame)', () => {
    const m = testMachine();
    const mfn = mfnOf(m, 1, 5);
    p2mLock(m, 1, 'test');
    p2mSetLocked(m, 1, 5, p2mEntry(mfn, P2M.ram_ro));
    p2mUnlock(m, 1);
    guestGrantAccess(m, 1, 8, 2, 5, false);
    expect(map(m, 2, 1, 8, 100).status).toBe(GNTST_bad_page);
    const ro = map(m, 2, 1, 8, 100, true);
    expect(ro.status).toBe(GNTST_okay);
    expect(entryType(p2mGet(m, 2, 100))).toBe(P2M.grant_map_ro);
    expect(unmapGrantRef(m, 2, ro.handle)).toBe(GNTST_okay);
    // The caller's own ram_ro gfn: a copy source, not a destination.
    p2mLock(m, 2, 'test');
    p2mSetLocked(m, 2, 9, p2mEntry(mfnOf(m, 2, 9), P2M.ram_ro));
    p2mUnlock(m, 2);
    expect(copy(m, 2, viaGfn(9), viaGfn(7))).toBe(GNTST_okay);
    expect(copy(m, 2, viaGfn(7), viaGfn(9))).toBe(GNTST_bad_page);
  });

  it('copy offsets and lengths: negative or fractional refused, a copy ending at the page\'s end allowed, bytes land at the destination offset', () => {
    const m = testMachine();
    const ps = m.config.page_size_bytes;
    const src = mfnOf(m, 2, 8);
    const dst = mfnOf(m, 2, 7);
    m.frames.u8.set([9, 8, 7, 6], src * ps + 40);
    for (const [so, dof, len] of [[0, 0, -1], [1.5, 0, 4], [0, 1.5, 4], [-4, 0, 4], [0, -4, 4], [0, ps - 3, 4], [ps - 3, 0, 4]] as const) {
      expect(gnttabCopy(m, 2, { src: viaGfn(8, so), dst: viaGfn(7, dof), len }), `${so} ${dof} ${len}`).toBe(GNTST_bad_copy_arg);
    }
    expect(gnttabCopy(m, 2, { src: viaGfn(8, 40), dst: viaGfn(7, ps - 4), len: 4 })).toBe(GNTST_okay);
    expect([...m.frames.u8.subarray(dst * ps + ps - 4, dst * ps + ps)]).toEqual([9, 8, 7, 6]);
    expect(gnttabCopy(m, 2, { src: viaGfn(8, ps - 4), dst: viaGfn(7, 100), len: 4 })).toBe(GNTST_okay);
    expect(gnttabCopy(m, 2, { src: viaGfn(8, 40), dst: viaGfn(7, 100), len: 4 })).toBe(GNTST_okay);
    expect([...m.frames.u8.subarray(dst * ps + 100, dst * ps + 104)]).toEqual([9, 8, 7, 6]);
    expect(m.ft.count(src)).toBe(1);
    expect(m.ft.count(dst)).toBe(1);
    clean(m);
  });

  it('get_maptrack_handle stops at the mapper\'s max_maptrack_frames, below the storage: GNTST_no_space, counted, the handle list intact', () => {
    // The storage is sized for Xen's defaults; d1 is created with one maptrack frame.
    const limits = [{}, { max_maptrack_frames: 1 }];
    const m = new Machine(createMachineSabs({ nr_frames: 1024, page_size_bytes: 4096, p2m_pool_pages: 64, bars: [], checking: true, buggify: NO_BUGS, seed: 1, max_domains: 2 }));
    limits.forEach((l, d) => expect(domainCreate(m, { domid: d, max_pages: 300, nr_vcpus: 1, p2m_pages: 16, privileged: d === 0, ...l })).toBe(d));
    expect(populateRange(m, 0, 0, 8)).toBe(0);
    for (let r = 0; r < 3; r++) guestGrantAccess(m, 0, r, 1, r, true);
    const per = MAPTRACK_PER_FRAME;
    expect(m.grants.handles(1)).toBeGreaterThan(per);
    const hs: number[] = [];
    for (let k = 0; k < per; k++) {
      const r = map(m, 1, 0, k >> 7, 1000 + k, true);
      expect(r.status).toBe(GNTST_okay);
      hs.push(r.handle);
    }
    expect(new Set(hs).size).toBe(per);
    expect(ctl(m, CTL.MAPTRACK_PEAK)).toBe(per);
    expect(map(m, 1, 0, 2, 2000, true)).toEqual({ status: GNTST_no_space, handle: -1 });
    expect(ctl(m, CTL.GRANT_NO_SPACE)).toBe(1);
    // One handle back: the next map gets exactly it.
    expect(unmapGrantRef(m, 1, hs[77]!)).toBe(GNTST_okay);
    const again = map(m, 1, 0, 2, 2000, true);
    expect(again).toEqual({ status: GNTST_okay, handle: hs[77] });
    expect(map(m, 1, 0, 2, 2001, true).status).toBe(GNTST_no_space);
    expect(ctl(m, CTL.MAPTRACK_PEAK)).toBe(per);
  });
});
