import { describe, expect, it } from 'vitest';
import { GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page, GNTST_okay, GNTST_permission_denied, GNTST_general_error, GNTST_bad_copy_arg } from '../public/errno.js';
import { domid, gfn, grantRef, GTF_reading, GTF_writing, P2M } from '../public/types.js';
import { gnttabCopy, guestEndAccess, guestGrantAccess, mapGrantRef, unmapGrantRef } from './grant-table.js';
import { testMachine } from '../../tests/test-machine.js';
import { p2mGet } from './p2m.js';
import { entryMfn, entryType } from '../layout/p2m.js';
import { checkQuiescent } from '../checker/checker.js';
import { domainDestroy } from './domain.js';
import { DS } from '../layout/domains.js';

const map = (m: ReturnType<typeof testMachine>, ld: number, rd: number, ref: number, at: number, ro = false) =>
  mapGrantRef(m, ld, { dom: domid(rd), ref: grantRef(ref), host_gfn: gfn(at), readonly: ro });
const flags = (m: ReturnType<typeof testMachine>, d: number, ref: number) => Atomics.load(m.grants.shared, m.grants.sharedIdx(d, ref)) & 0xffff;

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
    expect(map(m, 2, 1, 9, 100).status).toBe(GNTST_permission_denied);
    const r = map(m, 2, 1, 9, 100, true);
    expect(r.status).toBe(GNTST_okay);
    expect(entryType(p2mGet(m, 2, 100))).toBe(P2M.grant_map_ro);
    expect(flags(m, 1, 9) & GTF_writing).toBe(0);
    expect(unmapGrantRef(m, 2, r.handle)).toBe(GNTST_okay);
  });

  it('validates refs, domains, grantee and destination', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    expect(map(m, 2, 1, 100000, 100).status).toBe(GNTST_bad_gntref);
    expect(map(m, 2, 77, 8, 100).status).toBe(GNTST_bad_domain);
    expect(map(m, 0, 1, 8, 100).status).toBe(GNTST_permission_denied); // granted to d2, not d0
    expect(map(m, 2, 1, 8, 3).status).toBe(GNTST_general_error); // gfn 3 is RAM, not empty
    // A granted gfn that is not RAM of the granter.
    guestGrantAccess(m, 1, 10, 2, 200, false);
    expect(map(m, 2, 1, 10, 101).status).toBe(GNTST_bad_page);
    expect(flags(m, 1, 10) & (GTF_reading | GTF_writing)).toBe(0);
    checkQuiescent(m);
    expect(m.log.totalViolations()).toBe(0);
  });

  it('copy moves bytes between a grant and the caller\'s own page, and checks its arguments', () => {
    const m = testMachine();
    const ps = m.config.page_size_bytes;
    const src = entryMfn(p2mGet(m, 1, 5));
    m.frames.u8.set([1, 2, 3, 4], src * ps + 16);
    guestGrantAccess(m, 1, 8, 2, 5, true);
    expect(gnttabCopy(m, 2, { src: { kind: 'ref', domid: domid(1), ref: grantRef(8), offset: 16 }, dst: { kind: 'gfn', gfn: gfn(7), offset: 0 }, len: 4 })).toBe(GNTST_okay);
    const dst = entryMfn(p2mGet(m, 2, 7));
    expect([...m.frames.u8.subarray(dst * ps, dst * ps + 4)]).toEqual([1, 2, 3, 4]);
    // Writing into a read-only grant is refused.
    expect(gnttabCopy(m, 2, { src: { kind: 'gfn', gfn: gfn(7), offset: 0 }, dst: { kind: 'ref', domid: domid(1), ref: grantRef(8), offset: 0 }, len: 4 })).toBe(GNTST_permission_denied);
    expect(gnttabCopy(m, 2, { src: { kind: 'gfn', gfn: gfn(7), offset: ps - 2 }, dst: { kind: 'gfn', gfn: gfn(8), offset: 0 }, len: 4 })).toBe(GNTST_bad_copy_arg);
    expect(flags(m, 1, 8) & (GTF_reading | GTF_writing)).toBe(0);
    checkQuiescent(m);
    expect(m.log.totalViolations()).toBe(0);
  });

  it('a destroyed granter stays a zombie while its frame is mapped, then is freed', () => {
    const m = testMachine();
    guestGrantAccess(m, 1, 8, 2, 5, false);
    const r = map(m, 2, 1, 8, 100);
    expect(domainDestroy(m, 1)).toBe(0);
    expect(m.dom.state(1)).toBe(DS.ZOMBIE);
    expect(map(m, 2, 1, 8, 101).status).toBe(GNTST_bad_domain);
    expect(unmapGrantRef(m, 2, r.handle)).toBe(GNTST_okay);
    expect(m.dom.state(1)).toBe(DS.FREE);
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
