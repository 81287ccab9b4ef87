import fc from 'fast-check';
import { runTestWorker } from '../../tests/run-test-worker.js';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_HELD_LOCKS } from '../layout/constants.js';
import { InvariantLog } from '../layout/invariants.js';
import { LOCK_CLASS, lockClassInfo, type LockClass } from './lock-classes.js';
import type { LocksTestJob, LocksTestResult } from '../../tests/workers/locks-worker.js';
import { LockFault, LockSpace, TEST_A, TEST_B, lockdepReport, setThreadTag, threadTag, type LockId } from './locks.js';

function seedFromEnv(): number {
  const seed = process.env.SEED !== undefined ? Number(process.env.SEED) : Math.floor(Math.random() * 0x7fffffff);
  console.log('seed', seed);
  return seed;
}

function makeSpace(nlocks: number, checking: boolean): { space: LockSpace; log: InvariantLog; locks: SharedArrayBuffer; logSab: SharedArrayBuffer } {
  const locks = new SharedArrayBuffer(LockSpace.bytes(nlocks));
  const logSab = new SharedArrayBuffer(InvariantLog.bytes());
  const log = new InvariantLog(logSab);
  return { space: new LockSpace(locks, log, { checking, testClasses: true }), log, locks, logSab };
}

function lockOrderTexts(log: InvariantLog): string[] {
  return log.records().filter((r) => r.invariant === 'lock_order').map((r) => r.text);
}

function runWorker(job: LocksTestJob): Promise<LocksTestResult> {
  return runTestWorker<LocksTestJob, LocksTestResult>('locks-worker', job);
}

const mainTag = threadTag();
afterEach(() => setThreadTag(mainTag));

describe('LockSpace: mutual exclusion under real contention', () => {
  for (const [threads, checking] of [
    [4, false],
    [2, true],
  ] as const) {
    it(`${threads} threads, checking ${checking}: a non-atomic counter under the lock is exact`, async () => {
      const seed = seedFromEnv();
      const { space, log, locks, logSab } = makeSpace(4, checking);
      const id = space.alloc(LOCK_CLASS.heap);
      const counter = new SharedArrayBuffer(4);
      const iterations = 20_000;
      const results = await Promise.all(
        Array.from({ length: threads }, (_, i) =>
          runWorker({ kind: 'count', locks, log: logSab, counter, lock: id, iterations, seed: (seed + i) >>> 0, checking }),
        ),
      );
      expect(new Int32Array(counter)[0]).toBe(threads * iterations);
      expect(space.isHeld(id)).toBe(false);
      expect(log.totalViolations()).toBe(0);
      expect(log.counts().lock_order.checks).toBe(checking ? threads * iterations : 0);
      console.log('slow-path entries', space.contended(id), results.map((r) => (r.kind === 'done' ? r.contended : -1)));
    });
  }
});

describe('lockdep across threads', () => {
  it('A→B on one thread and B→A on another get an inversion report, and the run does not hang', async () => {
    const { space, log, locks, logSab } = makeSpace(2, true);
    const a = space.alloc(TEST_A);
    const b = space.alloc(TEST_B);
    // One after the other: the checker must not need the deadlock to happen.
    await runWorker({ kind: 'order', locks, log: logSab, first: a, second: b, firstSite: 'thread1:take-A', secondSite: 'thread1:take-B', checking: true });
    expect(lockOrderTexts(log)).toEqual([]);
    await runWorker({ kind: 'order', locks, log: logSab, first: b, second: a, firstSite: 'thread2:take-B', secondSite: 'thread2:take-A', checking: true });
    const inversions = lockOrderTexts(log).filter((t) => t.startsWith('inversion'));
    expect(inversions).toHaveLength(1);
    const text = inversions[0] as string;
    expect(text).toContain('TEST_A');
    expect(text).toContain('TEST_B');
    // The acquisition site of this edge and of the existing reverse edge.
    expect(text).toContain('thread2:take-A');
    expect(text).toContain('thread1:take-B');
    // TEST_B ranks above TEST_A, so B→A also breaks the documented order.
    expect(lockOrderTexts(log).filter((t) => t.startsWith('rank TEST_B>TEST_A'))).toHaveLength(1);
    expect(space.isHeld(a) || space.isHeld(b)).toBe(false);
    const report = lockdepReport(space);
    expect(report).toContain("TEST_A -> TEST_B: TEST_B taken at 'thread1:take-B' holding TEST_A from 'thread1:take-A'");
    expect(report).toContain("TEST_B -> TEST_A: TEST_A taken at 'thread2:take-A' holding TEST_B from 'thread2:take-B'");
  });

  it('an inversion is reported once per class pair', () => {
    const { space, log } = makeSpace(2, true);
    const a = space.alloc(TEST_A);
    const b = space.alloc(TEST_B);
    for (let round = 0; round < 3; round++) {
      space.lock(a, 'x:A');
      space.lock(b, 'x:B');
      space.unlock(b);
      space.unlock(a);
      space.lock(b, 'y:B');
      space.lock(a, 'y:A');
      space.unlock(a);
      space.unlock(b);
    }
    expect(lockOrderTexts(log).filter((t) => t.startsWith('inversion'))).toHaveLength(1);
    expect(log.counts().lock_order.checks).toBe(12);
  });

  it('finds an inversion through a longer reverse path', () => {
    const { space, log } = makeSpace(3, true);
    const g = space.alloc(LOCK_CLASS.grant);
    const p = space.alloc(LOCK_CLASS.p2m);
    const h = space.alloc(LOCK_CLASS.heap);
    space.lock(g, 'path:grant');
    space.lock(p, 'path:p2m');
    space.unlock(p);
    space.unlock(g);
    space.lock(p, 'path2:p2m');
    space.lock(h, 'path2:heap');
    space.unlock(h);
    space.unlock(p);
    expect(lockOrderTexts(log)).toEqual([]);
    space.lock(h, 'bad:heap');
    space.lock(g, 'bad:grant');
    space.unlock(g);
    space.unlock(h);
    const inv = lockOrderTexts(log).filter((t) => t.startsWith('inversion'));
    expect(inv).toHaveLength(1);
    expect(inv[0]).toContain("heap->grant at 'bad:grant'");
    expect(inv[0]).toContain("grant->p2m at 'path:p2m'");
    expect(inv[0]).toContain("p2m->heap at 'path2:heap'");
  });
});

describe('lockdep: hierarchy and nesting rules', () => {
  it('the documented order, domctl to log, is clean', () => {
    const { space, log } = makeSpace(16, true);
    const order: [LockClass, number][] = [
      [LOCK_CLASS.domctl, 0],
      [LOCK_CLASS.registry, 0],
      [LOCK_CLASS.ioreq_server, 1],
      [LOCK_CLASS.grant, 1],
      [LOCK_CLASS.active, 1],
      [LOCK_CLASS.maptrack, 1],
      [LOCK_CLASS.p2m, 1],
      [LOCK_CLASS.p2m, 2],
      [LOCK_CLASS.page_alloc, 1],
      [LOCK_CLASS.page_alloc, 2],
      [LOCK_CLASS.heap, 0],
      [LOCK_CLASS.log, 0],
    ];
    const ids = order.map(([c]) => space.alloc(c));
    ids.forEach((id, i) => space.lock(id, `order:${i}`, order[i]?.[1] ?? 0));
    for (const id of ids) expect(space.heldByMe(id)).toBe(true);
    expect(space.heldCount()).toBe(ids.length);
    // Release out of order: allowed, as in Xen.
    for (const id of [...ids].sort((x, y) => (x * 7) % 12 - (y * 7) % 12)) space.unlock(id);
    expect(log.totalViolations()).toBe(0);
    expect(log.counts().lock_order.checks).toBe(ids.length);
    expect(space.edges().length).toBeGreaterThan(0);
  });

  it('a lower rank taken under a higher one is reported without any reverse edge', () => {
    const { space, log } = makeSpace(2, true);
    const heap = space.alloc(LOCK_CLASS.heap);
    const p2m = space.alloc(LOCK_CLASS.p2m);
    space.lock(heap, 'free_domheap_pages');
    space.lock(p2m, 'p2m_set_entry', 1);
    space.unlock(p2m);
    space.unlock(heap);
    const texts = lockOrderTexts(log);
    expect(texts).toHaveLength(1);
    expect(texts[0]).toMatch(/^rank heap>p2m: /);
    expect(texts[0]).toContain('p2m_set_entry');
    expect(texts[0]).toContain('free_domheap_pages');
  });

  it('ordered nesting: ascending keys are fine, descending or equal keys are reported', () => {
    const asc = makeSpace(2, true);
    const a1 = asc.space.alloc(LOCK_CLASS.p2m);
    const a2 = asc.space.alloc(LOCK_CLASS.p2m);
    asc.space.lock(a1, 'double:dom1', 1);
    asc.space.lock(a2, 'double:dom2', 2);
    asc.space.unlock(a2);
    asc.space.unlock(a1);
    expect(asc.log.totalViolations()).toBe(0);

    const desc = makeSpace(2, true);
    const d1 = desc.space.alloc(LOCK_CLASS.page_alloc);
    const d2 = desc.space.alloc(LOCK_CLASS.page_alloc);
    desc.space.lock(d2, 'steal:dom2', 2);
    desc.space.lock(d1, 'steal:dom1', 1);
    desc.space.unlock(d1);
    desc.space.unlock(d2);
    const texts = lockOrderTexts(desc.log);
    expect(texts).toHaveLength(1);
    expect(texts[0]).toMatch(/^nest_order page_alloc: key 1 at 'steal:dom1' while holding key 2 from 'steal:dom2'/);

    const eq = makeSpace(2, true);
    const e1 = eq.space.alloc(LOCK_CLASS.p2m);
    const e2 = eq.space.alloc(LOCK_CLASS.p2m);
    eq.space.lock(e1, 'same:1', 3);
    eq.space.lock(e2, 'same:2', 3);
    eq.space.unlock(e2);
    eq.space.unlock(e1);
    expect(lockOrderTexts(eq.log)[0]).toMatch(/^nest_order p2m: /);
  });

  it('two grant locks at once are reported whatever the order', () => {
    const { space, log } = makeSpace(2, true);
    const g1 = space.alloc(LOCK_CLASS.grant);
    const g2 = space.alloc(LOCK_CLASS.grant);
    space.lock(g1, 'gnttab_copy:src', 1);
    space.lock(g2, 'gnttab_copy:dst', 2);
    space.unlock(g2);
    space.unlock(g1);
    const texts = lockOrderTexts(log);
    expect(texts).toHaveLength(1);
    expect(texts[0]).toMatch(/^nest_never grant: key 2 at 'gnttab_copy:dst' while holding key 1 from 'gnttab_copy:src'/);
  });

  it('a trylock adds no edge into its class, but locks taken under it get edges from it', () => {
    const { space, log } = makeSpace(3, true);
    const heap = space.alloc(LOCK_CLASS.heap);
    const p2m = space.alloc(LOCK_CLASS.p2m);
    const logLock = space.alloc(LOCK_CLASS.log);
    space.lock(heap, 'try:heap');
    expect(space.tryLock(p2m, 'try:p2m', 1)).toBe(true);
    expect(space.tryLock(p2m, 'try:p2m-again', 1)).toBe(false);
    space.lock(logLock, 'try:log');
    space.unlock(logLock);
    space.unlock(p2m);
    space.unlock(heap);
    expect(log.totalViolations()).toBe(0);
    const edges = space.edges().map((e) => `${e.from}->${e.to}`);
    expect(edges).not.toContain('heap->p2m');
    expect(edges).toContain('p2m->log');
    expect(edges).toContain('heap->log');
  });
});

describe('LockSpace: fatal assertions', () => {
  for (const checking of [false, true]) {
    it(`unlocking a lock this thread does not hold throws (checking ${checking})`, () => {
      const { space } = makeSpace(1, checking);
      const id = space.alloc(TEST_A);
      expect(() => space.unlock(id)).toThrow(LockFault);
      space.lock(id, 'held');
      space.unlock(id);
      expect(() => space.unlock(id)).toThrow(/not held/);
      // Held, but by another holder identity.
      setThreadTag(mainTag + 1000);
      space.lock(id, 'other');
      setThreadTag(mainTag);
      expect(space.isHeld(id)).toBe(true);
      expect(space.heldByMe(id)).toBe(false);
      expect(() => space.assertHeld(id)).toThrow(LockFault);
      expect(() => space.unlock(id)).toThrow(/not held by thread/);
      setThreadTag(mainTag + 1000);
      space.assertHeld(id);
      space.unlock(id);
    });

    it(`taking a lock this thread already holds throws instead of hanging (checking ${checking})`, () => {
      const { space } = makeSpace(1, checking);
      const id = space.alloc(TEST_A);
      space.lock(id, 'first');
      let fault: unknown;
      try {
        space.lock(id, 'second');
      } catch (e) {
        fault = e;
      }
      expect(fault).toBeInstanceOf(LockFault);
      expect((fault as LockFault).kind).toBe('recursive');
      space.unlock(id);
      expect(space.isHeld(id)).toBe(false);
    });
  }

  it('test-only classes need testClasses: true, and regions check their size', () => {
    const sab = new SharedArrayBuffer(LockSpace.bytes(1));
    const space = new LockSpace(sab, new InvariantLog(new SharedArrayBuffer(InvariantLog.bytes())), { checking: false });
    expect(() => space.alloc(TEST_A)).toThrow(/testClasses/);
    space.alloc(LOCK_CLASS.log);
    expect(() => space.alloc(LOCK_CLASS.log)).toThrow(/allocated/);
    expect(() => new LockSpace(new SharedArrayBuffer(LockSpace.bytes(1) + 4), new InvariantLog(new SharedArrayBuffer(InvariantLog.bytes())), { checking: false })).toThrow(/not LockSpace.bytes/);
  });

  it('holding more than MAX_HELD_LOCKS is fatal before acquiring', () => {
    const { space } = makeSpace(MAX_HELD_LOCKS + 1, true);
    const ids = Array.from({ length: MAX_HELD_LOCKS + 1 }, () => space.alloc(LOCK_CLASS.p2m));
    ids.slice(0, MAX_HELD_LOCKS).forEach((id, i) => space.lock(id, 'many', i));
    const last = ids[MAX_HELD_LOCKS] as LockId;
    expect(() => space.lock(last, 'one-too-many', MAX_HELD_LOCKS)).toThrow(/MAX_HELD_LOCKS/);
    expect(space.isHeld(last)).toBe(false);
    for (const id of ids.slice(0, MAX_HELD_LOCKS)) space.unlock(id);
  });
});

/**
 * Model-based: random lock/unlock sequences on one thread, checked against a
 * plain reference of the rules (fixed rank order, same-class nesting, cycles
 * in the class graph, one report per pair).
 */
describe('lockdep against a reference model', () => {
  const pool: [LockClass, number][] = [
    [LOCK_CLASS.domctl, 0],
    [LOCK_CLASS.grant, 1],
    [LOCK_CLASS.grant, 2],
    [LOCK_CLASS.active, 1],
    [LOCK_CLASS.p2m, 1],
    [LOCK_CLASS.p2m, 2],
    [LOCK_CLASS.page_alloc, 1],
    [LOCK_CLASS.page_alloc, 2],
    [LOCK_CLASS.heap, 0],
    [LOCK_CLASS.log, 0],
    [TEST_A, 0],
    [TEST_B, 0],
  ];

  function model(steps: [boolean, number][]): { reports: string[]; checks: number } {
    const edges = new Set<string>();
    const reported = new Set<string>();
    const reports: string[] = [];
    const held: number[] = [];
    let checks = 0;
    const reachable = (from: number, to: number): boolean => {
      const seen = new Set<number>([from]);
      const stack = [from];
      while (stack.length > 0) {
        const a = stack.pop() as number;
        if (a === to) return true;
        for (const e of edges) {
          const [x, y] = e.split(',').map(Number) as [number, number];
          if (x === a && !seen.has(y)) {
            seen.add(y);
            stack.push(y);
          }
        }
      }
      return false;
    };
    const once = (key: string, text: string): void => {
      if (reported.has(key)) return;
      reported.add(key);
      reports.push(text);
    };
    for (const [isLock, pick] of steps) {
      const free = pool.map((_, i) => i).filter((i) => !held.includes(i));
      if (isLock && free.length > 0 && held.length < MAX_HELD_LOCKS) {
        const i = free[pick % free.length] as number;
        const [c, key] = pool[i] as [LockClass, number];
        const ci = lockClassInfo(c);
        checks++;
        for (const j of held) {
          const [h, hk] = pool[j] as [LockClass, number];
          const hi = lockClassInfo(h);
          if (h === c) {
            if (ci.nest === 'ordered' && key > hk) continue;
            once(`nest ${c}`, `${ci.nest === 'ordered' ? 'nest_order' : 'nest_never'} ${ci.name}`);
          } else if (!edges.has(`${h},${c}`)) {
            edges.add(`${h},${c}`);
            if (hi.rank > ci.rank) once(`rank ${h},${c}`, `rank ${hi.name}>${ci.name}`);
            if (reachable(c, h)) once(`inv ${Math.min(h, c)},${Math.max(h, c)}`, `inversion ${[hi.name, ci.name].sort().join('<->')}`);
          }
        }
        held.push(i);
      } else if (held.length > 0) {
        held.splice(pick % held.length, 1);
      }
    }
    return { reports, checks };
  }

  function real(steps: [boolean, number][]): { reports: string[]; checks: number } {
    const { space, log } = makeSpace(pool.length, true);
    const ids = pool.map(([c]) => space.alloc(c));
    const held: number[] = [];
    for (const [isLock, pick] of steps) {
      const free = pool.map((_, i) => i).filter((i) => !held.includes(i));
      if (isLock && free.length > 0 && held.length < MAX_HELD_LOCKS) {
        const i = free[pick % free.length] as number;
        space.lock(ids[i] as LockId, `step:${i}`, pool[i]?.[1] ?? 0);
        held.push(i);
      } else if (held.length > 0) {
        const [i] = held.splice(pick % held.length, 1);
        space.unlock(ids[i as number] as LockId);
      }
    }
    for (const i of held) space.unlock(ids[i] as LockId);
    const reports = lockOrderTexts(log).map((t) => {
      const m = /^(\w+) ([^:]+):/.exec(t);
      if (m === null) return `unparsed: ${t}`;
      const [, kind, pair] = m as unknown as [string, string, string];
      return kind === 'inversion' ? `inversion ${pair.split('<->').sort().join('<->')}` : `${kind} ${pair}`;
    });
    return { reports, checks: log.counts().lock_order.checks };
  }

  it('reports exactly what the model predicts', () => {
    const seed = seedFromEnv();
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat(1000)), { maxLength: 60 }), (steps) => {
        const want = model(steps);
        const got = real(steps);
        expect(got.checks).toBe(want.checks);
        expect([...got.reports].sort()).toEqual([...want.reports].sort());
      }),
      { seed, numRuns: 300 },
    );
  });
});
