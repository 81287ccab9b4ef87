import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  EBUSY, EEXIST, EFAULT, EINVAL, ENOENT, ENOMEM, ENOSPC, ENXIO, EPERM, ESRCH,
  GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page, GNTST_general_error, GNTST_no_space, GNTST_okay,
} from '../public/errno.js';
import { GTF_reading, GTF_writing } from '../public/types.js';
import { Model, type ModelConfig, type Outcome } from './model.js';
import { explain, explainable, interleavings, sameOutcome } from './interleave.js';

const PS = 256;
const NR = 128;
const BAR0 = NR; // 4 pages, owned by dom0
const BAR1 = NR + 4; // 2 pages, owned by d3

/**
 * d0 dom0 (privileged backend), d1 a frontend served by d0, d2 a frontend
 * served by d1 (for nested Maps), d3 a peer with no backend.
 */
/** The first gfn past a 32-bit guest physical space (2^20 frames of 4 KiB). */
const OUT = 2 ** 20;

function cfg(over: Partial<ModelConfig> = {}): ModelConfig {
  return {
    page_size_bytes: PS,
    nr_frames: NR,
    domains: [
      { memory_pages: 16, max_pages: 32, privileged: true, paddr_bits: 32 },
      { memory_pages: 16, max_pages: 20, privileged: false, backend: 0, paddr_bits: 32 },
      { memory_pages: 8, max_pages: 8, privileged: false, backend: 1, paddr_bits: 32 },
      { memory_pages: 8, max_pages: 8, privileged: false, paddr_bits: 32 },
    ],
    bars: [
      { owner: 0, nr_pages: 4, base_mfn: BAR0 },
      { owner: 3, nr_pages: 2, base_mfn: BAR1 },
    ],
    ...over,
  };
}

function fresh(over: Partial<ModelConfig> = {}): Model {
  return new Model(cfg(over));
}

const ram = (gfn: number) => ({ kind: 'ram', gfn }) as const;
const bar = (mfn: number) => ({ kind: 'bar', mfn }) as const;
const type = (m: Model, d: number, gfn: number) => m.page(d, gfn)?.type ?? 'hole';
const ok = { rc: 0, index: -1 };

function consistent(m: Model): void {
  expect(m.checkConsistency()).toEqual([]);
}

describe('boot and memory_op', () => {
  it('populates RAM at gfn 0… and puts BARs in their owners\' iomem_caps', () => {
    const m = fresh();
    const o = m.observe();
    expect(o.domains.map((d) => d.tot_pages)).toEqual([16, 16, 8, 8]);
    expect(o.domains.every((d) => d.state === 'running')).toBe(true);
    expect(o.free_frames).toBe(NR - 48);
    expect(o.p2m[2]).toEqual(Array.from({ length: 8 }, (_, g) => [g, 'ram_rw']));
    expect(m.read(1, 0, 0, 8)).toEqual({ value: 0n, outcome: 'ok' });
    consistent(m);
  });

  it('populate: extents done (nr_done), the quota first; over RAM the old page stays allocated, unmapped', () => {
    const m = fresh();
    expect(m.populate(2, 0, 1)).toBe(0); // d2 is at max_pages: allocation fails first, nothing done
    m.write(1, 0, 0, 4, 0x55n);
    expect(m.populate(1, 0, 1)).toBe(1); // p2m_add_page replaces RAM...
    expect(m.read(1, 0, 0, 4).value).toBe(0n);
    expect(m.observe().domains[1]!.tot_pages).toBe(17); // ...and the old page is still counted
    expect(m.populate(1, 20, 2)).toBe(2);
    expect(m.populate(1, 30, 5)).toBe(1); // 20 max: one done, then the quota → a short count
    expect(m.populate(1, OUT, 1)).toBe(0); // outside the p2m
    expect(m.observe().domains[1]!.tot_pages).toBe(20);
    consistent(m);
    expect(m.destroy(0, 1)).toBe(0); // the unmapped page goes with the domain
    expect(m.observe().domains[1]!.state).toBe('free');
    consistent(m);
  });

  it('populate: nothing done when the heap is empty or the domain is dead', () => {
    const m = new Model({ ...cfg(), nr_frames: 50, bars: [] });
    expect(m.populate(0, 16, 10)).toBe(2);
    expect(m.populate(0, 30, 1)).toBe(0);
    expect(m.balloonOut(0, 16, 2)).toBe(2);
    expect(m.destroy(0, 3)).toBe(0);
    expect(m.populate(3, 20, 1)).toBe(0);
  });

  it('populate over a grant or foreign map crashes the guest (p2m_add_page: a special entry)', () => {
    const m = fresh();
    m.grant(3, 2, 1, 1, false);
    expect(m.mapGrant(1, 3, 2, 40, false).status).toBe(GNTST_okay);
    expect(m.populate(1, 39, 2)).toBe(1);
    expect(m.observe().domains[1]!.state).toBe('crashed');
    expect(m.observe().domains[1]!.tot_pages).toBe(17); // the extent done; the crashing one undone
    consistent(m);
  });

  it('balloon out: RAM of the caller only; short count on the first failure', () => {
    const m = fresh();
    m.write(1, 3, 0, 4, 0xdeadbeefn);
    expect(m.balloonOut(1, 3, 1)).toBe(1);
    expect(type(m, 1, 3)).toBe('hole');
    expect(m.balloonOut(1, 3, 1)).toBe(0);
    expect(m.balloonOut(1, 14, 4)).toBe(2);
    expect(m.observe().domains[1]!.tot_pages).toBe(13);
    // The frame came back scrubbed.
    expect(m.populate(1, 3, 1)).toBe(1);
    expect(m.read(1, 3, 0, 4).value).toBe(0n);
    consistent(m);
  });

  it('hypercall copies: own RAM only, -EFAULT otherwise, bounded by the scratch buffer', () => {
    const m = fresh();
    m.write(1, 2, 0, 8, 0x1122334455667788n);
    expect(m.hypercallCopy(1, 2, 'from_guest', PS + 8)).toBe(0);
    expect(m.hypercallCopy(1, 5, 'to_guest', 8)).toBe(0);
    expect(m.read(1, 5, 0, 8).value).toBe(0x1122334455667788n);
    expect(m.hypercallCopy(1, 40, 'from_guest', 1)).toBe(-EFAULT);
    expect(m.hypercallCopy(1, 15, 'to_guest', 2 * PS)).toBe(-EFAULT); // second page is a hole
    expect(m.hypercallCopy(1, 0, 'to_guest', 5 * PS)).toBe(-EINVAL);
    expect(m.hypercallCopy(1, 40, 'to_guest', 0)).toBe(0);
  });
});

describe('guest accesses', () => {
  it('little-endian values, widths, holes read all ones', () => {
    const m = fresh();
    expect(m.write(1, 1, 8, 4, 0x1_0403_0201n)).toEqual({ outcome: 'ok' }); // truncated to 32 bits
    expect(m.read(1, 1, 8, 1).value).toBe(1n);
    expect(m.read(1, 1, 8, 2).value).toBe(0x0201n);
    expect(m.read(1, 1, 8, 8).value).toBe(0x04030201n);
    expect(m.read(1, 50, 0, 2)).toEqual({ value: 0xffffn, outcome: 'null_io' });
    expect(m.read(1, 500, 0, 8)).toEqual({ value: 0xffffffffffffffffn, outcome: 'null_io' });
    expect(m.write(1, 50, 0, 4, 1n)).toEqual({ outcome: 'null_io' });
    expect(() => m.read(1, 1, PS - 2, 4)).toThrow(RangeError);
    expect(() => m.read(1, 1, 0, 3)).toThrow(RangeError);
  });

  it('ram_ro writes are discarded; grant_map_ro writes are #GP', () => {
    const m = fresh();
    m.write(3, 1, 0, 4, 7n);
    m.grant(3, 2, 0, 1, true);
    expect(m.mapGrant(0, 3, 2, 40, true)).toEqual({ status: GNTST_okay, handle: 0 });
    expect(m.read(0, 40, 0, 4)).toEqual({ value: 7n, outcome: 'ok' });
    expect(m.write(0, 40, 0, 4, 9n)).toEqual({ outcome: 'gp' });
    expect(m.read(3, 1, 0, 4).value).toBe(7n);
  });
});

describe('grant tables', () => {
  it('map shares the frame, pins set reading/writing, end_access refused while pinned', () => {
    const m = fresh();
    m.grant(1, 8, 3, 5, false);
    const r = m.mapGrant(3, 1, 8, 20, false);
    expect(r.status).toBe(GNTST_okay);
    expect(type(m, 3, 20)).toBe('grant_map_rw');
    expect(m.grantFlags(1, 8) & (GTF_reading | GTF_writing)).toBe(GTF_reading | GTF_writing);
    m.write(3, 20, 0, 4, 0xabcdn);
    expect(m.read(1, 5, 0, 4).value).toBe(0xabcdn);
    expect(m.page(1, 5)!.count).toBe(2);
    expect(m.endGrant(1, 8)).toBe(false);
    expect(m.unmapGrant(3, r.handle)).toBe(GNTST_okay);
    expect(m.grantFlags(1, 8) & (GTF_reading | GTF_writing)).toBe(0);
    expect(type(m, 3, 20)).toBe('hole');
    expect(m.endGrant(1, 8)).toBe(true);
    expect(m.unmapGrant(3, r.handle)).toBe(GNTST_bad_handle);
    expect(m.unmapGrant(3, 99999)).toBe(GNTST_bad_handle);
    consistent(m);
  });

  it('map_grant_ref check order (Xen\'s: granter, maptrack, ref, pin, host mapping); a refusal leaves the entry as it was', () => {
    const m = fresh();
    const status = (d: number, ref: number) => m.grantFlags(d, ref) & (GTF_reading | GTF_writing);
    m.grant(1, 8, 3, 5, false);
    m.grant(1, 9, 3, 6, true);
    m.grant(1, 10, 3, 40, false); // not RAM of the granter
    expect(m.mapGrant(3, 77, 512, 999, false).status).toBe(GNTST_bad_domain);
    expect(m.mapGrant(3, 1, 512, 999, false).status).toBe(GNTST_bad_gntref); // past the one frame its table has
    // The host mapping comes last: outside the p2m or onto RAM, GNTST_general_error, the pin undone.
    expect(m.mapGrant(3, 1, 8, OUT, false).status).toBe(GNTST_general_error);
    expect(m.mapGrant(3, 1, 8, 0, false).status).toBe(GNTST_general_error); // gfn 0 is RAM
    expect(status(1, 8)).toBe(0);
    expect(m.mapGrant(2, 1, 8, 20, false).status).toBe(GNTST_general_error); // granted to d3
    expect(m.mapGrant(3, 1, 9, 20, false).status).toBe(GNTST_general_error); // ro grant, rw map
    expect(m.mapGrant(3, 1, 10, 20, false).status).toBe(GNTST_bad_page);
    expect(status(1, 10)).toBe(0);
    expect(m.mapGrant(3, 1, 9, 20, true).status).toBe(GNTST_okay);
    expect(m.endGrant(1, 8)).toBe(true);
    consistent(m);
  });

  it('an entry pinned by one grantee refuses another before setting anything, even re-granted to it', () => {
    const m = fresh();
    m.grant(1, 8, 3, 5, false);
    const r = m.mapGrant(3, 1, 8, 20, true);
    expect(r.status).toBe(GNTST_okay);
    // Re-granted to d2 while d3 holds its read pin: the plain store wipes the status bits.
    m.grant(1, 8, 2, 5, false);
    expect(m.mapGrant(2, 1, 8, 20, false).status).toBe(GNTST_general_error);
    expect(m.grantFlags(1, 8) & (GTF_reading | GTF_writing)).toBe(0);
    expect(m.unmapGrant(3, r.handle)).toBe(GNTST_okay);
    expect(m.endGrant(1, 8)).toBe(true);
    // Pinned, the entry's type and grantee are not looked at again: d3 adds a write pin to an entry granted to d2.
    m.grant(1, 9, 3, 6, false);
    const a = m.mapGrant(3, 1, 9, 21, true);
    m.grant(1, 9, 2, 6, false);
    const b = m.mapGrant(3, 1, 9, 22, false);
    expect(b.status).toBe(GNTST_okay);
    expect(m.grantFlags(1, 9) & (GTF_reading | GTF_writing)).toBe(GTF_reading | GTF_writing);
    expect(m.unmapGrant(3, b.handle)).toBe(GNTST_okay);
    expect(m.grantFlags(1, 9) & (GTF_reading | GTF_writing)).toBe(GTF_reading);
    expect(m.unmapGrant(3, a.handle)).toBe(GNTST_okay);
    expect(m.endGrant(1, 9)).toBe(true);
    consistent(m);
  });

  it('maptrack handles are reused last-freed first and run out with GNTST_no_space; 128 pins of a kind per entry', () => {
    const m = new Model({ ...cfg(), domains: [{ memory_pages: 1, max_pages: 1, privileged: true }, { memory_pages: 1, max_pages: 1, privileged: false }] , bars: [] });
    for (let ref = 0; ref < 5; ref++) m.grant(1, ref, 0, 0, false);
    for (let h = 0; h < 128; h++) expect(m.mapGrant(0, 1, 0, 1 + h, true)).toEqual({ status: GNTST_okay, handle: h });
    // Xen's 8-bit pin counters: the 129th read pin is refused, a write pin still fits.
    expect(m.mapGrant(0, 1, 0, 200, true)).toEqual({ status: GNTST_general_error, handle: -1 });
    expect(m.mapGrant(0, 1, 0, 200, false)).toEqual({ status: GNTST_okay, handle: 128 });
    for (let h = 129; h < 512; h++) expect(m.mapGrant(0, 1, 1 + (h >> 7), 72 + h, true)).toEqual({ status: GNTST_okay, handle: h });
    expect(m.mapGrant(0, 1, 4, 599, true).status).toBe(GNTST_no_space);
    expect(m.unmapGrant(0, 7)).toBe(GNTST_okay);
    expect(m.unmapGrant(0, 3)).toBe(GNTST_okay);
    expect(m.mapGrant(0, 1, 0, 599, true).handle).toBe(3);
    expect(m.mapGrant(0, 1, 0, 5, true).status).toBe(GNTST_general_error); // gfn 5 holds handle 4's map
    expect(m.mapGrant(0, 1, 0, 5, true).status).toBe(GNTST_general_error); // handle 7 went back
    expect(m.mapGrant(0, 1, 0, 8, true).handle).toBe(7);
  });

  it('crashed granter: its grants still map (it is not gone until destroyed)', () => {
    const m = fresh();
    m.write(3, 2, 0, 4, 0x55n);
    m.grant(3, 1, 1, 2, false);
    expect(m.crash(3)).toBe(0);
    const r = m.mapGrant(1, 3, 1, 30, false);
    expect(r.status).toBe(GNTST_okay);
    expect(m.read(1, 30, 0, 4)).toEqual({ value: 0x55n, outcome: 'ok' });
    expect(m.unmapGrant(1, r.handle)).toBe(GNTST_okay);
    consistent(m);
  });

  it('zombie granter: the peer\'s grant map keeps the frame and the domain until unmapped', () => {
    const m = fresh();
    m.write(3, 2, 0, 4, 0x55n);
    m.grant(3, 1, 1, 2, false);
    m.grant(3, 2, 1, 3, false);
    const r = m.mapGrant(1, 3, 1, 30, false);
    expect(r.status).toBe(GNTST_okay);
    expect(m.destroy(0, 3)).toBe(0);
    expect(m.observe().domains[3]).toEqual({ state: 'zombie', tot_pages: 1 });
    expect(m.observe().p2m[3]).toEqual([]);
    expect(m.read(1, 30, 0, 4)).toEqual({ value: 0x55n, outcome: 'ok' });
    // Still in Xen's domain list: an entry nobody pins meets the torn-down p2m…
    expect(m.mapGrant(1, 3, 2, 31, false).status).toBe(GNTST_bad_page);
    // …and the grantee maps the entry it pins once more (map_grant_ref looks no further than act->mfn).
    const again = m.mapGrant(1, 3, 1, 31, true);
    expect(again.status).toBe(GNTST_okay);
    expect(m.destroy(0, 3)).toBe(-ESRCH);
    expect(m.unmapGrant(1, again.handle)).toBe(GNTST_okay);
    const free = m.observe().free_frames;
    expect(m.unmapGrant(1, r.handle)).toBe(GNTST_okay);
    expect(m.observe().domains[3]).toEqual({ state: 'free', tot_pages: 0 });
    expect(m.observe().free_frames).toBe(free + 1);
    expect(m.mapGrant(1, 3, 1, 31, false).status).toBe(GNTST_bad_domain); // freed: gone from the domain list
    consistent(m);
  });

  it('a destroyed mapper drops its grant maps', () => {
    const m = fresh();
    m.grant(1, 1, 3, 2, false);
    expect(m.mapGrant(3, 1, 1, 20, false).status).toBe(GNTST_okay);
    expect(m.destroy(0, 3)).toBe(0);
    expect(m.observe().domains[3]!.state).toBe('free');
    expect(m.endGrant(1, 1)).toBe(true);
    consistent(m);
  });
});

describe('foreign mapping', () => {
  it('checks in order (p2m_add_foreign): ESRCH, EPERM (self), EPERM (XSM_TARGET), EINVAL (source), EINVAL (at)', () => {
    const m = fresh();
    expect(m.foreignMap(0, 9, 0, OUT)).toBe(-ESRCH); // the source before the destination
    expect(m.foreignMap(1, 1, 0, 40)).toBe(-EPERM); // a domain cannot map itself
    expect(m.foreignMap(1, 3, 0, 40)).toBe(-EPERM); // d1 is not d3's device model
    expect(m.foreignMap(0, 3, 20, OUT)).toBe(-EINVAL); // the source before the destination
    expect(m.foreignMap(0, 3, 0, OUT)).toBe(-EINVAL);
    expect(m.foreignMap(0, 3, 0, 40)).toBe(0);
    expect(type(m, 0, 40)).toBe('map_foreign');
    expect(m.page(3, 0)!.count).toBe(2);
    expect(m.foreignUnmap(0, 40)).toBe(0);
    expect(m.foreignUnmap(0, 40)).toBe(-ENOENT);
    expect(m.foreignUnmap(0, OUT)).toBe(-ENOENT);
    consistent(m);
  });

  it('a device model maps its target, a crashed one too; not a zombie\'s pages', () => {
    const m = fresh();
    m.write(2, 3, 0, 4, 0x2020n);
    expect(m.foreignMap(1, 2, 3, 40)).toBe(0); // d1 is d2's backend (d->target)
    expect(m.read(1, 40, 0, 4).value).toBe(0x2020n);
    expect(m.crash(2)).toBe(0);
    expect(m.foreignMap(1, 2, 4, 41)).toBe(0); // a core dump maps a crashed guest
    expect(m.destroy(0, 2)).toBe(0);
    expect(m.observe().domains[2]!.state).toBe('zombie'); // d1 still holds two of its pages
    expect(m.foreignMap(0, 2, 5, 42)).toBe(-EINVAL); // its p2m is gone
    expect(m.foreignUnmap(1, 40)).toBe(0);
    expect(m.foreignUnmap(1, 41)).toBe(0);
    expect(m.observe().domains[2]!.state).toBe('free');
    expect(m.foreignMap(0, 2, 5, 42)).toBe(-ESRCH);
    consistent(m);
  });

  it('onto the caller\'s RAM the old page is freed; onto a grant or foreign map ENXIO; onto a Map\'d gfn a hole\'s answer', () => {
    const m = fresh();
    expect(m.foreignMap(0, 3, 0, 5)).toBe(0);
    expect(type(m, 0, 5)).toBe('map_foreign');
    expect(m.observe().domains[0]!.tot_pages).toBe(15); // guest_remove_page freed d0's page
    expect(m.foreignMap(0, 3, 1, 5)).toBe(-ENXIO);
    m.grant(3, 2, 0, 2, false);
    expect(m.mapGrant(0, 3, 2, 41, false).status).toBe(GNTST_okay);
    expect(m.foreignMap(0, 3, 1, 41)).toBe(-ENXIO);
    // d1, a frontend of d0 and d2's device model, maps d2's page onto the gfn d0 Map'd into it.
    m.write(0, 6, 0, 4, 0x66n);
    expect(m.map(0, 1, ram(6), 1, 40).rc).toBe(0);
    expect(m.foreignMap(1, 2, 4, 40)).toBe(0); // as onto a hole...
    expect(m.read(1, 40, 0, 4).value).toBe(0x66n); // ...but the Map stays
    expect(m.page(2, 4)!.count).toBe(1); // and no reference is held
    expect(m.foreignUnmap(1, 40)).toBe(-ENOENT); // as for a hole
    expect(m.foreignUnmap(1, 41)).toBe(-ENOENT);
    expect(m.revoke(0, { fe: 1, gfn: 40, count: 1 })).toBe(0);
    expect(m.foreignMap(1, 2, 4, 40)).toBe(0);
    expect(type(m, 1, 40)).toBe('revoked');
    consistent(m);
  });

  it('remove_from_physmap of the caller\'s RAM: the gfn goes, the page stays allocated', () => {
    const m = fresh();
    expect(m.foreignUnmap(2, 3)).toBe(0);
    expect(type(m, 2, 3)).toBe('hole');
    expect(m.observe().domains[2]!.tot_pages).toBe(8);
    expect(m.populate(2, 3, 1)).toBe(0); // still at max_pages
    consistent(m);
  });
});

describe('Map', () => {
  it('maps backend RAM: the frontend reads and writes the backend\'s frame', () => {
    const m = fresh();
    m.write(0, 4, 0, 8, 0x0102030405060708n);
    const r = m.map(0, 1, ram(4), 2, 40, 'mmio_direct');
    expect(r).toEqual({ rc: 0, index: -1, id: r.id });
    expect(r.id).toBeGreaterThan(0);
    expect(type(m, 1, 40)).toBe('mmio_direct');
    expect(m.read(1, 40, 0, 8).value).toBe(0x0102030405060708n);
    m.write(1, 41, 4, 4, 0xcafen);
    expect(m.read(0, 5, 4, 4).value).toBe(0xcafen);
    expect(m.page(0, 4)!.count).toBe(2);
    expect(m.observe().domains.map((d) => d.tot_pages)).toEqual([16, 16, 8, 8]);
    consistent(m);
  });

  it('argument errors (index -1) in the documented order', () => {
    const m = fresh();
    expect(m.map(0, 1, ram(4), 0, 40)).toEqual({ rc: -EINVAL, index: -1, id: 0 });
    expect(m.map(0, 1, ram(4), 513, 40).rc).toBe(-EINVAL);
    expect(m.map(0, 1, ram(4), 1.5, 40).rc).toBe(-EINVAL);
    expect(m.map(0, 9, ram(4), 1, 40).rc).toBe(-ESRCH);
    expect(m.map(1, 1, ram(4), 1, 40).rc).toBe(-EINVAL);
    expect(m.map(3, 1, ram(4), 1, 40).rc).toBe(-EPERM); // d3 is neither d1's backend nor privileged
    expect(m.map(1, 3, ram(4), 1, 20).rc).toBe(-EPERM);
    expect(m.map(0, 1, ram(4), 1, 40, 'ram_rw' as 'mmio_direct').rc).toBe(-EINVAL);
    expect(m.map(0, 1, bar(BAR0 + 2), 3, 40).rc).toBe(-EINVAL); // leaves the BAR
    expect(m.map(0, 1, bar(BAR0 + 3), 2, 40).rc).toBe(-EINVAL); // spans two BARs
    expect(m.map(0, 1, bar(BAR1), 1, 40).rc).toBe(-EPERM); // d3's BAR, not in d0's caps
    expect(m.crash(1)).toBe(0);
    expect(m.map(0, 1, ram(4), 1, 40).rc).toBe(-ESRCH);
    consistent(m);
  });

  it('per-page errors name the first failing page and change nothing', () => {
    const m = fresh();
    const before = m.observe();
    expect(m.map(0, 1, ram(14), 4, 40)).toEqual({ rc: -EINVAL, index: 2, id: 0 }); // gfn 16 is a hole
    expect(m.map(0, 1, ram(4), 2, 15)).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    expect(m.map(0, 1, ram(4), 3, OUT - 2)).toEqual({ rc: -EINVAL, index: 2, id: 0 }); // OUT is past fe's 32-bit space
    // source checked before destination within a page
    expect(m.map(0, 1, ram(15), 2, 15)).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    expect(m.map(0, 1, ram(16), 2, 15)).toEqual({ rc: -EINVAL, index: 0, id: 0 });
    // grant maps, foreign maps and ram_ro are not backend RAM
    m.grant(3, 0, 0, 0, false);
    expect(m.mapGrant(0, 3, 0, 30, false).status).toBe(GNTST_okay);
    expect(m.foreignMap(0, 3, 1, 31)).toBe(0);
    expect(m.map(0, 1, ram(30), 1, 40).index).toBe(0);
    expect(m.map(0, 1, ram(30), 1, 40).rc).toBe(-EINVAL);
    expect(m.map(0, 1, ram(31), 1, 40).rc).toBe(-EINVAL);
    expect(m.observe().p2m[1]).toEqual(before.p2m[1]);
    consistent(m);
  });

  it('maps a BAR without page references; a write is seen by every mapping of the page', () => {
    const m = fresh();
    const a = m.map(0, 1, bar(BAR0 + 1), 2, 40);
    expect(a.rc).toBe(0);
    // dom0 denies itself page 0: the rest of the BAR stays permitted.
    expect(m.iomemPermit(0, 0, BAR0, 1, false)).toBe(0);
    expect(m.map(0, 1, bar(BAR0), 1, 50).rc).toBe(-EPERM);
    expect(m.iomemPermit(0, 0, BAR0, 4, true)).toBe(-EPERM); // it no longer holds page 0 to grant
    const b = m.map(0, 1, bar(BAR0 + 2), 1, 50);
    expect(b.rc).toBe(0);
    m.write(1, 41, 16, 4, 0x77n);
    expect(m.read(1, 50, 16, 4).value).toBe(0x77n);
    expect(m.page(1, 41)!.count).toBe(0);
    // The frontend's iomem_caps were neither read nor widened: d1 may not Map the BAR into d2.
    expect(m.map(1, 2, bar(BAR0 + 1), 1, 20).rc).toBe(-EPERM);
    consistent(m);
  });

  it('Map\'d gfns are not frontend RAM: copy, grant, foreign map, balloon and Steal refuse them', () => {
    const m = fresh();
    expect(m.map(0, 1, ram(4), 1, 40).rc).toBe(0);
    expect(m.hypercallCopy(1, 40, 'from_guest', 4)).toBe(-EFAULT);
    m.grant(1, 3, 3, 40, false);
    expect(m.mapGrant(3, 1, 3, 20, false).status).toBe(GNTST_bad_page);
    expect(m.foreignMap(0, 1, 40, 50)).toBe(-EINVAL);
    expect(m.balloonOut(1, 40, 1)).toBe(0); // as for a hole: nothing done
    expect(m.steal(0, 1, 40, 1).rc).toBe(-EINVAL);
    expect(m.foreignUnmap(1, 40)).toBe(-ENOENT); // as for a hole
    consistent(m);
  });

  it('the page reference outlives the backend ballooning its source page out', () => {
    const m = fresh();
    m.write(0, 4, 0, 4, 0x99n);
    const r = m.map(0, 1, ram(4), 1, 40);
    const free = m.observe().free_frames;
    expect(m.balloonOut(0, 4, 1)).toBe(1);
    expect(m.observe().free_frames).toBe(free);
    expect(m.read(1, 40, 0, 4).value).toBe(0x99n);
    expect(m.revoke(0, { id: r.id })).toBe(0);
    expect(m.observe().free_frames).toBe(free + 1);
    expect(m.observe().domains[0]!.tot_pages).toBe(15);
    consistent(m);
  });

  it('mmio_dm: an ioreq when a server of the frontend claims the gfn, else the null handler', () => {
    const m = fresh();
    expect(m.map(0, 1, ram(4), 2, 40, 'mmio_dm').rc).toBe(0);
    expect(type(m, 1, 40)).toBe('mmio_dm');
    expect(m.read(1, 40, 0, 4)).toEqual({ value: 0xffffffffn, outcome: 'null_io' });
    expect(m.ioreqServer(0, 1, [{ start: 40, count: 1 }], 'remap')).toBe(0);
    expect(m.read(1, 40, 0, 4).outcome).toBe('ioreq');
    expect(m.write(1, 40, 0, 4, 1n)).toEqual({ outcome: 'ioreq' });
    expect(m.read(1, 41, 0, 4).outcome).toBe('null_io');
    expect(m.read(0, 4, 0, 4).value).toBe(0n); // the write went to the device model, not the frame
  });

  it('onto a revoked gfn is allowed; onto any other special entry is -EEXIST; the frontend\'s memory ops see a hole', () => {
    const m = fresh();
    const r = m.map(0, 1, ram(4), 1, 40);
    expect(m.map(0, 1, ram(5), 1, 40)).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    expect(m.revoke(0, { id: r.id })).toBe(0);
    expect(type(m, 1, 40)).toBe('revoked');
    expect(m.populate(1, 40, 1)).toBe(1); // as onto a hole; the page is charged, the gfn stays revoked
    expect(m.observe().domains[1]!.tot_pages).toBe(17);
    expect(type(m, 1, 40)).toBe('revoked');
    expect(m.foreignMap(0, 1, 40, 50)).toBe(-EINVAL);
    expect(m.balloonOut(1, 40, 1)).toBe(0);
    expect(m.foreignUnmap(1, 40)).toBe(-ENOENT);
    expect(m.map(0, 1, ram(5), 1, 40).rc).toBe(0);
    expect(type(m, 1, 40)).toBe('mmio_direct');
    expect(m.populate(1, 40, 1)).toBe(0); // over mmio_direct: p2m_add_page crashes the guest
    expect(m.observe().domains[1]!.state).toBe('crashed');
    expect(m.observe().domains[1]!.tot_pages).toBe(17);
    consistent(m);
  });

  it('nested Map: allowed with transitive revoke, one kind and one parent per Map', () => {
    const m = fresh();
    const p = m.map(0, 1, ram(4), 2, 40);
    const q = m.map(0, 1, ram(8), 1, 42);
    const n = m.map(1, 2, ram(40), 2, 20);
    expect(n.rc).toBe(0);
    expect(m.mappings().find((x) => x.id === n.id)).toMatchObject({ kind: 'nested', parent: p.id, be: 1, fe: 2 });
    expect(m.page(0, 4)!.count).toBe(3);
    expect(m.map(1, 2, ram(41), 2, 22)).toEqual({ rc: -EINVAL, index: 1, id: 0 }); // two parents
    expect(m.map(1, 2, ram(15), 2, 22)).toEqual({ rc: -EINVAL, index: 1, id: 0 }); // RAM then nested
    expect(m.map(1, 2, ram(42), 1, 22).rc).toBe(0);
    expect(q.rc).toBe(0);
    const off = fresh({ transitive_revoke: false });
    expect(off.map(0, 1, ram(4), 1, 40).rc).toBe(0);
    expect(off.map(1, 2, ram(40), 1, 20)).toEqual({ rc: -EPERM, index: 0, id: 0 });
    consistent(m);
  });

  it('a full registry is -ENOSPC', () => {
    const m = fresh({ max_mappings: 2 });
    expect(m.map(0, 1, ram(1), 1, 40).rc).toBe(0);
    const b = m.map(0, 1, ram(2), 1, 41);
    expect(m.map(0, 1, ram(3), 1, 42)).toEqual({ rc: -ENOSPC, index: -1, id: 0 });
    expect(m.steal(0, 1, 3, 1).rc).toBe(-ENOSPC);
    expect(m.revoke(0, { id: b.id })).toBe(0);
    expect(m.map(0, 1, ram(3), 1, 42).rc).toBe(0);
  });
});

describe('Revoke', () => {
  it('by id: the frontend entry becomes revoked and the reference goes; repeat is 0; others\' ids are -ENOENT', () => {
    const m = fresh();
    m.write(0, 4, 0, 4, 0x42n);
    const r = m.map(0, 1, ram(4), 2, 40);
    expect(m.revoke(1, { id: r.id })).toBe(-ENOENT);
    expect(m.revoke(0, { id: 9999 })).toBe(-ENOENT);
    expect(m.revoke(0, { id: r.id })).toBe(0);
    expect(m.observe().p2m[1]!.filter(([g]) => g >= 40)).toEqual([[40, 'revoked'], [41, 'revoked']]);
    expect(m.page(0, 4)!.count).toBe(1);
    expect(m.read(1, 40, 0, 4)).toEqual({ value: 0xffffffffn, outcome: 'null_io' });
    expect(m.write(1, 40, 0, 4, 1n).outcome).toBe('null_io');
    expect(m.read(0, 4, 0, 4).value).toBe(0x42n);
    expect(m.revoke(0, { id: r.id })).toBe(0);
    expect(m.revoke(1, { id: r.id })).toBe(-ENOENT);
    expect(m.mappings()).toEqual([]);
    consistent(m);
  });

  it('a revoked gfn faults when the frontend has an IOREQ server', () => {
    const m = fresh();
    const r = m.map(0, 1, ram(4), 1, 40);
    expect(m.ioreqServer(0, 1, [], 'fail')).toBe(0);
    expect(m.revoke(0, { id: r.id })).toBe(0);
    expect(m.read(1, 40, 0, 8)).toEqual({ value: 0xffffffffffffffffn, outcome: 'fault' });
    expect(m.write(1, 40, 0, 8, 0n)).toEqual({ outcome: 'fault' });
  });

  it('by range: only pages Map\'d by this backend; always 0 after the common checks', () => {
    const m = fresh();
    const a = m.map(0, 1, ram(4), 2, 40);
    m.grant(3, 0, 1, 0, false);
    expect(m.mapGrant(1, 3, 0, 42, false).status).toBe(GNTST_okay);
    expect(m.revoke(0, { fe: 1, gfn: 41, count: 10 })).toBe(0);
    expect([type(m, 1, 40), type(m, 1, 41), type(m, 1, 42), type(m, 1, 43)]).toEqual(['mmio_direct', 'revoked', 'grant_map_rw', 'hole']);
    expect(m.revoke(0, { fe: 1, gfn: 0, count: 0 })).toBe(-EINVAL);
    expect(m.revoke(0, { fe: 9, gfn: 0, count: 1 })).toBe(-ESRCH);
    expect(m.revoke(3, { fe: 1, gfn: 40, count: 1 })).toBe(-EPERM);
    expect(m.revoke(0, { fe: 1, gfn: 60, count: 10 })).toBe(0);
    expect(m.mappings().find((x) => x.id === a.id)!.live).toBe(1);
    consistent(m);
  });

  it('is transitive: nested mappings of a revoked page go first, recursively', () => {
    const m = new Model({
      ...cfg(),
      domains: [...cfg().domains, { memory_pages: 4, max_pages: 4, privileged: false, backend: 2 }],
    });
    m.write(0, 4, 0, 4, 0x1234n);
    const p = m.map(0, 1, ram(4), 2, 40);
    const n1 = m.map(1, 2, ram(40), 2, 20);
    const n2 = m.map(2, 4, ram(20), 2, 10);
    expect([p.rc, n1.rc, n2.rc]).toEqual([0, 0, 0]);
    expect(m.read(4, 10, 0, 4).value).toBe(0x1234n);
    expect(m.page(0, 4)!.count).toBe(4);
    // Revoking one page of the root revokes that page down the chain only.
    expect(m.revoke(0, { fe: 1, gfn: 40, count: 1 })).toBe(0);
    expect([type(m, 1, 40), type(m, 2, 20), type(m, 4, 10)]).toEqual(['revoked', 'revoked', 'revoked']);
    expect([type(m, 1, 41), type(m, 2, 21), type(m, 4, 11)]).toEqual(['mmio_direct', 'mmio_direct', 'mmio_direct']);
    expect(m.page(0, 4)!.count).toBe(1);
    expect(m.read(4, 10, 0, 4).outcome).toBe('null_io');
    expect(m.revoke(0, { id: p.id })).toBe(0);
    expect(m.mappings()).toEqual([]);
    expect(m.revoke(1, { id: n1.id })).toBe(0);
    expect(m.revoke(2, { id: n2.id })).toBe(0);
    consistent(m);
  });
});

describe('Steal', () => {
  it('moves ownership and quota, keeps contents, and leaves an implicit Map in the frontend', () => {
    const m = fresh();
    m.write(1, 6, 0, 8, 0xfeedfacen);
    const s = m.steal(0, 1, 6, 2, 30);
    expect(s.rc).toBe(0);
    expect(s.id).toBeGreaterThan(0);
    expect(m.observe().domains.map((d) => d.tot_pages)).toEqual([18, 14, 8, 8]);
    expect([type(m, 0, 30), type(m, 0, 31), type(m, 1, 6), type(m, 1, 7)]).toEqual(['ram_rw', 'ram_rw', 'mmio_direct', 'mmio_direct']);
    expect(m.page(0, 30)).toMatchObject({ owner: 0, count: 2, allocated: true, stolen_from: 1 });
    expect(m.read(0, 30, 0, 8).value).toBe(0xfeedfacen);
    expect(m.read(1, 6, 0, 8).value).toBe(0xfeedfacen);
    // Stolen gfns are not frontend RAM any more.
    expect(m.hypercallCopy(1, 6, 'to_guest', 1)).toBe(-EFAULT);
    expect(m.balloonOut(1, 6, 1)).toBe(0);
    expect(m.steal(0, 1, 6, 1, 40).rc).toBe(-EINVAL);
    // The backend may use them as its RAM: copy, Map.
    expect(m.hypercallCopy(0, 30, 'from_guest', 8)).toBe(0);
    expect(m.map(0, 1, ram(30), 1, 50).rc).toBe(0);
    consistent(m);
  });

  it('revoking the implicit Map leaves the page stolen', () => {
    const m = fresh();
    m.write(1, 6, 0, 4, 3n);
    const s = m.steal(0, 1, 6, 1, 30);
    expect(m.revoke(0, { id: s.id })).toBe(0);
    expect(type(m, 1, 6)).toBe('revoked');
    expect(m.page(0, 30)).toMatchObject({ owner: 0, count: 1, stolen_from: 1 });
    expect(m.read(0, 30, 0, 4).value).toBe(3n);
    expect(m.observe().domains[0]!.tot_pages).toBe(17);
    consistent(m);
  });

  it('per-page errors: -EINVAL not plain RAM, -EBUSY granted or referenced, destination -EINVAL/-EEXIST', () => {
    const m = fresh();
    expect(m.steal(0, 1, 15, 2, 30)).toEqual({ rc: -EINVAL, index: 1, id: 0 }); // gfn 16 hole
    expect(m.steal(0, 1, 40, 1, 30).rc).toBe(-EINVAL);
    // A live grant entry for the gfn, even unmapped.
    m.grant(1, 4, 3, 9, true);
    expect(m.steal(0, 1, 8, 2, 30)).toEqual({ rc: -EBUSY, index: 1, id: 0 });
    expect(m.endGrant(1, 4)).toBe(true);
    expect(m.steal(0, 1, 8, 2, 30).rc).toBe(0);
    // Grant-mapped and foreign-mapped pages hold references beyond the allocation.
    m.grant(1, 5, 3, 10, false);
    const g = m.mapGrant(3, 1, 5, 20, false);
    expect(g.status).toBe(GNTST_okay);
    expect(m.steal(0, 1, 10, 1, 32).rc).toBe(-EBUSY);
    expect(m.foreignMap(0, 1, 11, 50)).toBe(0);
    expect(m.steal(0, 1, 11, 1, 32)).toEqual({ rc: -EBUSY, index: 0, id: 0 });
    expect(m.foreignUnmap(0, 50)).toBe(0);
    // Destination.
    expect(m.steal(0, 1, 11, 2, OUT - 1)).toEqual({ rc: -EINVAL, index: 1, id: 0 });
    expect(m.steal(0, 1, 11, 2, 15)).toEqual({ rc: -EEXIST, index: 0, id: 0 });
    expect(m.steal(0, 1, 11, 2, 31)).toEqual({ rc: -EEXIST, index: 0, id: 0 }); // 31 holds a stolen page
    // Map'd pages are not stealable either.
    expect(m.map(0, 1, ram(1), 1, 45).rc).toBe(0);
    expect(m.steal(0, 1, 45, 1, 33).rc).toBe(-EINVAL);
    // Common checks.
    expect(m.steal(0, 1, 11, 0, 33).rc).toBe(-EINVAL);
    expect(m.steal(3, 1, 11, 1, 33).rc).toBe(-EPERM);
    expect(m.steal(0, 0, 11, 1, 33).rc).toBe(-EINVAL);
    expect(m.unmapGrant(3, g.handle)).toBe(GNTST_okay);
    consistent(m);
  });

  it('the quota moves with the pages (no -E2BIG past the backend\'s own room); by default the lowest holes above the backend\'s RAM', () => {
    const m = fresh();
    expect(m.steal(1, 2, 0, 5).rc).toBe(0); // d1: 16 + 5 > 20, but its quota grows by 5
    expect(m.populate(2, 30, 1)).toBe(0); // and d2's shrank by 5: no replacements (no extent done)
    expect(m.ret(1, 2, 16, 5).rc).toBe(0);
    expect(m.populate(1, 17, 1)).toBe(1);
    const s = m.steal(1, 2, 2, 3);
    expect(s.rc).toBe(0);
    expect([18, 19, 20].map((g) => type(m, 1, g))).toEqual(['ram_rw', 'ram_rw', 'ram_rw']);
    expect(type(m, 1, 16)).toBe('hole');
    consistent(m);
  });
});

describe('ids, order and dead parties', () => {
  it('a Steal uses two ids (its implicit Map\'s, returned, and its record\'s)', () => {
    const m = fresh();
    expect(m.map(0, 1, ram(1), 1, 40).id).toBe(1);
    expect(m.steal(0, 1, 6, 1, 30).id).toBe(2);
    expect(m.map(0, 1, ram(2), 1, 41).id).toBe(4);
    expect(m.revoke(0, { id: 3 })).toBe(-ENOENT); // a Steal record is not revocable
  });

  it('Steal checks every source page before any destination page', () => {
    const m = fresh();
    expect(m.steal(0, 1, 15, 2, 0)).toEqual({ rc: -EINVAL, index: 1, id: 0 }); // gfn 16 is a hole; d0's gfn 0 is RAM
    expect(m.steal(0, 1, 14, 2, OUT - 1)).toEqual({ rc: -EINVAL, index: 1, id: 0 });
    expect(m.steal(0, 1, 14, 2, 0)).toEqual({ rc: -EEXIST, index: 0, id: 0 });
  });

  it('Revoke by range reaches a crashed frontend; Map, Steal and Return need it running', () => {
    const m = fresh();
    const r = m.map(0, 1, ram(4), 2, 40);
    expect(m.crash(1)).toBe(0);
    expect(m.map(0, 1, ram(5), 1, 50).rc).toBe(-ESRCH);
    expect(m.steal(0, 1, 6, 1, 30).rc).toBe(-ESRCH);
    expect(m.revoke(0, { fe: 1, gfn: 40, count: 1 })).toBe(0);
    expect(type(m, 1, 40)).toBe('revoked');
    expect(m.revoke(0, { id: r.id })).toBe(0);
    expect(m.destroy(0, 1)).toBe(0);
    expect(m.revoke(0, { fe: 1, gfn: 40, count: 1 })).toBe(0); // gone: teardown left nothing to do
  });

  it('a backend that is not running cannot Map, Steal or Return (choice: -ESRCH)', () => {
    const m = new Model({ ...cfg(), domains: cfg().domains.map((d, i) => (i === 3 ? { ...d, privileged: true } : d)) });
    expect(m.crash(0)).toBe(0);
    expect(m.map(0, 1, bar(BAR0), 1, 40).rc).toBe(-ESRCH);
    expect(m.steal(0, 1, 6, 1).rc).toBe(-ESRCH);
    expect(m.ret(0, 1, 30, 1).rc).toBe(-ESRCH);
    expect(m.revoke(0, { fe: 1, gfn: 0, count: 1 })).toBe(0);
  });
});

describe('Return', () => {
  it('gives the pages back with the contents the backend left; quotas move back', () => {
    const m = fresh();
    m.write(1, 6, 0, 4, 1n);
    expect(m.steal(0, 1, 6, 2, 30).rc).toBe(0);
    m.write(0, 30, 0, 4, 2n);
    m.write(0, 31, 0, 4, 3n);
    expect(m.ret(0, 1, 30, 2)).toEqual(ok);
    expect(m.observe().domains.map((d) => d.tot_pages)).toEqual([16, 16, 8, 8]);
    expect([type(m, 1, 6), type(m, 1, 7), type(m, 0, 30), type(m, 0, 31)]).toEqual(['ram_rw', 'ram_rw', 'hole', 'hole']);
    expect(m.read(1, 6, 0, 4).value).toBe(2n);
    expect(m.read(1, 7, 0, 4).value).toBe(3n);
    expect(m.page(1, 6)).toMatchObject({ owner: 1, count: 1, stolen_from: -1 });
    // No longer the backend's to Map, Revoke or Return.
    expect(m.map(0, 1, ram(30), 1, 50).rc).toBe(-EINVAL);
    expect(m.ret(0, 1, 30, 1).rc).toBe(-EINVAL);
    expect(m.hypercallCopy(1, 6, 'from_guest', 4)).toBe(0);
    consistent(m);
  });

  it('to an explicit gfn, onto a hole or a revoked gfn', () => {
    const m = fresh();
    const s = m.steal(0, 1, 6, 1, 30);
    m.write(0, 30, 0, 4, 5n);
    expect(m.revoke(0, { id: s.id })).toBe(0);
    expect(m.ret(0, 1, 30, 1, 2)).toEqual({ rc: -EEXIST, index: 0 });
    expect(m.ret(0, 1, 30, 1, OUT)).toEqual({ rc: -EINVAL, index: 0 });
    expect(m.ret(0, 1, 30, 1, 50)).toEqual(ok);
    expect(m.read(1, 50, 0, 4)).toEqual({ value: 5n, outcome: 'ok' });
    expect(type(m, 1, 6)).toBe('revoked');
    consistent(m);
  });

  it('errors: -EINVAL not stolen from this frontend, -EEXIST occupied; the frontend cannot refill the quota a Steal took', () => {
    const m = fresh();
    expect(m.steal(0, 1, 6, 2, 30).rc).toBe(0);
    expect(m.steal(1, 2, 0, 1, 40).rc).toBe(0);
    expect(m.ret(0, 1, 29, 2)).toEqual({ rc: -EINVAL, index: 0 });
    expect(m.ret(0, 1, 30, 3)).toEqual({ rc: -EINVAL, index: 2 });
    expect(m.ret(0, 1, 0, 1)).toEqual({ rc: -EINVAL, index: 0 }); // d0's own RAM, never stolen
    expect(m.ret(1, 2, 0, 1)).toEqual({ rc: -EINVAL, index: 0 });
    expect(m.ret(0, 3, 30, 1)).toEqual({ rc: -EINVAL, index: 0 }); // stolen from d1, not d3
    expect(m.ret(3, 1, 30, 1).rc).toBe(-EPERM);
    expect(m.ret(1, 1, 40, 1).rc).toBe(-EINVAL);
    // occupied destination: something else Map'd there after the implicit Map was revoked
    expect(m.revoke(0, { fe: 1, gfn: 7, count: 1 })).toBe(0);
    expect(m.map(0, 1, ram(1), 1, 7).rc).toBe(0);
    expect(m.ret(0, 1, 30, 2)).toEqual({ rc: -EEXIST, index: 1 });
    // d2 gave one page (and one page of quota) away: it cannot populate a replacement
    expect(m.populate(2, 20, 1)).toBe(0); // no extent done
    expect(m.ret(1, 2, 40, 1)).toEqual(ok);
    consistent(m);
  });

  it('checks every page before it changes anything: -EBUSY leaves every Map in place; then revokes them all, transitively', () => {
    const m = fresh();
    expect(m.steal(0, 1, 6, 1, 30).rc).toBe(0);
    const a = m.map(0, 1, ram(30), 1, 50); // be Maps the stolen page back into fe elsewhere
    const n = m.map(1, 2, ram(6), 1, 20); // fe re-Maps its implicit view into d2
    expect([a.rc, n.rc]).toEqual([0, 0]);
    expect(m.page(0, 30)!.count).toBe(4);
    // be grants the page and d3 maps it: a reference Return cannot drop.
    m.grant(0, 1, 3, 30, false);
    const g = m.mapGrant(3, 0, 1, 20, false);
    expect(g.status).toBe(GNTST_okay);
    expect(m.ret(0, 1, 30, 1)).toEqual({ rc: -EBUSY, index: 0 });
    expect([type(m, 1, 6), type(m, 1, 50), type(m, 2, 20)]).toEqual(['mmio_direct', 'mmio_direct', 'mmio_direct']);
    expect(type(m, 0, 30)).toBe('ram_rw');
    expect(m.page(0, 30)!.count).toBe(5);
    expect(m.unmapGrant(3, g.handle)).toBe(GNTST_okay);
    expect(m.ret(0, 1, 30, 1)).toEqual(ok);
    expect(type(m, 1, 6)).toBe('ram_rw');
    expect([type(m, 1, 50), type(m, 2, 20)]).toEqual(['revoked', 'revoked']);
    consistent(m);
  });
});

describe('life cycle', () => {
  it('a frontend that dies: its mappings are torn down and stolen pages stay the backend\'s', () => {
    const m = fresh();
    m.write(1, 6, 0, 4, 0x66n);
    const s = m.steal(0, 1, 6, 1, 30);
    const a = m.map(0, 1, ram(4), 2, 40);
    const b = m.map(0, 1, bar(BAR0), 1, 42);
    const n = m.map(1, 2, ram(40), 1, 20);
    expect([s.rc, a.rc, b.rc, n.rc]).toEqual([0, 0, 0, 0]);
    expect(m.destroy(0, 1)).toBe(0);
    expect(m.observe().domains[1]).toEqual({ state: 'free', tot_pages: 0 });
    expect(m.mappings()).toEqual([]);
    // d2's nested mapping (made by d1) was revoked.
    expect(type(m, 2, 20)).toBe('revoked');
    expect(m.page(0, 4)!.count).toBe(1);
    // The Steal record went with d1: the page is plain RAM of d0 now.
    expect(m.page(0, 30)).toMatchObject({ owner: 0, count: 1, stolen_from: -1 });
    expect(m.read(0, 30, 0, 4).value).toBe(0x66n);
    expect(m.observe().domains[0]!.tot_pages).toBe(17);
    expect(m.ret(0, 1, 30, 1).rc).toBe(-ESRCH);
    expect(m.revoke(0, { id: a.id })).toBe(0);
    expect(m.balloonOut(0, 30, 1)).toBe(1);
    expect(m.observe().free_frames).toBe(NR - 16 - 8 - 8);
    consistent(m);
  });

  it('a backend that dies: its Maps are revoked, its servers go, its pages (stolen ones too) are freed', () => {
    // d3 is the toolstack here: d0 cannot destroy itself.
    const m = new Model({ ...cfg(), domains: cfg().domains.map((d, i) => (i === 3 ? { ...d, privileged: true } : d)) });
    m.write(0, 4, 0, 4, 0x44n);
    expect(m.ioreqServer(0, 1, [{ start: 0, count: 64 }], 'remap')).toBe(0);
    expect(m.map(0, 1, ram(4), 1, 40).rc).toBe(0);
    expect(m.steal(0, 1, 6, 1, 30).rc).toBe(0);
    expect(m.read(1, 40, 0, 4).value).toBe(0x44n);
    expect(m.destroy(3, 0)).toBe(0);
    expect(m.observe().domains[0]).toEqual({ state: 'free', tot_pages: 0 });
    expect([type(m, 1, 40), type(m, 1, 6)]).toEqual(['revoked', 'revoked']);
    // No server left: the null handler answers.
    expect(m.read(1, 40, 0, 4)).toEqual({ value: 0xffffffffn, outcome: 'null_io' });
    expect(m.observe().domains[1]!.tot_pages).toBe(15);
    expect(m.observe().free_frames).toBe(NR - 15 - 8 - 8);
    consistent(m);
  });

  it('a backend whose page a peer grant-maps stays a zombie until the unmap', () => {
    const m = new Model({ ...cfg(), domains: cfg().domains.map((d, i) => (i === 3 ? { ...d, privileged: true } : d)) });
    m.grant(0, 0, 2, 3, true);
    const g = m.mapGrant(2, 0, 0, 20, true);
    expect(g.status).toBe(GNTST_okay);
    expect(m.destroy(3, 0)).toBe(0);
    expect(m.observe().domains[0]).toEqual({ state: 'zombie', tot_pages: 1 });
    expect(m.unmapGrant(2, g.handle)).toBe(GNTST_okay);
    expect(m.observe().domains[0]!.state).toBe('free');
  });

  it('destroy and crash argument checks', () => {
    const m = fresh();
    expect(m.destroy(1, 2)).toBe(-EPERM);
    expect(m.destroy(0, 0)).toBe(-EINVAL);
    expect(m.destroy(0, 9)).toBe(-ESRCH);
    expect(m.crash(2)).toBe(0);
    expect(m.crash(2)).toBe(-ESRCH);
    expect(m.observe().domains[2]!.state).toBe('crashed');
    expect(m.foreignMap(0, 2, 0, 40)).toBe(0); // a crashed domain can still be mapped (core dumps)
    expect(m.foreignUnmap(0, 40)).toBe(0);
    expect(m.destroy(0, 2)).toBe(0);
    expect(m.destroy(0, 2)).toBe(-ESRCH);
  });
});

describe('domctl and IOREQ servers', () => {
  it('iomem_permission: Xen\'s order of checks; the caller grants only what it holds', () => {
    const m = fresh();
    expect(m.iomemPermit(1, 9, BAR0, 1, true)).toBe(-EPERM); // no such domain, unprivileged caller
    expect(m.iomemPermit(0, 9, BAR0, 1, true)).toBe(-ESRCH);
    expect(m.iomemPermit(1, 1, BAR0, 0, true)).toBe(-EINVAL); // the range before privilege
    expect(m.iomemPermit(0, 1, -1, 2, true)).toBe(-EINVAL);
    expect(m.iomemPermit(0, 1, 2 ** 31 - 1, 2, true)).toBe(-EINVAL);
    expect(m.iomemPermit(1, 1, BAR0, 1, true)).toBe(-EPERM);
    expect(m.iomemPermit(0, 1, 0, 1, true)).toBe(-EPERM); // a RAM frame: dom0 does not hold it
    expect(m.iomemPermit(0, 1, BAR1, 1, true)).toBe(-EPERM); // d3's BAR: nor that
    expect(m.iomemPermit(0, 1, BAR0 + 3, 2, true)).toBe(-EPERM); // straddles BAR0 and BAR1
    expect(m.iomemPermit(0, 3, BAR1, 2, false)).toBe(-EPERM); // nor deny it
    expect(m.iomemPermit(0, 1, BAR0, 1, true)).toBe(0);
    // d1 may now Map BAR0 page 0 into d2, which it serves.
    expect(m.map(1, 2, bar(BAR0), 1, 20).rc).toBe(0);
    expect(m.map(1, 2, bar(BAR0), 2, 21).rc).toBe(-EPERM);
  });

  it('iomem_caps is a rangeset: merges, splits, permits across a seam, denies what is absent', () => {
    const m = fresh();
    // Permitted twice, denied once: gone.
    expect(m.iomemPermit(0, 1, BAR0, 2, true)).toBe(0);
    expect(m.iomemPermit(0, 1, BAR0, 2, true)).toBe(0);
    expect(m.iomemPermit(0, 1, BAR0, 2, false)).toBe(0);
    expect(m.map(1, 2, bar(BAR0), 1, 20).rc).toBe(-EPERM);
    // Denying what is not there is 0.
    expect(m.iomemPermit(0, 1, BAR0, 4, false)).toBe(0);
    // Two adjacent permits cover a range across their seam.
    expect(m.iomemPermit(0, 1, BAR0, 2, true)).toBe(0);
    expect(m.iomemPermit(0, 1, BAR0 + 2, 2, true)).toBe(0);
    expect(m.map(1, 2, bar(BAR0 + 1), 2, 20).rc).toBe(0);
    // A deny inside a range splits it.
    expect(m.iomemPermit(0, 1, BAR0 + 1, 1, false)).toBe(0);
    expect(m.map(1, 2, bar(BAR0 + 1), 1, 22).rc).toBe(-EPERM);
    expect(m.map(1, 2, bar(BAR0), 1, 22).rc).toBe(0);
    expect(m.map(1, 2, bar(BAR0 + 2), 2, 23).rc).toBe(0);
  });

  it('iomem_caps holds at most 8 disjoint ranges: -ENOMEM and nothing changed past that; a merge makes room', () => {
    const m = fresh({ bars: [{ owner: 0, nr_pages: 32, base_mfn: BAR0 }] });
    for (let i = 0; i < 8; i++) expect(m.iomemPermit(0, 1, BAR0 + 2 * i, 1, true)).toBe(0);
    expect(m.iomemPermit(0, 1, BAR0 + 16, 1, true)).toBe(-ENOMEM);
    expect(m.map(1, 2, bar(BAR0 + 16), 1, 20).rc).toBe(-EPERM);
    expect(m.iomemPermit(0, 1, BAR0 + 13, 1, false)).toBe(0); // no such frame held: no split, no change
    expect(m.iomemPermit(0, 1, BAR0 + 1, 1, true)).toBe(0); // joins pages 0 and 2: 7 ranges
    expect(m.iomemPermit(0, 1, BAR0 + 16, 1, true)).toBe(0);
    // A split that needs a ninth range is -ENOMEM, and the range stays whole.
    expect(m.iomemPermit(0, 1, BAR0 + 1, 1, false)).toBe(-ENOMEM);
    expect(m.map(1, 2, bar(BAR0), 3, 20).rc).toBe(0);
  });

  it('ioreq_server: -EPERM without authority, at most 8 per target', () => {
    const m = fresh();
    expect(m.ioreqServer(3, 9, [], 'none')).toBe(-ESRCH);
    expect(m.ioreqServer(1, 1, [], 'none')).toBe(-EINVAL);
    expect(m.ioreqServer(3, 1, [], 'none')).toBe(-EPERM);
    expect(m.ioreqServer(1, 3, [], 'none')).toBe(-EPERM);
    expect(m.ioreqServer(0, 1, [{ start: 0, count: 0 }], 'none')).toBe(-EINVAL);
    expect(m.ioreqServer(0, 1, Array.from({ length: 9 }, (_, i) => ({ start: i, count: 1 })), 'none')).toBe(-EINVAL);
    expect(m.ioreqServer(0, 1, [], 'bogus' as 'none')).toBe(-EINVAL);
    // The result is the server's slot; slots free up when the owner dies.
    expect(m.ioreqServer(1, 2, [], 'none')).toBe(0);
    for (let i = 1; i < 8; i++) expect(m.ioreqServer(0, 2, [], 'none')).toBe(i);
    expect(m.ioreqServer(0, 2, [], 'none')).toBe(-ENOSPC);
    expect(m.destroy(0, 1)).toBe(0);
    expect(m.ioreqServer(0, 2, [], 'none')).toBe(0);
    expect(m.ioreqServer(0, 2, [], 'none')).toBe(-ENOSPC);
  });

  it('a hole (or a gfn outside the p2m) that a server claims becomes an ioreq; reads are all ones', () => {
    const m = fresh();
    expect(m.ioreqServer(0, 1, [{ start: 60, count: 10 }], 'remap')).toBe(0);
    expect(m.read(1, 60, 0, 2)).toEqual({ value: 0xffffn, outcome: 'ioreq' });
    expect(m.read(1, 65, 0, 1)).toEqual({ value: 0xffn, outcome: 'ioreq' });
    expect(m.write(1, 61, 0, 4, 0n)).toEqual({ outcome: 'ioreq' });
    expect(m.read(1, 59, 0, 1)).toEqual({ value: 0xffn, outcome: 'null_io' });
  });
});

describe('clone', () => {
  it('is independent of the original, bytes included', () => {
    const m = fresh();
    m.write(1, 1, 0, 4, 1n);
    const c = m.clone();
    c.write(1, 1, 0, 4, 2n);
    m.write(1, 1, 4, 4, 3n);
    expect(m.read(1, 1, 0, 4).value).toBe(1n);
    expect(c.read(1, 1, 0, 4).value).toBe(2n);
    expect(c.read(1, 1, 4, 4).value).toBe(0n);
    const r = c.map(0, 1, ram(4), 1, 40);
    expect(r.rc).toBe(0);
    expect(type(m, 1, 40)).toBe('hole');
    expect(m.revoke(0, { id: r.id })).toBe(-ENOENT);
    expect(c.clone().observe()).toEqual(c.observe());
    consistent(m);
    consistent(c);
  });
});

describe('interleavings and explainable', () => {
  it('enumerates every order-preserving merge', () => {
    const all = [...interleavings([['a1', 'a2'], ['b1', 'b2'], ['c1']])];
    expect(all.length).toBe(30); // 5! / (2! 2! 1!)
    expect(new Set(all.map((x) => x.join())).size).toBe(30);
    for (const x of all) {
      expect(x.indexOf('a1')).toBeLessThan(x.indexOf('a2'));
      expect(x.indexOf('b1')).toBeLessThan(x.indexOf('b2'));
    }
    expect([...interleavings([[], [1]])]).toEqual([[1]]);
    expect([...interleavings<number>([])]).toEqual([[]]);
  });

  type Step =
    | { op: 'read'; d: number; gfn: number }
    | { op: 'revoke'; id: number }
    | { op: 'steal'; gfn: number; into: number }
    | { op: 'grant'; ref: number; gfn: number }
    | { op: 'map_grant'; ref: number; at: number };
  const apply = (m: Model, s: Step): Outcome => {
    switch (s.op) {
      case 'read':
        return m.read(s.d, s.gfn, 0, 4);
      case 'revoke':
        return { rc: m.revoke(0, { id: s.id }) };
      case 'steal':
        return m.steal(0, 1, s.gfn, 1, s.into);
      case 'grant':
        m.grant(1, s.ref, 3, s.gfn, false);
        return { none: true };
      case 'map_grant':
        return m.mapGrant(3, 1, s.ref, s.at, false);
    }
  };

  it('a read racing Revoke sees the frame or the null handler, never both out of order', () => {
    const m = fresh();
    m.write(0, 4, 0, 4, 7n);
    const id = m.map(0, 1, ram(4), 1, 40).id;
    const threads: Step[][] = [[{ op: 'read', d: 1, gfn: 40 }, { op: 'read', d: 1, gfn: 40 }], [{ op: 'revoke', id }]];
    const okv = { value: 7n, outcome: 'ok' };
    const nul = { value: 0xffffffffn, outcome: 'null_io' };
    expect(explainable(m, threads, [[okv, okv], [{ rc: 0 }]], apply, sameOutcome)).toBe(true);
    expect(explainable(m, threads, [[okv, nul], [{ rc: 0 }]], apply, sameOutcome)).toBe(true);
    expect(explainable(m, threads, [[nul, nul], [{ rc: 0 }]], apply, sameOutcome)).toBe(true);
    // Use after revoke: the frame after the null handler.
    expect(explainable(m, threads, [[nul, okv], [{ rc: 0 }]], apply, sameOutcome)).toBe(false);
    expect(explainable(m, threads, [[okv, okv], [{ rc: -ENOENT }]], apply, sameOutcome)).toBe(false);
    // The model passed in is untouched.
    expect(type(m, 1, 40)).toBe('mmio_direct');
  });

  it('grant-then-steal: either the steal is -EBUSY or the grant map sees a non-RAM page', () => {
    const m = fresh();
    const threads: Step[][] = [[{ op: 'grant', ref: 1, gfn: 6 }, { op: 'map_grant', ref: 1, at: 20 }], [{ op: 'steal', gfn: 6, into: 30 }]];
    const g = { none: true } as const;
    const mapped = { status: GNTST_okay, handle: 0 };
    const badPage = { status: GNTST_bad_page, handle: -1 };
    const stolen = { rc: 0, index: -1, id: 1 };
    const busy = { rc: -EBUSY, index: 0, id: 0 };
    expect(explain(m, threads, [[g, mapped], [busy]], apply, sameOutcome)).toBeDefined();
    expect(explain(m, threads, [[g, badPage], [stolen]], apply, sameOutcome)).toEqual([{ thread: 1, step: 0 }, { thread: 0, step: 0 }, { thread: 0, step: 1 }]);
    // Both succeeding is the race the design forbids.
    expect(explainable(m, threads, [[g, mapped], [stolen]], apply, sameOutcome)).toBe(false);
    expect(explainable(m, threads, [[g], [stolen]], apply, sameOutcome)).toBe(false);
  });

  it('unchanged: a transient failure the other thread may cause is explainable, with the model as it was', () => {
    const m = fresh();
    // A steal that failed -EBUSY (another thread's foreign map held the page for a moment, then failed) next to a read.
    const threads: Step[][] = [[{ op: 'steal', gfn: 6, into: 30 }], [{ op: 'read', d: 1, gfn: 6 }]];
    const busy = { rc: -EBUSY, index: 0, id: 0 };
    const read = apply(m.clone(), { op: 'read', d: 1, gfn: 6 });
    expect(explainable(m, threads, [[busy], [read]], apply, sameOutcome)).toBe(false);
    const unchanged = (s: Step): Outcome[] => (s.op === 'steal' ? [busy] : []);
    expect(explain(m, threads, [[busy], [read]], apply, sameOutcome, { unchanged })).toBeDefined();
    // And the failed steal changed nothing: the same page stolen again right after succeeds as a first steal does.
    const first = apply(m.clone(), { op: 'steal', gfn: 6, into: 31 });
    expect(first).toEqual({ rc: 0, index: -1, id: 1 });
    const again: Step[][] = [[{ op: 'steal', gfn: 6, into: 30 }, { op: 'steal', gfn: 6, into: 31 }], []];
    expect(explain(m, again, [[busy, first], []], apply, sameOutcome, { unchanged })).toBeDefined();
    // Had it changed the model (the page stolen), the second steal could not succeed.
    const stolenTwice = (() => {
      const c = m.clone();
      apply(c, { op: 'steal', gfn: 6, into: 30 });
      return apply(c, { op: 'steal', gfn: 6, into: 31 });
    })();
    expect(sameOutcome(stolenTwice, first)).toBe(false);
  });

  it('sameOutcome compares bigints and shapes', () => {
    expect(sameOutcome({ value: 1n, outcome: 'ok' }, { value: 1n, outcome: 'ok' })).toBe(true);
    expect(sameOutcome({ value: 1n, outcome: 'ok' }, { value: 2n, outcome: 'ok' })).toBe(false);
    expect(sameOutcome({ rc: 0 }, { rc: 0, index: -1 })).toBe(false);
  });
});

describe('random sequences', () => {
  type Op = (m: Model) => unknown;
  const d = fc.integer({ min: 0, max: 4 });
  const g = fc.integer({ min: 0, max: 66 });
  const n = fc.integer({ min: 0, max: 4 });
  // Mostly pairs with authority, so the primitives get past their common checks.
  const pair = fc.constantFrom([0, 1], [1, 2], [0, 2], [0, 3], [3, 1], [1, 1]);
  const low = fc.integer({ min: 0, max: 20 });
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.tuple(d, g, n).map(([a, b, c]): Op => (m) => m.populate(a, b, c)),
    fc.tuple(d, g, n).map(([a, b, c]): Op => (m) => m.balloonOut(a, b, c)),
    fc.tuple(d, n, d, g, fc.boolean()).map(([a, r, to, b, ro]): Op => (m) => m.grant(a, r, to, b, ro)),
    fc.tuple(d, n).map(([a, r]): Op => (m) => m.endGrant(a, r)),
    fc.tuple(d, d, n, g, fc.boolean()).map(([a, f, r, at, ro]): Op => (m) => m.mapGrant(a, f, r, at, ro)),
    fc.tuple(d, n).map(([a, h]): Op => (m) => m.unmapGrant(a, h)),
    fc.tuple(d, d, g, g).map(([a, f, b, at]): Op => (m) => m.foreignMap(a, f, b, at)),
    fc.tuple(d, g).map(([a, at]): Op => (m) => m.foreignUnmap(a, at)),
    fc.tuple(pair, g, n, g, fc.boolean()).map(([[be, fe], b, c, at, dm]): Op => (m) => m.map(be!, fe!, ram(b), c, at, dm ? 'mmio_dm' : 'mmio_direct')),
    fc.tuple(pair, n, n, g).map(([[be, fe], o, c, at]): Op => (m) => m.map(be!, fe!, bar(BAR0 + o), c, at)),
    fc.tuple(d, fc.integer({ min: 0, max: 12 })).map(([be, id]): Op => (m) => m.revoke(be, { id })),
    fc.tuple(pair, g, n).map(([[be, fe], b, c]): Op => (m) => m.revoke(be!, { fe: fe!, gfn: b, count: c })),
    fc.tuple(pair, low, n, fc.option(g, { nil: undefined })).map(([[be, fe], b, c, i]): Op => (m) => m.steal(be!, fe!, b, c, i)),
    fc.tuple(pair, g, n, fc.option(low, { nil: undefined })).map(([[be, fe], b, c, at]): Op => (m) => m.ret(be!, fe!, b, c, at)),
    fc.tuple(pair, fc.integer({ min: 16, max: 24 }), n).map(([[be, fe], b, c]): Op => (m) => m.ret(be!, fe!, b, c)),
    fc.tuple(d, g, fc.bigInt({ min: 0n, max: 1n << 32n })).map(([a, b, v]): Op => (m) => m.write(a, b, 0, 4, v)),
    fc.tuple(d, g, fc.boolean(), n).map(([a, b, to, c]): Op => (m) => m.hypercallCopy(a, b, to ? 'to_guest' : 'from_guest', c * 100)),
    fc.tuple(d, d).map(([by, x]): Op => (m) => m.destroy(by, x)),
    d.map((x): Op => (m) => m.crash(x)),
    fc.tuple(d, d).map(([by, x]): Op => (m) => m.ioreqServer(by, x, [{ start: 40, count: 8 }], 'fail')),
  );

  it('keep references, ownership and frame counts consistent; clones replay identically', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const m = fresh({ max_mappings: 6 });
        const half = Math.floor(ops.length / 2);
        ops.slice(0, half).forEach((o) => o(m));
        const c = m.clone();
        for (const o of ops.slice(half)) {
          const a = o(m);
          const b = o(c);
          expect(sameOutcome(a, b)).toBe(true);
          expect(m.checkConsistency()).toEqual([]);
        }
        const obs = m.observe();
        expect(c.observe()).toEqual(obs);
        expect(obs.domains.reduce((s, x) => s + x.tot_pages, 0) + obs.free_frames).toBe(NR);
        obs.domains.forEach((x) => {
          if (x.state === 'free') expect(x.tot_pages).toBe(0);
        });
        // Invariant 4: a Map'd, revoked or stolen gfn is never frontend RAM.
        for (const r of m.mappings()) expect(m.page(r.fe, r.at)?.type).not.toBe('ram_rw');
      }),
      { numRuns: 300 },
    );
  });
});

describe('superpages', () => {
  it('boot makes 2 MiB superpages of aligned RAM; a change inside one splits it; a 512-page aligned BAR Map is one, split by a Revoke of one page', () => {
    const m = new Model({ page_size_bytes: PS, nr_frames: 2048, domains: [{ memory_pages: 1100, max_pages: 1200, privileged: true }, { memory_pages: 16, max_pages: 16, privileged: false, backend: 0 }], bars: [{ owner: 0, nr_pages: 512, base_mfn: 2048 }] });
    expect(m.superpages(0)).toEqual([[0, 2], [512, 2]]);
    expect(m.superpages(1)).toEqual([]);
    expect(m.balloonOut(0, 600, 1)).toBe(1);
    expect(m.superpages(0)).toEqual([[0, 2]]);
    expect(m.splits).toBe(1);
    expect(m.balloonOut(0, 601, 1)).toBe(1); // split already
    expect(m.splits).toBe(1);
    const r = m.map(0, 1, { kind: 'bar', mfn: 2048 }, 512, 0x800000);
    expect(r.rc).toBe(0);
    expect(m.superpages(1)).toEqual([[0x800000, 2]]);
    expect(m.revoke(0, { fe: 1, gfn: 0x800003, count: 1 })).toBe(0);
    expect(m.superpages(1)).toEqual([]);
    expect(m.splits).toBe(2);
    expect(m.revoke(0, { id: r.id })).toBe(0);
    // Revoked gfns keep their 4 KiB table: a new Map there is 4 KiB pages; an untouched aligned range takes a superpage.
    expect(m.map(0, 1, { kind: 'bar', mfn: 2048 }, 512, 0x800000).rc).toBe(0);
    expect(m.superpages(1)).toEqual([]);
    expect(m.map(0, 1, { kind: 'bar', mfn: 2048 }, 512, 0xa00000).rc).toBe(0);
    expect(m.superpages(1)).toEqual([[0xa00000, 2]]);
    // Misaligned frame or gfn, or a RAM source: 4 KiB pages.
    expect(m.map(0, 1, { kind: 'bar', mfn: 2049 }, 511, 0xc00000).rc).toBe(0);
    expect(m.map(0, 1, { kind: 'ram', gfn: 0 }, 512, 0xe00000).rc).toBe(0);
    expect(m.superpages(1)).toEqual([[0xa00000, 2]]);
  });

  it('1 GiB of aligned RAM is one level-3 superpage; a change inside it splits it into 2 MiB ones and the one holding the gfn: two splits', () => {
    const n = 262144 + 512;
    const m = new Model({ page_size_bytes: PS, nr_frames: n, domains: [{ memory_pages: n, max_pages: n, privileged: true }], bars: [] });
    expect(m.superpages(0)).toEqual([[0, 3], [262144, 2]]);
    expect(m.balloonOut(0, 1000, 1)).toBe(1);
    expect(m.splits).toBe(2);
    const sp = m.superpages(0);
    expect(sp.filter(([, l]) => l === 3)).toEqual([]);
    expect(sp).toHaveLength(511 + 1);
    expect(sp.some(([g]) => g === 512)).toBe(false);
  });
});

