/**
 * What the primitives share (common.ts), from the survivors of its mutation
 * run (docs/verification.md §8): the authority check's domid bound, the
 * two-domain lock helpers (which locks they hold, on one thread), the
 * registry look-ups at their bounds — on records made by hand where the
 * look-up's contract speaks of states the primitives never leave behind
 * (two records covering one gfn, a record allocated and not yet live) —
 * and the stolen-frame table's assertions, each contract broken on purpose.
 */
import { describe, expect, it } from 'vitest';
import { testMachine } from '../../../tests/test-machine.js';
import type { Machine } from '../../xen/machine.js';
import type { LockId } from '../../xen/locks.js';
import { authority, holdStolen, lockPair, pageAllocPair, reapSteals, recordAt, recordCovers, registryOf, returnStolen, stealAt, stealIndex, stealOf } from './common.js';
import { dmMap } from './map.js';
import { dmReturn } from './return.js';
import { dmRevoke } from './revoke.js';
import { dmSteal } from './steal.js';
import { KIND, REC } from './registry.js';
import { DOM } from '../../layout/domains.js';
import { MAX_PAGES_PER_OP } from '../../layout/constants.js';
import { entryMfn } from '../../layout/p2m.js';
import { ESRCH } from '../../public/errno.js';
import { p2mGet } from '../../xen/p2m.js';
import { populateRange } from '../../xen/domain.js';
import { decreaseReservation } from '../../xen/memory.js';
import { expectClean } from '../../../tests/expect-clean.js';

const mfnOf = (m: Machine, d: number, g: number): number => entryMfn(p2mGet(m, d, g));

/**
 * A record written by hand as a primitive writes one (steal.ts writeRecord), with no p2m entry behind it:
 * the look-ups read the registry only. Live pages `live` (all by default); made live unless `activate` is false.
 */
function record(m: Machine, f: { kind: number; be: number; fe: number; src: number; fe_gfn: number; count: number; live?: number[] }, activate = true): number {
  const reg = registryOf(m);
  const r = reg.alloc();
  const live = f.live ?? Array.from({ length: f.count }, (_, i) => i);
  reg.set(r, REC.KIND, f.kind);
  reg.set(r, REC.BACKEND, f.be);
  reg.set(r, REC.FRONTEND, f.fe);
  reg.set(r, REC.SRC, f.src);
  reg.set(r, REC.FE_GFN, f.fe_gfn);
  reg.set(r, REC.COUNT, f.count);
  reg.set(r, REC.LIVE, live.length);
  reg.set(r, REC.ID, reg.nextId());
  for (const i of live) reg.setLive(r, i, true);
  if (activate) reg.activate(r);
  return r;
}
const mapRec = (m: Machine, fe: number, fe_gfn: number, count: number, o: { live?: number[]; activate?: boolean } = {}): number =>
  record(m, { kind: KIND.MAP_RAM, be: 0, fe, src: 4, fe_gfn, count, ...(o.live !== undefined ? { live: o.live } : {}) }, o.activate ?? true);
const stealRec = (m: Machine, be: number, src: number, count: number, o: { live?: number[]; activate?: boolean } = {}): number =>
  record(m, { kind: KIND.STEAL, be, fe: 1, src, fe_gfn: 10, count, ...(o.live !== undefined ? { live: o.live } : {}) }, o.activate ?? true);

describe('the authority check (common.ts authority)', () => {
  it('a frontend domid one past the domain table is -ESRCH, as one below it is (rcu_lock_domain_by_id finds no domain)', () => {
    const m = testMachine();
    for (const fe of [m.nd, m.nd - 1]) {
      expect(authority(m, 0, fe)).toBe(-ESRCH);
      expect(dmMap(m, 0, { fe, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).rc).toBe(-ESRCH);
      expect(dmSteal(m, 0, { fe, gfn: 10, count: 1, into: 200 }).rc).toBe(-ESRCH);
      expect(dmReturn(m, 0, { fe, gfn: 200, count: 1 }).rc).toBe(-ESRCH);
    }
    expect(authority(m, 0, 1)).toBe(0);
    expectClean(m);
  });
});

describe('the two-domain lock helpers (common.ts lockPair, pageAllocPair)', () => {
  // Xen's get_two_gfns takes two domains' p2m locks lower domid first ("Sort by domain"); the page_alloc pair keeps
  // the same order (docs/locks.md). A domain paired with itself is locked once: Xen's spinlocks are not recursive.
  const helpers = [
    ['lockPair', lockPair, DOM.LOCK_P2M],
    ['pageAllocPair', pageAllocPair, DOM.LOCK_PAGE_ALLOC],
  ] as const;
  for (const [name, pair, field] of helpers) {
    it(`${name} holds both domains' locks whichever comes first, one lock for one domain, and gives back what it took`, () => {
      const m = testMachine();
      const held = (): boolean[] => [0, 1, 2].map((d) => m.locks.heldByMe(m.dom.at(d, field) as LockId));
      for (const [a, b] of [[2, 1], [1, 2]] as const) {
        const unlock = pair(m, a, b, 'test');
        expect([a, b, held(), m.locks.heldCount()]).toEqual([a, b, [false, true, true], 2]);
        unlock();
        expect([held(), m.locks.heldCount()]).toEqual([[false, false, false], 0]);
      }
      const unlock = pair(m, 1, 1, 'test');
      expect([held(), m.locks.heldCount()]).toEqual([[false, true, false], 1]);
      unlock();
      expect([held(), m.locks.heldCount()]).toEqual([[false, false, false], 0]);
      expectClean(m);
    });
  }
});

describe('the registry look-ups at their bounds (common.ts recordCovers, recordAt, stealIndex, stealAt)', () => {
  it('recordCovers: a live Map record of fe covers its live pages only — not the gfn before its first or the one after its last, where the words past its page bitmap hold set bits', () => {
    const m = testMachine();
    // A full-size record (MAX_PAGES_PER_OP pages from gfn 600, page 5 revoked) and a live record after it: a page
    // index of −MAX_PAGES_PER_OP or MAX_PAGES_PER_OP would read a set bit (this record's STATE, the next one's).
    const r = mapRec(m, 1, 600, MAX_PAGES_PER_OP, { live: Array.from({ length: MAX_PAGES_PER_OP }, (_, i) => i).filter((i) => i !== 5) });
    expect(mapRec(m, 2, 0, 1)).toBe(r + 1);
    const covers = (fe: number, g: number): boolean => recordCovers(m, r, fe, g);
    expect([covers(1, 600), covers(1, 600 + MAX_PAGES_PER_OP - 1), covers(1, 604), covers(1, 606)]).toEqual([true, true, true, true]);
    expect([covers(1, 599), covers(1, 600 - MAX_PAGES_PER_OP), covers(1, 600 + MAX_PAGES_PER_OP)]).toEqual([false, false, false]);
    expect(covers(1, 605)).toBe(false); // revoked page
    expect(covers(2, 600)).toBe(false); // another frontend's gfn
    expect(recordCovers(m, -1, 1, 600)).toBe(false);
    // Allocated and written, not yet live (a primitive between alloc and activate): it covers nothing yet.
    const pending = mapRec(m, 1, 1200, 1, { activate: false });
    expect([recordCovers(m, pending, 1, 1200), recordAt(m, 1, 1200)]).toEqual([false, -1]);
    expect([recordAt(m, 1, 604), recordAt(m, 1, 605), recordAt(m, 1, 600 + MAX_PAGES_PER_OP)]).toEqual([r, -1, -1]);
  });

  it('stealIndex: the page of a live Steal record of be at a backend gfn — not before its first or after its last, not an ended page, not another backend\'s, not a record not yet live', () => {
    const m = testMachine();
    const r = stealRec(m, 0, 600, MAX_PAGES_PER_OP, { live: Array.from({ length: MAX_PAGES_PER_OP }, (_, i) => i).filter((i) => i !== 5) });
    expect(stealRec(m, 0, 0, 1)).toBe(r + 1);
    const at = (be: number, g: number): number => stealIndex(m, r, be, g);
    expect([at(0, 600), at(0, 600 + MAX_PAGES_PER_OP - 1), at(0, 606)]).toEqual([0, MAX_PAGES_PER_OP - 1, 6]);
    expect([at(0, 599), at(0, 600 - MAX_PAGES_PER_OP), at(0, 600 + MAX_PAGES_PER_OP), at(0, 605), at(1, 600)]).toEqual([-1, -1, -1, -1, -1]);
    const pending = stealRec(m, 0, 1200, 1, { activate: false });
    expect([stealIndex(m, pending, 0, 1200), stealAt(m, 0, 1200)]).toEqual([-1, [-1, -1]]);
    // A Map record of be is no Steal, whatever its SRC.
    const map = record(m, { kind: KIND.MAP_RAM, be: 0, fe: 1, src: 1300, fe_gfn: 100, count: 1 });
    expect([stealIndex(m, map, 0, 1300), stealAt(m, 0, 1300)]).toEqual([-1, [-1, -1]]);
  });

  it('stealAt: [−1, −1] for a gfn no Steal holds, hint or not; a hint that does not hold the gfn gives way to the scan', () => {
    const m = testMachine();
    const a = stealRec(m, 0, 200, 1);
    const b = stealRec(m, 0, 300, 2);
    expect([stealAt(m, 0, 400), stealAt(m, 0, 400, a), stealAt(m, 1, 200)]).toEqual([[-1, -1], [-1, -1], [-1, -1]]);
    expect([stealAt(m, 0, 301, a), stealAt(m, 0, 200, b), stealAt(m, 0, 300, b)]).toEqual([[b, 1], [a, 0], [b, 0]]);
  });

  // The look-ups' contract for a state the primitives never leave (at most one live record covers a frontend gfn,
  // at most one live Steal holds a backend gfn), broken on purpose: without a hint, the record a scan in record
  // order finds first; with one that covers, the hint — tried first, as the range walks in map.ts and return.ts
  // rely on to skip the index at every gfn after the first.
  it('recordAt: of two live records covering one gfn (broken on purpose), the lowest, whichever order the index lists them in; a covering hint is the answer', () => {
    // The index lists the newest first: records 0 and 1 made live in order (1 listed first), and in reverse (0 first).
    for (const reversed of [false, true]) {
      const m = testMachine();
      const reg = registryOf(m);
      const made = reversed ? [mapRec(m, 1, 100, 1, { activate: false }), mapRec(m, 1, 99, 2, { activate: false })] : [mapRec(m, 1, 100, 1), mapRec(m, 1, 99, 2)];
      expect(made).toEqual([0, 1]);
      if (reversed) {
        reg.activate(1);
        reg.activate(0);
      }
      expect([reversed, recordAt(m, 1, 100), recordAt(m, 1, 100, 1), recordAt(m, 1, 100, 0), recordAt(m, 1, 99, 0)]).toEqual([reversed, 0, 1, 0, 1]);
    }
  });

  it('stealAt: of two live Steals holding one backend gfn (broken on purpose), the lowest record; a hint that holds it is the answer', () => {
    const m = testMachine();
    const lo = stealRec(m, 0, 199, 2); // holds gfn 200 as its page 1
    const hi = stealRec(m, 0, 200, 1); // holds it as its page 0
    expect([lo, hi]).toEqual([0, 1]);
    expect([stealAt(m, 0, 200), stealAt(m, 0, 200, hi), stealAt(m, 0, 200, lo)]).toEqual([[lo, 1], [hi, 0], [lo, 1]]);
  });
});

describe('the stolen-frame table (common.ts stealOf, holdStolen, endStealPage, reapSteals)', () => {
  it('stealOf asserts the Steal it names is live and holds the page: each part of that broken on purpose is a BUG', () => {
    // The table and the records are written together under the registry lock; a table entry naming a record
    // that is not that frontend's live Steal page is the hypervisor's own invariant broken (fatal, loud).
    const m = testMachine();
    const reg = registryOf(m);
    const mfn = mfnOf(m, 1, 10);
    const s = dmSteal(m, 0, { fe: 1, gfn: 10, count: 1, into: 200 });
    expect(s.rc).toBe(0);
    const r = reg.find(s.id + 1);
    expect(stealOf(m, mfn)).toEqual({ r, i: 0, fe: 1 });
    const say = `stolen mfn ${mfn}: its Steal record ${r} page 0 is not live`;
    const breaks: Array<[() => void, () => void]> = [
      [() => reg.set(r, REC.STATE, 2), () => reg.set(r, REC.STATE, 1)],
      [() => reg.set(r, REC.KIND, KIND.MAP_RAM), () => reg.set(r, REC.KIND, KIND.STEAL)],
      [() => reg.set(r, REC.FRONTEND, 2), () => reg.set(r, REC.FRONTEND, 1)],
      [() => reg.setLive(r, 0, false), () => reg.setLive(r, 0, true)],
    ];
    for (const [k, [broken, mended]] of breaks.entries()) {
      broken();
      expect(() => stealOf(m, mfn), `break ${k}`).toThrow(say);
      mended();
      expect(stealOf(m, mfn)).toEqual({ r, i: 0, fe: 1 });
    }
    expectClean(m);
  });

  it('a frame freed and stolen again ends only its own page of the first Steal; reaping leaves both; holding it once more without a free, or ending a page twice, is a BUG', () => {
    // steal_page ties a Steal to the frame: the backend's free (decrease_reservation → free_domheap_pages) ends
    // that page's Steal, not the frontend's other page taken with it. d2 has room for one page more.
    const m = testMachine({ domains: [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, max_pages: 66, backend: 0 }] });
    const reg = registryOf(m);
    const [a, b] = [mfnOf(m, 1, 10), mfnOf(m, 1, 11)];
    // Neighbouring frames (d1's RAM is handed out in order): the table's entries for a and b lie side by side.
    expect(b).toBe(a + 1);
    const first = dmSteal(m, 0, { fe: 1, gfn: 10, count: 2, into: 200 });
    expect(first.rc).toBe(0);
    const r1 = reg.find(first.id + 1);
    expect(dmRevoke(m, 0, { fe: 1, gfn: 11, count: 1 })).toBe(0); // the implicit Map's page 1 and its reference go
    expect(decreaseReservation(m, 0, [201])).toBe(1);
    expect(populateRange(m, 2, 100, 1)).toBe(0);
    expect(mfnOf(m, 2, 100)).toBe(b); // the heap hands the frame just freed out first
    const second = dmSteal(m, 0, { fe: 2, gfn: 100, count: 1, into: 210 });
    expect(second.rc).toBe(0);
    const r2 = reg.find(second.id + 1);
    // Page 1 of the first Steal is over, page 0 (frame a) still held.
    expect([reg.at(r1, REC.STATE), reg.at(r1, REC.LIVE), reg.live(r1, 0), reg.live(r1, 1)]).toEqual([1, 1, true, false]);
    expect([stealOf(m, a), stealOf(m, b)]).toEqual([{ r: r1, i: 0, fe: 1 }, { r: r2, i: 0, fe: 2 }]);
    // No stolen frame was freed since: a reap ends nothing.
    reapSteals(m);
    expect([stealOf(m, a), stealOf(m, b), reg.at(r1, REC.LIVE), reg.at(r2, REC.LIVE)]).toEqual([{ r: r1, i: 0, fe: 1 }, { r: r2, i: 0, fe: 2 }, 1, 1]);
    expectClean(m);
    // The contract broken on purpose: frame b held again with no free between.
    expect(() => holdStolen(m, b, 2, r2, 0)).toThrow(`mfn ${b} stolen twice without a free`);
    // Frame b given back by hand while the second Steal's implicit Map still maps it (no primitive ends a Steal
    // first: Return, a free and teardown each revoke the implicit Map's page before): the Steal record goes, and
    // the Map's link to it with it (LINK names a live record or nothing, registry.ts).
    const map2 = reg.find(second.id);
    expect([reg.at(map2, REC.LINK), reg.at(r2, REC.LINK)]).toEqual([r2 + 1, map2 + 1]);
    returnStolen(m, b, r2, 0);
    expect([reg.at(r2, REC.STATE), reg.at(map2, REC.STATE), reg.at(map2, REC.LINK), stealOf(m, b)]).toEqual([0, 1, 0, undefined]);
    // And that page ended twice.
    expect(() => returnStolen(m, b, r2, 0)).toThrow(`Steal record ${r2} page 0 ended twice`);
  });
});
