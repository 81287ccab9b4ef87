/**
 * domain.ts at its edges, on one thread: createdomain's refusals with
 * their codes and what a created domain starts with in a reused slot
 * (xen/common/domain.c domain_create, grant_table_init, hap_set_allocation;
 * the domctl's domid choice), the toolstack's populate (meminit_hvm,
 * tools/libs/guest/xg_dom_x86.c: 1 GiB, 2 MiB, then 4 KiB extents, falling
 * back a size), and destroy (domain_kill: -ESRCH unless running or
 * crashed, its vCPUs waited for, domain_relinquish_resources, the zombie
 * freed with its last reference).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { expectAllDestroyed, expectClean } from '../../tests/expect-clean.js';
import { domainCreate, domainDestroy, domainState, isAlive, populateOne, populateRange, type DomainCreateSpec } from './domain.js';
import { domainCrash } from './domain-crash.js';
import { VcpuContext } from './guest-cpu.js';
import { ioreqServerCreate } from './ioreq.js';
import { iomemAdd, iomemPermitted } from './iomem.js';
import { foreignMap } from './memory.js';
import { guestGrantAccess, mapGrantRef } from './grant-table.js';
import { allocDomFrame } from './mm.js';
import { p2mForEachLeaf, p2mGet, p2mInsert } from './p2m.js';
import { pcpuInit } from './schedule.js';
import { realSched, setSched } from './platform.js';
import { VS } from './vcpu.js';
import { INITIAL_NR_GRANT_FRAMES, MAX_VCPUS, MAX_VCPUS_PER_DOMAIN, P2M_DEFAULT_PADDR_BITS, P2M_MAX_PADDR_BITS, P2M_MIN_PADDR_BITS, XEN_MAX_GRANT_FRAMES, XEN_MAX_MAPTRACK_FRAMES } from '../layout/constants.js';
import { CTL } from '../layout/control.js';
import { DOM, DS, PASSTHROUGH } from '../layout/domains.js';
import { IOS } from '../layout/ioreq-slots.js';
import { entryMfn, entryType, P2M_HOLE, p2mEntry, p2mPoolPagesFor } from '../layout/p2m.js';
import { STAT, VC } from '../layout/vcpus.js';
import { EEXIST, EINVAL, ENOMEM, ENOSPC, ESRCH } from '../public/errno.js';
import { domid, gfn, grantRef, P2M } from '../public/types.js';
import { GNTST_okay } from '../public/errno.js';
import { MT, MT_INUSE } from '../layout/grants.js';
import { XS_KEY, xsKey } from '../public/xenstore.js';
import type { Machine } from './machine.js';

afterEach(() => setSched(realSched));

const spec = (o: Partial<DomainCreateSpec> = {}): DomainCreateSpec => ({ domid: -1, max_pages: 16, nr_vcpus: 1, p2m_pages: 4, privileged: false, ...o });

/** One privileged domain (d0, 16 pages) on a machine of `nr_frames`. */
const lone = (nr_frames = 1024): Machine => testMachine({ nr_frames, domains: [{ memory_pages: 16, privileged: true }] });

/** d's leaves as `gfn:level:type`, in gfn order. */
function leaves(m: Machine, d: number): string[] {
  const out: string[] = [];
  p2mForEachLeaf(m, d, (l) => out.push(`${l.gfn}:${l.level}:${entryType(l.e)}`));
  return out;
}

describe('createdomain', () => {
  it('refuses bad vCPU counts, address widths, max_pages, p2m pool shares and grant limits with -EINVAL; takes nothing', () => {
    const m = lone();
    const bad: Array<Partial<DomainCreateSpec>> = [
      { nr_vcpus: 0 },
      { nr_vcpus: MAX_VCPUS_PER_DOMAIN + 1 },
      { paddr_bits: 36.5 },
      { paddr_bits: P2M_MIN_PADDR_BITS - 1 },
      { paddr_bits: P2M_MAX_PADDR_BITS + 1 },
      { max_pages: -1 },
      { p2m_pages: 1.5 },
      { p2m_pages: 0 },
      { max_grant_frames: 1.5 },
      { max_grant_frames: 0 },
      { max_grant_frames: XEN_MAX_GRANT_FRAMES + 1 },
      { max_maptrack_frames: 0.5 },
      { max_maptrack_frames: -1 },
      { max_maptrack_frames: XEN_MAX_MAPTRACK_FRAMES + 1 },
      { domid: m.nd },
    ];
    for (const o of bad) expect(domainCreate(m, spec(o)), JSON.stringify(o)).toBe(-EINVAL);
    // Taken: -EEXIST.
    expect(domainCreate(m, spec({ domid: 0 }))).toBe(-EEXIST);
    expect([1, 2].map((d) => domainState(m, d))).toEqual([DS.FREE, DS.FREE]);
    expect(m.vcpus.at(1, VC.IN_USE)).toBe(0);
    // The limits themselves are fine (and the domctl lock was given back after every refusal).
    const good: Array<Partial<DomainCreateSpec>> = [
      { nr_vcpus: MAX_VCPUS_PER_DOMAIN, paddr_bits: P2M_MIN_PADDR_BITS, max_pages: 0, p2m_pages: 1, max_grant_frames: 1, max_maptrack_frames: 0 },
      { paddr_bits: P2M_MAX_PADDR_BITS, max_grant_frames: XEN_MAX_GRANT_FRAMES, max_maptrack_frames: XEN_MAX_MAPTRACK_FRAMES },
      { domid: m.nd - 1 },
    ];
    expect(good.map((o) => domainCreate(m, spec(o)))).toEqual([1, 2, m.nd - 1]);
    expect([1, 2].map((d) => m.dom.at(d, DOM.P2M_PADDR_BITS))).toEqual([P2M_MIN_PADDR_BITS, P2M_MAX_PADDR_BITS]);
    expect([m.dom.at(2, DOM.MAX_GRANT_FRAMES), m.dom.at(2, DOM.MAX_MAPTRACK_FRAMES), m.dom.at(1, DOM.MAX_GRANT_FRAMES), m.dom.at(1, DOM.MAX_MAPTRACK_FRAMES)]).toEqual([XEN_MAX_GRANT_FRAMES, XEN_MAX_MAPTRACK_FRAMES, 1, 0]);
    expectAllDestroyed(m);
  });

  it('domid −1 takes the lowest free slot, -ENOSPC when none is; vCPU slots are a first-fit run, -ENOSPC when none fits; a p2m share the pool cannot promise is -ENOMEM — none of them takes anything', () => {
    const m = lone();
    expect(domainCreate(m, spec({ domid: 3 }))).toBe(3);
    expect([1, 2, 4].map(() => domainCreate(m, spec({ p2m_pages: 1 })))).toEqual([1, 2, 4]);
    for (let d = 5; d < m.nd; d++) expect(domainCreate(m, spec({ p2m_pages: 1, max_pages: 0 }))).toBe(d);
    expect(domainCreate(m, spec({ p2m_pages: 1 }))).toBe(-ENOSPC);
    const slot2 = m.dom.at(2, DOM.VCPU_BASE);
    expect(domainDestroy(m, 2)).toBe(0);
    expect(domainCreate(m, spec({ p2m_pages: 1 }))).toBe(2);
    // The vCPU table: d0 and the 127 others hold slots 0…127; d2's is the one it took back.
    expect(m.dom.at(2, DOM.VCPU_BASE)).toBe(slot2);
    expectAllDestroyed(m);

    const v = lone();
    // d0 holds slot 0; 31 domains of 8 vCPUs would need 1…248: they get 1, 9, …, 241, and the last 7 slots are left.
    for (let k = 0; k < 31; k++) {
      const d = domainCreate(v, spec({ nr_vcpus: 8, p2m_pages: 1, max_pages: 0 }));
      expect(d).toBe(k + 1);
      expect(v.dom.at(d, DOM.VCPU_BASE)).toBe(1 + 8 * k);
    }
    expect(domainCreate(v, spec({ nr_vcpus: 8, p2m_pages: 1 }))).toBe(-ENOSPC);
    expect(domainState(v, 32)).toBe(DS.FREE);
    // Exactly the 7 left at the end of the table.
    const last = domainCreate(v, spec({ nr_vcpus: 7, p2m_pages: 1 }));
    expect(v.dom.at(last, DOM.VCPU_BASE)).toBe(MAX_VCPUS - 7);
    // A hole of 8 in the middle is found again.
    expect(domainDestroy(v, 5)).toBe(0);
    expect(domainCreate(v, spec({ nr_vcpus: 2, p2m_pages: 1 }))).toBe(5);
    expect(v.dom.at(5, DOM.VCPU_BASE)).toBe(1 + 8 * 4);
    // Slots 35…40 are free now, 6 of them: 7 do not fit.
    expect(domainCreate(v, spec({ nr_vcpus: 7, p2m_pages: 1 }))).toBe(-ENOSPC);
    expect(v.dom.at(33, DOM.STATE)).toBe(DS.FREE);
    expectAllDestroyed(v);

    const p = lone();
    expect(domainCreate(p, spec({ p2m_pages: 1_000_000 }))).toBe(-ENOMEM);
    expect(domainState(p, 1)).toBe(DS.FREE);
    expect(p.vcpus.at(1, VC.IN_USE)).toBe(0);
    expect(domainCreate(p, spec())).toBe(1);
    expectAllDestroyed(p);
  });

  it('a reused slot starts afresh: counts, flags, backend, grant limits, passthrough, a new generation, its xenstore keys and vCPU slots cleared; iomem_caps emptied', () => {
    const m = lone();
    const d = domainCreate(m, spec({ nr_vcpus: 2, max_pages: 32, backend: 0, privileged: true, passthrough: 'share_pt', max_grant_frames: 3, max_maptrack_frames: 5 }));
    expect(d).toBe(1);
    expect(populateRange(m, d, 0, 4)).toBe(0);
    expect(iomemAdd(m, d, 900, 2)).toBe(0);
    const gen = m.dom.at(d, DOM.GENERATION);
    const base = m.dom.at(d, DOM.VCPU_BASE);
    const store = new Int32Array(m.sabs.store);
    expect(domainDestroy(m, d)).toBe(0);
    expect(domainState(m, d)).toBe(DS.FREE);
    // What an earlier life of the slot leaves behind.
    for (const k of Object.values(XS_KEY)) Atomics.store(store, xsKey(d, k), 7);
    for (const f of [DOM.RATCHET, DOM.REFCNT, DOM.TOT_PAGES, DOM.NR_GRANT_FRAMES]) m.dom.set(d, f, 9);
    m.dom.add(d, DOM.FLUSH_EPOCH, 5);
    for (const s of [base, base + 1]) {
      for (const f of [VC.DOMID, VC.VCPU, VC.HEARTBEAT, VC.HANG_MS, VC.PCPU, VC.ACK_EPOCH]) m.vcpus.set(s, f, 99);
      m.vcpus.set(s, VC.STATE, VS.GUEST);
      Atomics.store(m.ios.slots, m.ios.idx(s) + IOS.APPLIED, 99);
      m.vcpus.stats.fill(3, s * STAT.WORDS, (s + 1) * STAT.WORDS);
    }
    // Around the two slots: untouched by the creation.
    m.vcpus.stats.fill(4, (base + 2) * STAT.WORDS, (base + 3) * STAT.WORDS);
    m.vcpus.stats.fill(4, (base - 1) * STAT.WORDS, base * STAT.WORDS);
    Atomics.store(m.control.w, CTL.GRANT_FRAMES_PEAK, 0);
    expect(domainCreate(m, spec({ domid: d, nr_vcpus: 2, max_pages: 20 }))).toBe(d);
    const fields = [DOM.STATE, DOM.TOT_PAGES, DOM.MAX_PAGES, DOM.REFCNT, DOM.NR_VCPUS, DOM.VCPU_BASE, DOM.PRIVILEGED, DOM.RATCHET, DOM.BACKEND, DOM.MAX_GRANT_FRAMES, DOM.MAX_MAPTRACK_FRAMES, DOM.NR_GRANT_FRAMES, DOM.PASSTHROUGH, DOM.GENERATION];
    expect(fields.map((f) => m.dom.at(d, f))).toEqual([DS.RUNNING, 0, 20, 0, 2, base, 0, 0, 0, XEN_MAX_GRANT_FRAMES, XEN_MAX_MAPTRACK_FRAMES, INITIAL_NR_GRANT_FRAMES, PASSTHROUGH.disabled, gen + 1]);
    expect(Atomics.load(m.control.w, CTL.GRANT_FRAMES_PEAK)).toBe(INITIAL_NR_GRANT_FRAMES);
    expect(Object.values(XS_KEY).map((k) => Atomics.load(store, xsKey(d, k)))).toEqual(Object.values(XS_KEY).map(() => 0));
    const epoch = m.dom.at(d, DOM.FLUSH_EPOCH);
    for (const v of [0, 1]) {
      const s = base + v;
      expect([VC.DOMID, VC.VCPU, VC.STATE, VC.ACK_EPOCH, VC.HEARTBEAT, VC.HANG_MS, VC.PCPU, VC.IN_USE].map((f) => m.vcpus.at(s, f))).toEqual([d, v, VS.OFFLINE, epoch, 0, 0, 0, 1]);
      expect(Atomics.load(m.ios.slots, m.ios.idx(s) + IOS.APPLIED)).toBe(0);
      expect(Array.from(m.vcpus.stats.subarray(s * STAT.WORDS, (s + 1) * STAT.WORDS)).every((x) => x === 0)).toBe(true);
    }
    expect(Array.from(m.vcpus.stats.subarray((base + 2) * STAT.WORDS, (base + 3) * STAT.WORDS)).every((x) => x === 4)).toBe(true);
    expect(Array.from(m.vcpus.stats.subarray((base - 1) * STAT.WORDS, base * STAT.WORDS)).every((x) => x === 4)).toBe(true);
    expect(iomemPermitted(m, d, 900, 1)).toBe(false);
    // A backend is stored as domid + 1, and the passthrough mode by its code.
    const e = domainCreate(m, spec({ backend: 1, passthrough: 'sync_pt' }));
    expect([m.dom.at(e, DOM.BACKEND), m.dom.at(e, DOM.PASSTHROUGH)]).toEqual([2, PASSTHROUGH.sync_pt]);
    expect(isAlive(m, e)).toBe(true);
    expectAllDestroyed(m);
  });

  it('without p2m_pages, its p2m share is what max_pages at 4 KiB needs at its width (hap_set_allocation)', () => {
    const m = lone();
    for (const [bits, max] of [[undefined, 5000], [40, 70_000]] as const) {
      const d = domainCreate(m, { domid: -1, max_pages: max, nr_vcpus: 1, privileged: false, ...(bits !== undefined ? { paddr_bits: bits } : {}) });
      expect(m.dom.at(d, DOM.P2M_PAGES_MAX)).toBe(p2mPoolPagesFor(bits ?? P2M_DEFAULT_PADDR_BITS, [[0, max]]));
    }
    expectAllDestroyed(m);
  });

  it('isAlive: only a running domain in the table', () => {
    const m = lone();
    expect([-1, 0, 1, m.nd].map((d) => isAlive(m, d))).toEqual([false, true, false, false]);
    const d = domainCreate(m, spec());
    expect(domainCrash(m, d, 'test')).toBe(true);
    expect(isAlive(m, d)).toBe(false);
    expectAllDestroyed(m);
  });
});

describe('the toolstack\'s populate (meminit_hvm)', () => {
  it('1 GiB, then 2 MiB where gfn and count allow, 4 KiB pages up to the next 2 MiB boundary otherwise', () => {
    const m = lone(4096);
    const d = domainCreate(m, spec({ max_pages: 2048, p2m_pages: 16 }));
    expect(populateRange(m, d, 1, 1024)).toBe(0);
    // 1…511 in pages, 512…1023 one superpage, 1024 one page.
    const l = leaves(m, d);
    expect(l.length).toBe(511 + 1 + 1);
    expect(l.slice(509, 513)).toEqual([`510:1:${P2M.ram_rw}`, `511:1:${P2M.ram_rw}`, `512:2:${P2M.ram_rw}`, `1024:1:${P2M.ram_rw}`]);
    expect(m.dom.at(d, DOM.TOT_PAGES)).toBe(1024);
    // An empty range does nothing.
    expect(populateRange(m, d, 2000, 0)).toBe(0);
    // Exactly 512 at a 2 MiB boundary: one superpage.
    expect(populateRange(m, d, 1536, 512)).toBe(0);
    expect(leaves(m, d).slice(-1)).toEqual([`1536:2:${P2M.ram_rw}`]);
    expectAllDestroyed(m);
  });

  it('a superpage that cannot be had falls back to pages: past max_pages, over mapped gfns, past the address width', () => {
    // Room for 520 pages, 10 taken: no superpage; 510 pages, then the allocator's refusal.
    const m = lone(4096);
    const d = domainCreate(m, spec({ max_pages: 520, p2m_pages: 16 }));
    expect(populateRange(m, d, 0, 10)).toBe(0);
    expect(populateRange(m, d, 512, 512)).toBeLessThan(0);
    expect(m.dom.at(d, DOM.TOT_PAGES)).toBe(520);
    expect(leaves(m, d).length).toBe(520);
    expect(leaves(m, d).every((x) => x.endsWith(`:1:${P2M.ram_rw}`))).toBe(true);
    expectClean(m, { conserved: true });
    expectAllDestroyed(m);

    // A gfn of the run mapped already: the superpage's insert is refused and its frames go back; page by page, -EEXIST at that gfn.
    const o = lone(4096);
    const e = domainCreate(o, spec({ max_pages: 2048, p2m_pages: 16 }));
    expect(populateOne(o, e, 700)).toBe(0);
    expect(populateRange(o, e, 512, 512)).toBe(-EEXIST);
    expect(o.dom.at(e, DOM.TOT_PAGES)).toBe(1 + 700 - 512);
    expect(leaves(o, e).every((x) => x.includes(':1:'))).toBe(true);
    expectClean(o, { conserved: true });
    expectAllDestroyed(o);

    // Past the address width: 2^(32 − 12) gfns; a run whose last page is past it is no superpage, its pages -EINVAL at the first past.
    const w = lone(4096);
    const top = 1 << 20;
    const f = domainCreate(w, spec({ paddr_bits: 32, max_pages: 2048, p2m_pages: 16 }));
    expect(populateRange(w, f, top - 512, 512)).toBe(0);
    expect(leaves(w, f)).toEqual([`${top - 512}:2:${P2M.ram_rw}`]);
    expect(populateRange(w, f, top - 1024 - 2, 2)).toBe(0);
    expect(populateRange(w, f, top, 512)).toBe(-EINVAL);
    expect(w.dom.at(f, DOM.TOT_PAGES)).toBe(514);
    expectAllDestroyed(w);
  });

  it('a superpage whose run starts at frame 0 is mapped like any other', () => {
    const m = testMachine({ nr_frames: 1024, domains: [{ memory_pages: 0, privileged: true }] });
    const d = domainCreate(m, spec({ max_pages: 512, p2m_pages: 16 }));
    expect(populateRange(m, d, 0, 512)).toBe(0);
    expect(leaves(m, d)).toEqual([`0:2:${P2M.ram_rw}`]);
    expect(entryMfn(p2mGet(m, d, 0))).toBe(0);
    expectAllDestroyed(m);
  });

  it('a superpage the p2m has no table page for gives back exactly its own run: the frames above it stay their owner\'s', () => {
    const m = lone(4096);
    const a1 = domainCreate(m, spec({ max_pages: 512, p2m_pages: 16 }));
    const a2 = domainCreate(m, spec({ max_pages: 512, p2m_pages: 16 }));
    expect([populateRange(m, a1, 0, 512), populateRange(m, a2, 0, 512)]).toEqual([0, 0]);
    const r1 = entryMfn(p2mGet(m, a1, 0));
    // a2's run lies right above a1's; a1's goes back to the heap, where b's superpage finds it.
    expect(entryMfn(p2mGet(m, a2, 0))).toBe(r1 + 512);
    expect(domainDestroy(m, a1)).toBe(0);
    // One table page, the root: no room for the table a 2 MiB entry sits in, nor a 4 KiB one's.
    const b = domainCreate(m, spec({ max_pages: 512, p2m_pages: 1 }));
    expect(populateRange(m, b, 0, 512)).toBe(-ENOMEM);
    expect([m.dom.at(b, DOM.TOT_PAGES), m.dom.at(a2, DOM.TOT_PAGES)]).toEqual([0, 512]);
    expect(m.ft.owner(r1 + 512)).toBe(a2);
    expectClean(m, { conserved: true });
    expectAllDestroyed(m);
  });

  it('populateOne: -EINVAL past the width, the allocator\'s error past max_pages, -EEXIST over a mapping (the frame given back)', () => {
    const m = lone();
    const d = domainCreate(m, spec({ max_pages: 2 }));
    expect(populateOne(m, d, -1)).toBe(-EINVAL);
    expect(populateOne(m, d, 5)).toBe(0);
    expect(populateOne(m, d, 5)).toBe(-EEXIST);
    expect(m.dom.at(d, DOM.TOT_PAGES)).toBe(1);
    expect(populateOne(m, d, 6)).toBe(0);
    expect(populateOne(m, d, 7)).toBeLessThan(0);
    expect(p2mGet(m, d, 7)).toBe(P2M_HOLE);
    // The width is checked before any frame is asked for: -EINVAL, not the allocator's refusal.
    expect(populateOne(m, d, -1)).toBe(-EINVAL);
    expect(m.dom.at(d, DOM.TOT_PAGES)).toBe(2);
    expectClean(m, { conserved: true });
    expectAllDestroyed(m);
  });
});

describe('domain_kill and domain_relinquish_resources', () => {
  it('-ESRCH unless running or crashed (a bad domid, free, dying or a zombie); a crashed domain is destroyed', () => {
    const m = testMachine();
    for (const d of [-1, 1.5, m.nd, 5]) expect(domainDestroy(m, d), `d${d}`).toBe(-ESRCH);
    expect(domainCrash(m, 2, 'test')).toBe(true);
    expect(domainDestroy(m, 2)).toBe(0);
    expect(domainDestroy(m, 2)).toBe(-ESRCH);
    // A zombie: d1's page is foreign-mapped by d0.
    expect(foreignMap(m, 0, 1, 3, 200)).toBe(0);
    expect(domainDestroy(m, 1)).toBe(0);
    expect(domainState(m, 1)).toBe(DS.ZOMBIE);
    expect(domainDestroy(m, 1)).toBe(-ESRCH);
    m.dom.set(1, DOM.STATE, DS.DYING);
    expect(domainDestroy(m, 1)).toBe(-ESRCH);
    m.dom.set(1, DOM.STATE, DS.ZOMBIE);
    // d0's death drops the foreign map's reference: the zombie's last page goes, and its slot.
    expect(domainDestroy(m, 0)).toBe(0);
    expect(domainState(m, 1)).toBe(DS.FREE);
    expectAllDestroyed(m);
  });

  it('gives back its RAM — a superpage whole, pages no gfn holds, never another\'s frame at its gfn — its foreign maps\' references, its grant maps, its IOREQ servers and vCPU slots', () => {
    // d2's backend is d1: d1 may map its pages.
    const m = testMachine({ nr_frames: 4096, domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0, max_pages: 1024, vcpus: 3 }, { memory_pages: 64, backend: 1 }] });
    const d = 1;
    expect(populateRange(m, d, 512, 512)).toBe(0);
    expect(leaves(m, d).slice(-1)).toEqual([`512:2:${P2M.ram_rw}`]);
    // A page it owns that no gfn holds (as populate_physmap's displaced page).
    const loose = allocDomFrame(m, d);
    expect(loose).toBeGreaterThanOrEqual(0);
    // d0's frame at a gfn of d1 as RAM (as a Steal leaves it until the frame changes hands): not d1's to free.
    const other = entryMfn(p2mGet(m, 0, 10));
    expect(p2mInsert(m, d, 300, p2mEntry(other, P2M.ram_rw))).toBe(0);
    // d1 maps d2's page foreign, and a grant of d2's; d0's IOREQ server for d1, d1's for d2.
    expect(foreignMap(m, d, 2, 11, 301)).toBe(0);
    guestGrantAccess(m, 2, 8, d, 12, false);
    expect(mapGrantRef(m, d, { dom: domid(2), ref: grantRef(8), host_gfn: gfn(302), readonly: false }).status).toBe(GNTST_okay);
    expect(ioreqServerCreate(m, 0, d, [], 'none')).toBe(0);
    expect(ioreqServerCreate(m, d, 2, [], 'none')).toBe(0);
    const counts = [m.ft.count(other), ...[11, 12].map((g) => m.ft.count(entryMfn(p2mGet(m, 2, g))))];
    const base = m.dom.at(d, DOM.VCPU_BASE);
    expect(domainDestroy(m, d)).toBe(0);
    expect(domainState(m, d)).toBe(DS.FREE);
    expect([0, 1, 2].map((v) => m.vcpus.at(base + v, VC.IN_USE))).toEqual([0, 0, 0]);
    // The next slot is d2's: still in use.
    expect([m.vcpus.at(base + 3, VC.IN_USE), m.vcpus.at(base + 3, VC.DOMID)]).toEqual([1, 2]);
    expect(m.ft.owner(other)).toBe(0);
    expect(m.ft.count(other)).toBe(counts[0]);
    expect([11, 12].map((g) => m.ft.count(entryMfn(p2mGet(m, 2, g))))).toEqual([counts[1]! - 1, counts[2]! - 1]);
    expect([m.ioreq.active(d, 0), m.ioreq.active(2, 0)]).toEqual([false, false]);
    expect(m.grants.handles(d) > 0 && (Atomics.load(m.grants.maptrack, m.grants.mtIdx(d, 0) + MT.FLAGS) & MT_INUSE) === 0).toBe(true);
    expect(m.dom.at(0, DOM.TOT_PAGES)).toBe(64);
    // Every frame of d1's back on the heap: a new domain can have the same 512-run again.
    const e = domainCreate(m, { domid: -1, max_pages: 1024, nr_vcpus: 1, privileged: false });
    expect(populateRange(m, e, 0, 1024)).toBe(0);
    expect(leaves(m, e).length).toBe(2);
    expectAllDestroyed(m);
  });

  it('hands its RAM back in p2m order, a superpage highest frame first, ram_ro pages as ram_rw ones: the heap gives them out again lowest first', () => {
    const m = lone(4096);
    const d = domainCreate(m, spec({ max_pages: 1024, p2m_pages: 16 }));
    expect(populateRange(m, d, 0, 512)).toBe(0);
    const run = entryMfn(p2mGet(m, d, 0));
    const ro = allocDomFrame(m, d);
    expect(p2mInsert(m, d, 600, p2mEntry(ro, P2M.ram_ro))).toBe(0);
    expect(populateOne(m, d, 601)).toBe(0);
    const rw = entryMfn(p2mGet(m, d, 601));
    expect(domainDestroy(m, d)).toBe(0);
    const e = domainCreate(m, spec({ max_pages: 1024 }));
    expect(Array.from({ length: 4 }, () => allocDomFrame(m, e))).toEqual([rw, ro, run, run + 1]);
    expectAllDestroyed(m);
  });

  it('waits for each of its vCPUs to go offline except the caller\'s own; a caller on a pCPU gives it up while it waits', () => {
    const m = testMachine({ domains: [{ memory_pages: 16, privileged: true }, { memory_pages: 16, backend: 0, vcpus: 3 }] });
    pcpuInit(m, 3);
    const base = m.dom.at(1, DOM.VCPU_BASE);
    const cpus = [0, 1, 2].map((v) => new VcpuContext(m, { domid: 1, vcpu: v, slot: base + v, memory_pages: 16, seed: 1 }));
    const tool = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 16, seed: 1 });
    tool.start();
    for (const c of [cpus[0]!, cpus[2]!]) c.start();
    // vCPU 1 never ran; 0 and 2 leave at the destroyer's 3rd and 7th spin.
    const seen: string[] = [];
    let spins = 0;
    setSched({
      ...realSched,
      relax(i: number) {
        spins++;
        seen.push(`${i}:${m.vcpus.at(tool.id.slot, VC.PCPU)}:${Atomics.load(m.control.w, CTL.PCPU_IDLE)}`);
        if (spins === 3) cpus[0]!.stop();
        if (spins === 7) cpus[2]!.stop();
      },
    });
    expect(domainDestroy(m, 1, tool.id.slot)).toBe(0);
    setSched(realSched);
    expect(spins).toBe(7);
    // The caller held no pCPU while it spun (one of three idle, two held by d1's vCPUs, then one), and has it back now.
    expect(seen).toEqual(['1000:0:1', '1001:0:1', '1002:0:1', '1000:0:2', '1001:0:2', '1002:0:2', '1003:0:2']);
    expect(m.vcpus.at(tool.id.slot, VC.PCPU)).toBe(1);
    tool.stop();

    // The caller's own slot is not waited for: a vCPU destroying its own domain.
    const n = testMachine({ domains: [{ memory_pages: 16, privileged: true }, { memory_pages: 16, backend: 0, vcpus: 2 }] });
    const self = new VcpuContext(n, { domid: 1, vcpu: 1, slot: n.dom.at(1, DOM.VCPU_BASE) + 1, memory_pages: 16, seed: 1 });
    self.start();
    // In its hypercall: no TLB the shootdown waits for.
    n.vcpus.set(self.id.slot, VC.STATE, VS.HYPERVISOR);
    setSched({
      ...realSched,
      relax() {
        throw new Error('waited for a vCPU');
      },
    });
    expect(domainDestroy(n, 1, self.id.slot)).toBe(0);
    expect(domainState(n, 1)).toBe(DS.FREE);

    // On a host with pCPUs: the toolstack (no vCPU slot) waits for every vCPU, slot 1 included; a caller holding no pCPU gives none up nor takes one.
    const h = testMachine({ domains: [{ memory_pages: 16, privileged: true }, { memory_pages: 16, backend: 0 }, { memory_pages: 16, backend: 0 }] });
    pcpuInit(h, 2);
    expect(h.dom.at(1, DOM.VCPU_BASE)).toBe(1);
    const one = new VcpuContext(h, { domid: 1, vcpu: 0, slot: 1, memory_pages: 16, seed: 1 });
    const two = new VcpuContext(h, { domid: 2, vcpu: 0, slot: h.dom.at(2, DOM.VCPU_BASE), memory_pages: 16, seed: 1 });
    one.start();
    two.start();
    let waited = 0;
    const spun: number[] = [];
    setSched({
      ...realSched,
      relax(i: number) {
        spun.push(i);
        if (++waited === 2) one.stop();
      },
    });
    expect(domainDestroy(h, 1)).toBe(0);
    // domain_kill's own wait (its spins counted from 1000), not the shootdown's after it.
    expect(spun).toEqual([1000, 1001]);
    const idle = (): number => Atomics.load(h.control.w, CTL.PCPU_IDLE);
    const idleBefore = idle();
    const toolSlot = h.dom.at(0, DOM.VCPU_BASE);
    waited = 0;
    setSched({
      ...realSched,
      relax() {
        if (++waited === 1) two.stop();
      },
    });
    expect(domainDestroy(h, 2, toolSlot)).toBe(0);
    expect([waited, h.vcpus.at(toolSlot, VC.PCPU), idle()]).toEqual([1, 0, idleBefore + 1]);
  });
});
