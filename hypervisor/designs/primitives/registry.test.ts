/**
 * The registry's index (registry.ts) against the scans over the 2048
 * records it replaced: after every step of a random run of allocations,
 * activations, retirements and frees, each look-up answers what the scan
 * in record order answered — which record alloc hands out, find, the live
 * records by frontend, by backend and by parent slot, the counts — and
 * checkIndex finds nothing; and checkIndex does find a broken index.
 */
import { describe, expect, it } from 'vitest';
import { MAX_MAPPINGS } from '../../layout/constants.js';
import { SimRng } from '../../host/sim/sim-sched.js';
import { IDX, KIND, REC, Registry } from './registry.js';

const FRAMES = 16;
const P2M_ENTRIES = 16;
const DOMS = 5;

function registry(): Registry {
  return new Registry(new SharedArrayBuffer(Registry.bytes(FRAMES, P2M_ENTRIES)), FRAMES, P2M_ENTRIES);
}

// ---- the scans the index replaced (registry.ts and the look-ups of common.ts, revoke.ts, return.ts, teardown.ts before it)

function scanAlloc(reg: Registry): number {
  let tomb = -1;
  let oldest = Infinity;
  for (let r = 0; r < MAX_MAPPINGS; r++) {
    const st = reg.at(r, REC.STATE);
    if (st === 0 && !reserved.has(r)) return r;
    if (st === 2 && reg.at(r, REC.ID) < oldest) {
      oldest = reg.at(r, REC.ID);
      tomb = r;
    }
  }
  return tomb;
}
function scanFind(reg: Registry, id: number): number {
  for (let r = 0; r < MAX_MAPPINGS; r++) if (reg.at(r, REC.STATE) !== 0 && reg.at(r, REC.ID) === id) return r;
  return -1;
}
function scanWhere(reg: Registry, f: (r: number) => boolean): number[] {
  const out: number[] = [];
  for (let r = 0; r < MAX_MAPPINGS; r++) if (reg.at(r, REC.STATE) === 1 && f(r)) out.push(r);
  return out;
}

/** Records alloc handed out that are not live yet (state 0 to the scan; the old code set STATE at once). */
const reserved = new Set<number>();

function fill(reg: Registry, rng: SimRng, r: number, live: readonly number[]): void {
  const nested = live.length > 0 && rng.chance(0.3);
  const kind = nested ? KIND.MAP_NESTED : [KIND.MAP_RAM, KIND.MAP_BAR, KIND.STEAL][rng.below(3)]!;
  reg.set(r, REC.KIND, kind);
  reg.set(r, REC.BACKEND, rng.below(DOMS));
  reg.set(r, REC.FRONTEND, rng.below(DOMS));
  reg.set(r, REC.FE_GFN, rng.below(1000));
  reg.set(r, REC.COUNT, 1 + rng.below(4));
  reg.set(r, REC.LIVE, reg.at(r, REC.COUNT));
  // A nested Map's parent: a live record, or now and then any slot (an orphan whose parent slot was reused).
  if (nested) reg.set(r, REC.PARENT, 1 + (rng.chance(0.8) ? live[rng.below(live.length)]! : rng.below(MAX_MAPPINGS)));
  reg.set(r, REC.ID, reg.nextId());
}

function expectSame(reg: Registry): void {
  for (let d = 0; d < DOMS; d++) {
    expect(reg.byFrontend(d)).toEqual(scanWhere(reg, (r) => reg.at(r, REC.FRONTEND) === d));
    expect(reg.byBackend(d)).toEqual(scanWhere(reg, (r) => reg.at(r, REC.BACKEND) === d));
    const walked: number[] = [];
    for (let r = reg.firstOfFrontend(d); r >= 0; r = reg.nextOfFrontend(r)) walked.push(r);
    expect(walked.sort((a, b) => a - b)).toEqual(reg.byFrontend(d));
  }
  const parents = new Set(scanWhere(reg, (r) => reg.at(r, REC.KIND) === KIND.MAP_NESTED).map((r) => reg.at(r, REC.PARENT) - 1));
  for (const p of parents) expect(reg.childrenOf(p)).toEqual(scanWhere(reg, (r) => reg.at(r, REC.KIND) === KIND.MAP_NESTED && reg.at(r, REC.PARENT) === p + 1));
  let notLive = 0;
  for (let r = 0; r < MAX_MAPPINGS; r++) if (reg.at(r, REC.STATE) !== 1) notLive++;
  expect(reg.activeCount()).toBe(MAX_MAPPINGS - notLive);
  expect(reg.freeCount(3)).toBe(Math.min(3, notLive));
  expect(reg.checkIndex()).toEqual([]);
}

describe('the registry index', () => {
  it('answers every look-up as the scans in record order did, through a run that fills the registry and reuses tombstones', () => {
    const seed = 0x18_2048;
    console.log(`registry index test seed ${seed}`);
    const rng = new SimRng(seed);
    const reg = registry();
    const ids: number[] = [];
    let fromTombs = 0;
    // The live records and the tombstones, kept as the run goes (picking from them by a scan each step was slow).
    const live: number[] = [];
    const tombs: number[] = [];
    const take = (xs: number[], k: number): number => {
      const r = xs[k]!;
      xs[k] = xs[xs.length - 1]!;
      xs.pop();
      return r;
    };
    const drop = (xs: number[], r: number): void => {
      const k = xs.indexOf(r);
      if (k >= 0) take(xs, k);
    };
    for (let step = 0; step < 8000; step++) {
      const u = rng.u32() % 100;
      // More allocations than ends early on, so the registry fills and alloc must take tombstones.
      if (u < (step < 5000 ? 60 : 40)) {
        const want = scanAlloc(reg);
        if (want >= 0 && reg.at(want, REC.STATE) === 2) fromTombs++;
        const r = reg.alloc();
        expect(r, `step ${step}`).toBe(want);
        if (r < 0) continue;
        drop(tombs, r);
        fill(reg, rng, r, live);
        ids.push(reg.at(r, REC.ID));
        // Now and then two allocations before either is live (Steal's record and its implicit Map).
        if (rng.chance(0.2)) {
          reserved.add(r);
          const want2 = scanAlloc(reg);
          const r2 = reg.alloc();
          expect(r2).toBe(want2);
          if (r2 >= 0) {
            drop(tombs, r2);
            fill(reg, rng, r2, live);
            ids.push(reg.at(r2, REC.ID));
            reg.activate(r2);
            live.push(r2);
          }
          reserved.delete(r);
        }
        reg.activate(r);
        live.push(r);
      } else if (u < 85 && live.length > 0) {
        const r = take(live, rng.below(live.length));
        reg.retire(r);
        tombs.push(r);
      } else if (u < 95 && live.length > 0) {
        reg.free(take(live, rng.below(live.length)));
      } else if (tombs.length > 0) {
        reg.free(take(tombs, rng.below(tombs.length)));
      }
      if (step % 197 === 0) expectSame(reg);
      for (let k = 0; k < 3 && ids.length > 0; k++) {
        const id = ids[rng.below(ids.length)]!;
        expect(reg.find(id)).toBe(scanFind(reg, id));
      }
    }
    expectSame(reg);
    // The run did what it is for: a full registry, tombstones handed out again.
    expect(reg.nextId()).toBeGreaterThan(MAX_MAPPINGS + 1000);
    expect(tombs.length).toBeGreaterThan(0);
    expect(live.length).toBe(reg.activeCount());
    expect(fromTombs).toBeGreaterThan(100);
    expect(reg.find(0)).toBe(-1);
    expect(reg.find(1.5)).toBe(-1);
  });

  it('checkIndex finds an index that no longer matches the records', () => {
    const make = (): Registry => {
      const reg = registry();
      for (let i = 0; i < 10; i++) {
        const r = reg.alloc();
        reg.set(r, REC.KIND, i === 9 ? KIND.MAP_NESTED : KIND.MAP_RAM);
        reg.set(r, REC.FRONTEND, 1);
        reg.set(r, REC.BACKEND, 0);
        reg.set(r, REC.PARENT, i === 9 ? 1 : 0);
        reg.set(r, REC.ID, reg.nextId());
        reg.activate(r);
      }
      reg.retire(3);
      reg.retire(5);
      expect(reg.checkIndex()).toEqual([]);
      return reg;
    };
    const breaks: Array<(reg: Registry) => void> = [
      (reg) => void (reg.ix[IDX.USED_BITS] = reg.ix[IDX.USED_BITS]! & ~1), // record 0 marked free
      (reg) => reg.set(7, REC.STATE, 0), // a record freed behind the index's back
      (reg) => reg.set(2, REC.FRONTEND, 2), // a key changed while live
      (reg) => reg.set(9, REC.PARENT, 3), // a nested Map's parent changed while live
      (reg) => reg.set(4, REC.ID, 999), // an id changed
      (reg) => void (reg.ix[IDX.LIVE_N] = 3),
      (reg) => reg.set(3, REC.STATE, 1), // a tombstone live again without activate
      (reg) => void reg.alloc(), // allocated and never made live: lost to alloc for good
    ];
    for (const [k, b] of breaks.entries()) {
      const reg = make();
      b(reg);
      expect(reg.checkIndex().length, `break ${k}`).toBeGreaterThan(0);
    }
  });
});
