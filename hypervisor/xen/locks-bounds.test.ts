/**
 * LockSpace on one thread, fast (docs/verification.md §8, `MUTATE=locks`):
 * every LockFault kind, the region's header and bounds, the lock word and
 * owner word a lock/tryLock/unlock leaves, the futex slow path driven by a
 * scheduler that releases the lock at a chosen step, the held stack and its
 * stash, and lockdep's edges, sites, reports and site slab — two LockSpaces
 * over one region stand for two threads. locks.test.ts's real-thread tests
 * load locks.ts compiled (tests/workers), so they cannot see a mutated source.
 *
 * Where a test builds a corrupt region it writes the words itself: the
 * layout below mirrors the comment at the top of locks.ts, and the first
 * test checks it against LockSpace.bytes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LOCKDEP_SITE_SLAB_BYTES, MAX_HELD_LOCKS, MAX_LOCK_CLASSES, SPIN_BEFORE_WAIT } from '../layout/constants.js';
import { InvariantLog } from '../layout/invariants.js';
import { freezeLockClasses, lockClassCount, lockClassInfo } from './lock-classes.js';
import { realSched, setSched, type Sched } from './platform.js';
import {
  LOCK_CLASS,
  LockFault,
  LockSpace,
  TEST_A,
  TEST_B,
  lockClassOf,
  lockdepReport,
  setThreadTag,
  threadTag,
  type LockClass,
  type LockFaultKind,
  type LockId,
} from './locks.js';

// ---- the region's layout, as locks.ts documents it ----------------------------
const C = MAX_LOCK_CLASSES;
const H_MAGIC = 0;
const H_NLOCKS = 1;
const H_CLASS_FP = 2;
const H_NCLASSES = 3;
const H_NEXT_LOCK = 4;
const H_SLAB_NEXT = 5;
const H_EDGES = 6;
const H_SITES_LOST = 7;
const EDGES_AT = 8;
const REPORTED_AT = EDGES_AT + C * C;
const SLAB_AT = REPORTED_AT + C * C;
const LOCKS_AT = SLAB_AT + LOCKDEP_SITE_SLAB_BYTES / 4;
const L_STATE = 0;
const L_CLASS = 1;
const L_OWNER = 2;
const L_CONTENDED = 3;
const lockWord = (id: number, field: number): number => LOCKS_AT + id * 4 + field;
const edgeWord = (h: LockClass, c: LockClass): number => EDGES_AT + h * C + c;

const mainTag = threadTag();
afterEach(() => {
  setThreadTag(mainTag);
  setSched(realSched);
});

interface Space {
  space: LockSpace;
  log: InvariantLog;
  words: Int32Array;
  sab: SharedArrayBuffer;
}

function makeSpace(nlocks: number, checking = true, sab = new SharedArrayBuffer(LockSpace.bytes(nlocks)), log = new InvariantLog(new SharedArrayBuffer(InvariantLog.bytes()))): Space {
  return { space: new LockSpace(sab, log, { checking, testClasses: true }), log, words: new Int32Array(sab), sab };
}

/** A second thread's view of the same region and log. */
function otherThread(s: Space, checking = true): LockSpace {
  return new LockSpace(s.sab, s.log, { checking, testClasses: true });
}

function fault(f: () => unknown): LockFault {
  try {
    f();
  } catch (e) {
    if (e instanceof LockFault) return e;
    throw e;
  }
  throw new Error('no LockFault thrown');
}

function expectFault(f: () => unknown, kind: LockFaultKind, message: string | RegExp): void {
  const e = fault(f);
  expect(e.kind).toBe(kind);
  expect(e.name).toBe('LockFault');
  if (typeof message === 'string') expect(e.message).toBe(message);
  else expect(e.message).toMatch(message);
}

const texts = (log: InvariantLog): string[] => log.records().filter((r) => r.invariant === 'lock_order').map((r) => r.text);
const checks = (log: InvariantLog): number => log.counts().lock_order.checks;

/** A scheduler that records what the slow path asks of it; `onRelax` / `onWait` act as the other thread. */
function fakeSched(hooks: { onRelax?: (i: number) => void; onWait?: () => void }): { sched: Sched; relaxed: number[]; waits: [number, number, number][]; wakes: [number, number][] } {
  const relaxed: number[] = [];
  const waits: [number, number, number][] = [];
  const wakes: [number, number][] = [];
  const sched: Sched = {
    relax(i) {
      relaxed.push(i);
      hooks.onRelax?.(i);
    },
    wait(_w, index, expected, timeout_ms) {
      waits.push([index, expected, timeout_ms]);
      if (waits.length > 3) throw new Error('fakeSched: the lock never became free');
      hooks.onWait?.();
      return true;
    },
    wake(_w, index, count) {
      wakes.push([index, count]);
    },
    yield() {},
    now_us: () => 0,
    charge() {},
  };
  return { sched, relaxed, waits, wakes };
}

describe('the region: size, header, bounds', () => {
  it('LockSpace.bytes is the documented layout, and refuses a count that is not a positive integer', () => {
    expect(LockSpace.bytes(1)).toBe((LOCKS_AT + 4) * 4);
    expect(LockSpace.bytes(3) - LockSpace.bytes(2)).toBe(16);
    for (const n of [0, -1, 1.5, Number.NaN]) expect(() => LockSpace.bytes(n)).toThrow(`LockSpace.bytes: nlocks ${n} must be a positive integer`);
  });

  it('the constructor writes the header once, and every later one compares it', () => {
    const a = makeSpace(3);
    expect(a.space.nlocks).toBe(3);
    expect(a.space.checking).toBe(true);
    expect(a.words[H_MAGIC]).toBe(0x4b4c4758);
    expect(a.words[H_NLOCKS]).toBe(3);
    expect(a.words[H_CLASS_FP]).toBe(freezeLockClasses());
    expect(a.words[H_NCLASSES]).toBe(lockClassCount());
    const b = otherThread(a, false);
    expect(b.checking).toBe(false);
    expect(b.nlocks).toBe(3);

    const cases: [number, string][] = [
      [H_MAGIC, 'magic (not a lock region)'],
      [H_NLOCKS, 'lock count'],
      [H_CLASS_FP, 'lock class table (lock-classes.ts differs between threads)'],
      [H_NCLASSES, 'lock class count'],
    ];
    for (const [at, what] of cases) {
      const sab = new SharedArrayBuffer(LockSpace.bytes(2));
      const words = new Int32Array(sab);
      const mine = [0x4b4c4758, 2, freezeLockClasses(), lockClassCount()][at] as number;
      words[at] = mine + 1;
      expectFault(() => makeSpace(2, true, sab), 'config', `LockSpace: ${what}: region has ${mine + 1}, this thread has ${mine}`);
    }
  });

  it('a region that is not LockSpace.bytes(n), and options.checking not a boolean, are config faults', () => {
    const log = new InvariantLog(new SharedArrayBuffer(InvariantLog.bytes()));
    const header = LockSpace.bytes(1) - 16;
    for (const size of [header, header - 4, LockSpace.bytes(1) + 4, LockSpace.bytes(2) - 8]) {
      expectFault(() => new LockSpace(new SharedArrayBuffer(size), log, { checking: true }), 'config', `LockSpace: region of ${size} bytes is not LockSpace.bytes(n) for any n`);
    }
    expect(new LockSpace(new SharedArrayBuffer(header + 16), log, { checking: true }).nlocks).toBe(1);
    expectFault(() => new LockSpace(new SharedArrayBuffer(LockSpace.bytes(1)), log, { checking: 1 as unknown as boolean }), 'config', 'LockSpace: options.checking must be a boolean');
  });

  it('alloc: dense ids, the class word, test-only classes, a full region, a lock word not free', () => {
    const s = makeSpace(3);
    expect(s.space.allocated()).toBe(0);
    expect(s.space.alloc(LOCK_CLASS.heap)).toBe(0);
    expect(s.space.alloc(TEST_B)).toBe(1);
    expect(s.space.allocated()).toBe(2);
    expect(s.words[lockWord(0, L_CLASS)]).toBe(LOCK_CLASS.heap + 1);
    expect(s.space.classOf(1 as LockId)).toBe(TEST_B);
    expect(lockClassOf(s.space, 0 as LockId).name).toBe('heap');
    // Lock 2's word taken before it is handed out: the region is corrupt.
    s.words[lockWord(2, L_STATE)] = 1;
    expectFault(() => s.space.alloc(LOCK_CLASS.log), 'corrupt', 'alloc: lock 2 is not free');
    expect(s.words[lockWord(2, L_CLASS)]).toBe(0);
    // The full region gives its id back: the count stays at nlocks.
    expectFault(() => s.space.alloc(LOCK_CLASS.log), 'config', 'alloc(log): all 3 locks of the region are allocated');
    expect(s.words[H_NEXT_LOCK]).toBe(3);
    expect(s.space.allocated()).toBe(3);

    const plain = new LockSpace(new SharedArrayBuffer(LockSpace.bytes(1)), s.log, { checking: false });
    expectFault(() => plain.alloc(TEST_A), 'config', 'alloc(TEST_A): test-only class; build the LockSpace with testClasses: true');
    expect(plain.allocated()).toBe(0);
    expect(plain.alloc(LOCK_CLASS.log)).toBe(0);
  });

  it('classOf and the checker refuse a lock that is not allocated or out of range', () => {
    const s = makeSpace(3);
    const a = s.space.alloc(TEST_A);
    expectFault(() => s.space.classOf(1 as LockId), 'bad_lock', 'lock 1: not an allocated lock of this region (1 allocated)');
    expectFault(() => s.space.classOf(7 as LockId), 'bad_lock', 'lock 7: not an allocated lock of this region (1 allocated)');
    // The class word's bounds: 1..nclasses.
    s.words[lockWord(1, L_CLASS)] = lockClassCount();
    expect(s.space.classOf(1 as LockId)).toBe(lockClassCount() - 1);
    s.words[lockWord(1, L_CLASS)] = lockClassCount() + 1;
    expectFault(() => s.space.classOf(1 as LockId), 'bad_lock', /^lock 1: not an allocated lock/);
    s.words[lockWord(1, L_CLASS)] = -1;
    expectFault(() => s.space.lock(1 as LockId, 'neg'), 'bad_lock', /^lock 1: not an allocated lock/);
    for (const id of [-1, 3, 1.5]) {
      expectFault(() => s.space.lock(id as LockId, 'x'), 'bad_lock', `lock id ${id} out of range 0..2`);
      expectFault(() => s.space.tryLock(id as LockId, 'x'), 'bad_lock', `lock id ${id} out of range 0..2`);
    }
    expectFault(() => s.space.tryLock(2 as LockId, 'x'), 'bad_lock', /^lock 2: not an allocated lock/);
    expect(s.space.isHeld(a)).toBe(false);
    expect(s.space.heldCount()).toBe(0);
    // Nothing was taken, so nothing was checked.
    expect(checks(s.log)).toBe(0);
  });
});

describe('the lock word and the owner word', () => {
  for (const checking of [false, true]) {
    it(`lock, tryLock and unlock leave state and owner as documented (checking ${checking})`, () => {
      const s = makeSpace(2, checking);
      const a = s.space.alloc(TEST_A);
      const b = s.space.alloc(TEST_B);
      setThreadTag(77);
      s.space.lock(a, 'a');
      expect([s.words[lockWord(0, L_STATE)], s.words[lockWord(0, L_OWNER)]]).toEqual([1, 77]);
      expect(s.space.isHeld(a)).toBe(true);
      expect(s.space.isHeld(b)).toBe(false);
      expect(s.space.heldByMe(a)).toBe(true);
      expect(s.space.heldByMe(b)).toBe(false);
      s.space.assertHeld(a);
      expectFault(() => s.space.assertHeld(b), 'not_held', 'assertHeld(TEST_B#1): not held by thread 77');
      expect(s.space.tryLock(b, 'b')).toBe(true);
      expect([s.words[lockWord(1, L_STATE)], s.words[lockWord(1, L_OWNER)]]).toEqual([1, 77]);
      expect(s.space.heldCount()).toBe(checking ? 2 : 0);
      expect(checks(s.log)).toBe(checking ? 2 : 0);
      // A failed tryLock: counted as a check, nothing pushed, nothing changed.
      setThreadTag(78);
      expect(s.space.tryLock(a, 'again')).toBe(false);
      expect(s.words[lockWord(0, L_OWNER)]).toBe(77);
      expect(s.space.heldCount()).toBe(checking ? 2 : 0);
      expect(checks(s.log)).toBe(checking ? 3 : 0);
      expectFault(() => s.space.unlock(a), 'not_held', 'unlock(TEST_A#0): not held by thread 78 (owner 77)');
      setThreadTag(77);
      s.space.unlock(a);
      s.space.unlock(b);
      expect([s.words[lockWord(0, L_STATE)], s.words[lockWord(0, L_OWNER)], s.words[lockWord(1, L_STATE)], s.words[lockWord(1, L_OWNER)]]).toEqual([0, 0, 0, 0]);
      expect(s.space.heldCount()).toBe(0);
      expect(s.space.contended(a)).toBe(0);
      expectFault(() => s.space.unlock(a), 'not_held', 'unlock(TEST_A#0): not held by thread 77 (owner 0)');
      // Past the region: no owner word at all, no class to name.
      expectFault(() => s.space.unlock(9 as LockId), 'not_held', 'unlock(#9): not held by thread 77 (owner ?)');
    });
  }

  it('unlock of a lock word neither held nor contended is corrupt; the lock is left free', () => {
    for (const bad of [0, 3]) {
      const s = makeSpace(1, false);
      const a = s.space.alloc(TEST_A);
      s.space.lock(a, 'a');
      s.words[lockWord(0, L_STATE)] = bad;
      expectFault(() => s.space.unlock(a), 'corrupt', `unlock(TEST_A#0): lock word was ${bad}`);
      expect(s.words[lockWord(0, L_STATE)]).toBe(0);
      expect(s.words[lockWord(0, L_OWNER)]).toBe(0);
    }
  });

  it('the owner word says this thread but the held stack does not: corrupt', () => {
    const s = makeSpace(2, false);
    const a = s.space.alloc(TEST_A);
    s.space.lock(a, 'unchecked');
    const checker = otherThread(s, true);
    expectFault(() => checker.unlock(a), 'corrupt', 'unlock(TEST_A#0): owner word says this thread, held stack disagrees');
    s.space.unlock(a);
    // The same with another lock on the checker's stack: that one is not taken off instead.
    const b = s.space.alloc(TEST_B);
    checker.lock(b, 'checked');
    s.space.lock(a, 'unchecked');
    expectFault(() => checker.unlock(a), 'corrupt', 'unlock(TEST_A#0): owner word says this thread, held stack disagrees');
    expect(checker.heldCount()).toBe(1);
    expect([...checker.stashHeld().lock]).toEqual([b]);
  });

  it('a lock with no class is named by its id alone in a fault', () => {
    const s = makeSpace(3);
    s.space.alloc(TEST_A);
    setThreadTag(4);
    // Lock 1 not allocated (class word 0); lock 2's class word one past the table, then the last class.
    expectFault(() => s.space.assertHeld(1 as LockId), 'not_held', 'assertHeld(#1): not held by thread 4');
    s.words[lockWord(2, L_CLASS)] = lockClassCount() + 1;
    expectFault(() => s.space.assertHeld(2 as LockId), 'not_held', 'assertHeld(#2): not held by thread 4');
    s.words[lockWord(2, L_CLASS)] = lockClassCount();
    const last = lockClassInfo((lockClassCount() - 1) as LockClass).name;
    expectFault(() => s.space.assertHeld(2 as LockId), 'not_held', `assertHeld(${last}#2): not held by thread 4`);
  });

  it('setThreadTag takes 1..2^31-1 only', () => {
    for (const t of [0, -1, 1.5, 0x80000000, Number.NaN]) {
      expect(() => setThreadTag(t)).toThrow(`setThreadTag: tag ${t} must be an integer in 1..2^31-1 (0 means "no owner")`);
      expect(threadTag()).toBe(mainTag);
    }
    setThreadTag(1);
    expect(threadTag()).toBe(1);
    setThreadTag(0x7fffffff);
    expect(threadTag()).toBe(0x7fffffff);
  });

  it('a second lock by the holder is recursive, with the site it was taken at', () => {
    const s = makeSpace(1);
    const a = s.space.alloc(TEST_A);
    setThreadTag(5);
    s.space.lock(a, 'first');
    expectFault(() => s.space.lock(a, 'second'), 'recursive', "lock(TEST_A#0) at 'second': already held by this thread since 'first'; it would deadlock");
    const plain = otherThread(s, false);
    expectFault(() => plain.lock(a, 'second'), 'recursive', 'lock(TEST_A#0): already held by this thread (5); it would deadlock');
    // The unchecked one found it in the slow path before counting itself a waiter.
    expect(s.space.contended(a)).toBe(0);
    expect(s.space.heldCount()).toBe(1);
    s.space.unlock(a);
  });

  it('MAX_HELD_LOCKS: tryLock takes the last place, then tryLock and lock refuse one more before touching it', () => {
    const s = makeSpace(MAX_HELD_LOCKS + 1);
    const ids = Array.from({ length: MAX_HELD_LOCKS + 1 }, () => s.space.alloc(LOCK_CLASS.p2m));
    ids.slice(0, MAX_HELD_LOCKS - 1).forEach((id, i) => s.space.lock(id, 'many', i));
    expect(s.space.tryLock(ids[MAX_HELD_LOCKS - 1] as LockId, 'the last place', MAX_HELD_LOCKS - 1)).toBe(true);
    expect(s.space.heldCount()).toBe(MAX_HELD_LOCKS);
    const last = ids[MAX_HELD_LOCKS] as LockId;
    const text = `lock(p2m#${MAX_HELD_LOCKS}) at 'one-too-many': thread ${mainTag} already holds MAX_HELD_LOCKS (${MAX_HELD_LOCKS})`;
    expectFault(() => s.space.tryLock(last, 'one-too-many', MAX_HELD_LOCKS), 'too_many_held', text);
    expectFault(() => s.space.lock(last, 'one-too-many', MAX_HELD_LOCKS), 'too_many_held', text);
    expect(s.space.isHeld(last)).toBe(false);
    expect(checks(s.log)).toBe(MAX_HELD_LOCKS);
    for (const id of ids.slice(0, MAX_HELD_LOCKS)) s.space.unlock(id);
    expect(s.log.totalViolations()).toBe(0);
  });
});

describe('the slow path (futex steps 2–4 of docs/locks.md), driven by a scheduler', () => {
  it('a lock freed during the spin is taken at once, HELD, one slow-path entry counted', () => {
    const s = makeSpace(1, false);
    const a = s.space.alloc(TEST_A);
    setThreadTag(2);
    s.space.lock(a, 'other thread');
    setThreadTag(1);
    const f = fakeSched({
      onRelax: (i) => {
        if (i !== 3) return;
        setThreadTag(2);
        s.space.unlock(a);
        setThreadTag(1);
      },
    });
    setSched(f.sched);
    s.space.lock(a, 'me');
    expect(f.relaxed).toEqual([0, 1, 2, 3]);
    expect(f.waits).toEqual([]);
    expect([s.words[lockWord(0, L_STATE)], s.words[lockWord(0, L_OWNER)]]).toEqual([1, 1]);
    expect(s.space.contended(a)).toBe(1);
    s.space.unlock(a);
    expect(f.wakes).toEqual([]);
  });

  it('a lock still held after SPIN_BEFORE_WAIT spins: CONTENDED, a wait on the word, and a wake at unlock', () => {
    // Lock 1 of two, so that its words are not the first of the table.
    const s = makeSpace(2, false);
    const other = s.space.alloc(TEST_B);
    const a = s.space.alloc(TEST_A);
    setThreadTag(2);
    s.space.lock(a, 'other thread');
    setThreadTag(1);
    let before = -1;
    const f = fakeSched({
      onWait: () => {
        before = s.words[lockWord(1, L_STATE)] as number;
        // The holder's unlock: its exchange sees CONTENDED and wakes one waiter.
        setThreadTag(2);
        s.space.unlock(a);
        setThreadTag(1);
      },
    });
    setSched(f.sched);
    s.space.lock(a, 'me');
    expect(f.relaxed).toEqual(Array.from({ length: SPIN_BEFORE_WAIT }, (_, i) => i));
    expect(before).toBe(2);
    expect(f.waits).toEqual([[lockWord(1, L_STATE), 2, Infinity]]);
    expect(f.wakes).toEqual([[lockWord(1, L_STATE), 1]]);
    // Taken by the exchange that saw FREE: CONTENDED, conservatively.
    expect([s.words[lockWord(1, L_STATE)], s.words[lockWord(1, L_OWNER)]]).toEqual([2, 1]);
    expect(s.space.isHeld(a)).toBe(true);
    expect(s.space.isHeld(other)).toBe(false);
    expect(s.space.contended(a)).toBe(1);
    expect(s.space.contended(other)).toBe(0);
    s.space.unlock(a);
    expect(f.wakes).toEqual([[lockWord(1, L_STATE), 1], [lockWord(1, L_STATE), 1]]);
    expect(s.words[lockWord(1, L_STATE)]).toBe(0);
    expect(s.space.isHeld(a)).toBe(false);
  });

  it('tryLock of a held lock does not enter the slow path', () => {
    const s = makeSpace(1, false);
    const a = s.space.alloc(TEST_A);
    setThreadTag(2);
    s.space.lock(a, 'other thread');
    setThreadTag(1);
    const f = fakeSched({});
    setSched(f.sched);
    expect(s.space.tryLock(a, 'me')).toBe(false);
    expect(f.relaxed).toEqual([]);
    expect(s.space.contended(a)).toBe(0);
    expect(s.words[lockWord(0, L_CONTENDED)]).toBe(0);
  });
});

describe('the held stack: release in any order, stash and unstash', () => {
  it('unlocking from the middle keeps the rest in order, with their classes, keys and sites', () => {
    const s = makeSpace(4);
    const ids = [LOCK_CLASS.grant, LOCK_CLASS.p2m, LOCK_CLASS.p2m, LOCK_CLASS.heap].map((c) => s.space.alloc(c));
    const [g, p1, p2, h] = ids as [LockId, LockId, LockId, LockId];
    s.space.lock(g, 'site:g', 4);
    s.space.lock(p1, 'site:p1', 1);
    s.space.lock(p2, 'site:p2', 2);
    s.space.lock(h, 'site:h');
    s.space.unlock(p1);
    const st = s.space.stashHeld();
    expect(s.space.heldCount()).toBe(0);
    expect([...st.lock]).toEqual([g, p2, h]);
    expect([...st.cls]).toEqual([LOCK_CLASS.grant, LOCK_CLASS.p2m, LOCK_CLASS.heap]);
    expect([...st.key]).toEqual([4, 2, 0]);
    expect(st.site).toEqual(['site:g', 'site:p2', 'site:h']);
    s.space.unstashHeld(st);
    expect(s.space.heldCount()).toBe(3);
    s.space.unlock(h);
    s.space.unlock(g);
    const last = s.space.stashHeld();
    expect([...last.lock]).toEqual([p2]);
    expect(last.site).toEqual(['site:p2']);
    s.space.unstashHeld(last);
    s.space.unlock(p2);
    expect(s.space.heldCount()).toBe(0);
    expect(s.space.stashHeld().lock.length).toBe(0);
    expect(s.log.totalViolations()).toBe(0);
  });

  it('a stashed stack is not held by the operation run in between, and comes back with its sites and keys', () => {
    const s = makeSpace(4);
    const heap = s.space.alloc(LOCK_CLASS.heap);
    const p2m = s.space.alloc(LOCK_CLASS.p2m);
    const pa1 = s.space.alloc(LOCK_CLASS.page_alloc);
    const pa2 = s.space.alloc(LOCK_CLASS.page_alloc);
    s.space.lock(pa2, 'mine:pa2', 2);
    s.space.lock(heap, 'mine:heap');
    const st = s.space.stashHeld();
    // Another vCPU's operation: p2m and page_alloc with nothing held, no edge from heap.
    s.space.lock(p2m, 'other:p2m', 1);
    expectFault(() => s.space.unstashHeld(st), 'not_held', 'unstashHeld: the operation run in between left 1 lock(s) held');
    s.space.unlock(p2m);
    s.space.lock(pa1, 'other:pa1', 1);
    s.space.unlock(pa1);
    expect(s.space.edges().map((e) => `${e.from}->${e.to}`)).toEqual(['page_alloc->heap']);
    expect(s.log.totalViolations()).toBe(0);
    s.space.unstashHeld(st);
    expect(s.space.heldCount()).toBe(2);
    // Back: the stashed page_alloc key 2 is held again, so key 1 is out of order, reported with the stashed
    // site; and under the stashed heap it is a rank violation and the inversion of page_alloc->heap.
    s.space.lock(pa1, 'again:pa1', 1);
    expect(texts(s.log)).toEqual([
      "nest_order page_alloc: key 1 at 'again:pa1' while holding key 2 from 'mine:pa2'; same-class locks go in ascending key (domid) order",
      "rank heap>page_alloc: page_alloc (rank 80) at 'again:pa1' while holding heap (rank 90) from 'mine:heap'",
      "inversion heap<->page_alloc: heap->page_alloc at 'again:pa1' vs page_alloc->heap at 'mine:heap' [held from 'mine:heap', 'mine:pa2']",
    ]);
    for (const id of [pa1, heap, pa2]) s.space.unlock(id);
  });
});

describe('lockdep: edges, reports, sites', () => {
  it('A→B on one thread, B→A on another: one rank report, one inversion, the edges and their sites', () => {
    const s = makeSpace(2);
    const a = s.space.alloc(TEST_A);
    const b = s.space.alloc(TEST_B);
    expect(lockdepReport(s.space)).toBe('lockdep: no edges recorded');
    const t1 = otherThread(s);
    const t2 = otherThread(s);
    t1.lock(a, 't1:A');
    t1.lock(b, 't1:B');
    t1.unlock(b);
    t1.unlock(a);
    expect(texts(s.log)).toEqual([]);
    expect(s.words[H_EDGES]).toBe(1);
    t2.lock(b, 't2:B');
    t2.lock(a, 't2:A');
    t2.unlock(a);
    t2.unlock(b);
    expect(texts(s.log)).toEqual([
      "rank TEST_B>TEST_A: TEST_A (rank 1000) at 't2:A' while holding TEST_B (rank 1001) from 't2:B'",
      "inversion TEST_B<->TEST_A: TEST_B->TEST_A at 't2:A' vs TEST_A->TEST_B at 't1:B' [held from 't2:B', 't1:A']",
    ]);
    expect(s.words[H_EDGES]).toBe(2);
    expect(s.space.edges()).toEqual([
      { from: 'TEST_A', to: 'TEST_B', acquiredAt: 't1:B', heldFrom: 't1:A' },
      { from: 'TEST_B', to: 'TEST_A', acquiredAt: 't2:A', heldFrom: 't2:B' },
    ]);
    expect(lockdepReport(s.space)).toBe(
      [
        'lockdep: 2 edge(s)',
        "  TEST_A -> TEST_B: TEST_B taken at 't1:B' holding TEST_A from 't1:A'",
        "  TEST_B -> TEST_A: TEST_A taken at 't2:A' holding TEST_B from 't2:B'",
      ].join('\n'),
    );
    // A third thread doing both: the edges exist, nothing is written or reported again.
    const slab = s.words[H_SLAB_NEXT];
    const t3 = otherThread(s);
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      t3.lock(x, 't3:first');
      t3.lock(y, 't3:second');
      t3.unlock(y);
      t3.unlock(x);
    }
    expect(texts(s.log)).toHaveLength(2);
    expect(s.words[H_EDGES]).toBe(2);
    expect(s.words[H_SLAB_NEXT]).toBe(slab);
    expect(s.words[H_SITES_LOST]).toBe(0);
    expect(checks(s.log)).toBe(8);
  });

  it('an inversion found through a path with a dead end names every reverse edge', () => {
    const s = makeSpace(4);
    const [dom, reg, ioreq, grant] = [LOCK_CLASS.domctl, LOCK_CLASS.registry, LOCK_CLASS.ioreq_server, LOCK_CLASS.grant].map((c) => s.space.alloc(c)) as [LockId, LockId, LockId, LockId];
    const pair = (x: LockId, y: LockId, site: string): void => {
      s.space.lock(x, `${site}:held`);
      s.space.lock(y, `${site}:taken`);
      s.space.unlock(y);
      s.space.unlock(x);
    };
    pair(reg, grant, 'r-g'); // a dead end: grant leads nowhere
    pair(reg, ioreq, 'r-i');
    pair(ioreq, dom, 'i-d');
    expect(texts(s.log)).toEqual(["rank ioreq_server>domctl: domctl (rank 10) at 'i-d:taken' while holding ioreq_server (rank 30) from 'i-d:held'"]);
    pair(dom, reg, 'd-r');
    expect(texts(s.log).slice(1)).toEqual([
      "inversion domctl<->registry: domctl->registry at 'd-r:taken' vs registry->ioreq_server at 'r-i:taken', ioreq_server->domctl at 'i-d:taken' [held from 'd-r:held', 'r-i:held']",
    ]);
    // grant->domctl closes a second cycle through the first: reported for its own pair.
    pair(grant, dom, 'g-d');
    expect(texts(s.log).slice(2)).toEqual([
      "rank grant>domctl: domctl (rank 10) at 'g-d:taken' while holding grant (rank 40) from 'g-d:held'",
      "inversion grant<->domctl: grant->domctl at 'g-d:taken' vs domctl->registry at 'd-r:taken', registry->grant at 'r-g:taken' [held from 'g-d:held', 'd-r:held']",
    ]);
  });

  it('rank reports: one per new edge, each pair on its own, none for the documented order', () => {
    const s = makeSpace(3);
    const [p2m, heap, log] = [LOCK_CLASS.p2m, LOCK_CLASS.heap, LOCK_CLASS.log].map((c) => s.space.alloc(c)) as [LockId, LockId, LockId];
    for (let round = 0; round < 2; round++) {
      s.space.lock(log, `log${round}`);
      s.space.lock(heap, `heap${round}`);
      s.space.lock(p2m, `p2m${round}`, 1);
      s.space.unlock(heap);
      s.space.unlock(p2m);
      s.space.unlock(log);
    }
    expect(texts(s.log)).toEqual([
      "rank log>heap: heap (rank 90) at 'heap0' while holding log (rank 100) from 'log0'",
      "rank log>p2m: p2m (rank 70) at 'p2m0' while holding log (rank 100) from 'log0'",
      "rank heap>p2m: p2m (rank 70) at 'p2m0' while holding heap (rank 90) from 'heap0'",
    ]);
    expect(checks(s.log)).toBe(6);
  });

  it('same-class nesting: reported once per class, with both keys and sites; ascending keys of an ordered class are fine', () => {
    const s = makeSpace(6);
    const [g1, g2, p1, p2, a1, a2] = [LOCK_CLASS.grant, LOCK_CLASS.grant, LOCK_CLASS.p2m, LOCK_CLASS.p2m, LOCK_CLASS.active, LOCK_CLASS.active].map((c) => s.space.alloc(c)) as LockId[] as [LockId, LockId, LockId, LockId, LockId, LockId];
    const nest = (x: LockId, kx: number, y: LockId, ky: number): void => {
      s.space.lock(x, `first:${kx}`, kx);
      s.space.lock(y, `second:${ky}`, ky);
      s.space.unlock(x);
      s.space.unlock(y);
    };
    nest(p1, 1, p2, 2);
    nest(p1, 5, p2, 6);
    expect(texts(s.log)).toEqual([]);
    nest(p2, 4, p1, 4);
    nest(p2, 9, p1, 3);
    nest(g2, 1, g1, 7);
    nest(g1, 2, g2, 3);
    nest(a1, 0, a2, 0);
    expect(texts(s.log)).toEqual([
      "nest_order p2m: key 4 at 'second:4' while holding key 4 from 'first:4'; same-class locks go in ascending key (domid) order",
      "nest_never grant: key 7 at 'second:7' while holding key 1 from 'first:1'; this class never nests",
      "nest_never active: key 0 at 'second:0' while holding key 0 from 'first:0'; this class never nests",
    ]);
    // Same-class nesting is no edge.
    expect(s.space.edges()).toEqual([]);
    // A trylock does not judge its own class either.
    s.space.lock(g1, 'held grant', 1);
    expect(s.space.tryLock(g2, 'tried grant', 2)).toBe(true);
    s.space.unlock(g2);
    s.space.unlock(g1);
    expect(texts(s.log)).toHaveLength(3);
  });

  it('sites are clipped to 48 characters in reports and to 120 bytes of whole characters in the slab', () => {
    const s = makeSpace(3);
    const [heap, p2m, log] = [LOCK_CLASS.heap, LOCK_CLASS.p2m, LOCK_CLASS.log].map((c) => s.space.alloc(c)) as [LockId, LockId, LockId];
    const s48 = 'h'.repeat(48);
    const s49 = 'p'.repeat(49);
    s.space.lock(heap, s48);
    s.space.lock(p2m, s49, 1);
    expect(texts(s.log)).toEqual([`rank heap>p2m: p2m (rank 70) at '${'p'.repeat(47)}…' while holding heap (rank 90) from '${s48}'`]);
    const long = `${'x'.repeat(119)}é and more`;
    s.space.lock(log, long);
    for (const id of [log, p2m, heap]) s.space.unlock(id);
    const edges = s.space.edges();
    expect(edges.find((e) => e.from === 'heap' && e.to === 'p2m')).toEqual({ from: 'heap', to: 'p2m', acquiredAt: s49, heldFrom: s48 });
    // 'é' is two bytes; at bytes 119–120 it does not fit, and is not split.
    expect(edges.find((e) => e.from === 'p2m' && e.to === 'log')?.acquiredAt).toBe('x'.repeat(119));
    // Two lengths (u16 each) and the bytes: 48 + 49, then 119 + 49, then 119 + 48.
    expect(s.words[H_SLAB_NEXT]).toBe(4 + 48 + 49 + 4 + 119 + 49 + 4 + 119 + 48);
  });

  it('a full site slab: edges are still recorded and judged, without sites', () => {
    const s = makeSpace(3);
    const [a, b] = [TEST_A, TEST_B].map((c) => s.space.alloc(c)) as [LockId, LockId];
    // Room for exactly one record of 4 + 2 + 2 bytes.
    s.words[H_SLAB_NEXT] = LOCKDEP_SITE_SLAB_BYTES - 8;
    s.space.lock(a, 'a1');
    s.space.lock(b, 'b1');
    s.space.unlock(b);
    s.space.unlock(a);
    expect(s.words[edgeWord(TEST_A, TEST_B)]).toBe(LOCKDEP_SITE_SLAB_BYTES - 8 + 1);
    expect(s.words[H_SITES_LOST]).toBe(0);
    s.space.lock(b, 'b2');
    s.space.lock(a, 'a2');
    s.space.unlock(a);
    s.space.unlock(b);
    expect(s.words[edgeWord(TEST_B, TEST_A)]).toBe(-1);
    expect(s.words[H_SITES_LOST]).toBe(1);
    expect(s.words[H_EDGES]).toBe(2);
    expect(s.space.edges()).toEqual([
      { from: 'TEST_A', to: 'TEST_B', acquiredAt: 'b1', heldFrom: 'a1' },
      { from: 'TEST_B', to: 'TEST_A', acquiredAt: '(site slab full)', heldFrom: '(site slab full)' },
    ]);
    expect(texts(s.log)[1]).toBe("inversion TEST_B<->TEST_A: TEST_B->TEST_A at 'a2' vs TEST_A->TEST_B at 'b1' [held from 'b2', 'a1']");
  });

  it('an edge word or slab record out of bounds is corrupt', () => {
    const s = makeSpace(1);
    const slab = new Uint8Array(s.sab, SLAB_AT * 4, LOCKDEP_SITE_SLAB_BYTES);
    const at = edgeWord(TEST_A, TEST_B);
    const put = (off: number, la: number, lb: number): void => {
      slab[off] = la & 0xff;
      slab[off + 1] = la >> 8;
      slab[off + 2] = lb & 0xff;
      slab[off + 3] = lb >> 8;
      s.words[at] = off + 1;
    };
    const edge = (): unknown => s.space.edges();
    s.words[at] = -5;
    expectFault(edge, 'corrupt', `edge ${TEST_A}->${TEST_B}: slab offset -6`);
    s.words[at] = LOCKDEP_SITE_SLAB_BYTES - 2;
    expectFault(edge, 'corrupt', `edge ${TEST_A}->${TEST_B}: slab offset ${LOCKDEP_SITE_SLAB_BYTES - 3}`);
    // The last four bytes: a record of two empty sites.
    put(LOCKDEP_SITE_SLAB_BYTES - 4, 0, 0);
    expect(s.space.edges()).toEqual([{ from: 'TEST_A', to: 'TEST_B', acquiredAt: '', heldFrom: '' }]);
    put(LOCKDEP_SITE_SLAB_BYTES - 14, 5, 5);
    slab.set(new TextEncoder().encode('abcdeVWXYZ'), LOCKDEP_SITE_SLAB_BYTES - 10);
    expect(s.space.edges()).toEqual([{ from: 'TEST_A', to: 'TEST_B', acquiredAt: 'abcde', heldFrom: 'VWXYZ' }]);
    put(LOCKDEP_SITE_SLAB_BYTES - 14, 5, 6);
    expectFault(edge, 'corrupt', `edge ${TEST_A}->${TEST_B}: slab record lengths 5/6`);
    put(100, 120, 120);
    expect(s.space.edges()).toHaveLength(1);
    put(100, 121, 0);
    expectFault(edge, 'corrupt', `edge ${TEST_A}->${TEST_B}: slab record lengths 121/0`);
    put(100, 0, 121);
    expectFault(edge, 'corrupt', `edge ${TEST_A}->${TEST_B}: slab record lengths 0/121`);
    put(100, 261, 1);
    expectFault(edge, 'corrupt', `edge ${TEST_A}->${TEST_B}: slab record lengths 261/1`);
    put(100, 1, 258);
    expectFault(edge, 'corrupt', `edge ${TEST_A}->${TEST_B}: slab record lengths 1/258`);
  });

  it('an unchecked space records nothing and counts no checks', () => {
    const s = makeSpace(3, false);
    const [heap, p2m, g] = [LOCK_CLASS.heap, LOCK_CLASS.p2m, LOCK_CLASS.grant].map((c) => s.space.alloc(c)) as [LockId, LockId, LockId];
    s.space.lock(heap, 'heap');
    s.space.lock(p2m, 'p2m');
    expect(s.space.tryLock(g, 'grant')).toBe(true);
    for (const id of [g, p2m, heap]) s.space.unlock(id);
    expect(s.space.edges()).toEqual([]);
    expect(s.log.totalViolations()).toBe(0);
    expect(checks(s.log)).toBe(0);
    expect(s.words[H_SLAB_NEXT]).toBe(0);
  });

  it('each report claims its documented bit and cell, so a pair is reported once even when a second edge closes the cycle', () => {
    const s = makeSpace(6);
    const [reg, ioreq, grant, p1, p2] = [LOCK_CLASS.registry, LOCK_CLASS.ioreq_server, LOCK_CLASS.grant, LOCK_CLASS.p2m, LOCK_CLASS.p2m].map((c) => s.space.alloc(c)) as [LockId, LockId, LockId, LockId, LockId];
    const pair = (x: LockId, y: LockId, site: string): void => {
      s.space.lock(x, `${site}:held`);
      s.space.lock(y, `${site}:taken`);
      s.space.unlock(y);
      s.space.unlock(x);
    };
    const bits = (): number[] => Array.from(s.words.subarray(REPORTED_AT, REPORTED_AT + C * C)).flatMap((v, cell) => (v === 0 ? [] : [cell, v]));
    pair(reg, ioreq, 'r-i');
    pair(ioreq, grant, 'i-g');
    // grant->registry: a rank report (R_RANK, 2, on grant·C+registry) and the inversion of the pair through
    // ioreq_server (R_INVERSION, 1, on registry·C+grant).
    pair(grant, reg, 'g-r');
    const R = LOCK_CLASS.registry;
    const G = LOCK_CLASS.grant;
    expect(bits()).toEqual([R * C + G, 1, G * C + R, 2]);
    // registry->grant is new too, and finds grant->registry: the same pair, not reported again.
    pair(reg, grant, 'r-g');
    expect(texts(s.log)).toEqual([
      "rank grant>registry: registry (rank 20) at 'g-r:taken' while holding grant (rank 40) from 'g-r:held'",
      "inversion grant<->registry: grant->registry at 'g-r:taken' vs registry->ioreq_server at 'r-i:taken', ioreq_server->grant at 'i-g:taken' [held from 'g-r:held', 'r-i:held']",
    ]);
    expect(s.words[H_EDGES]).toBe(4);
    // Same-class nesting: R_NEST, 4, on c·C+c.
    s.space.lock(p2, 'p2', 2);
    s.space.lock(p1, 'p1', 1);
    s.space.unlock(p1);
    s.space.unlock(p2);
    const P = LOCK_CLASS.p2m;
    expect(bits()).toEqual([R * C + G, 1, G * C + R, 2, P * C + P, 4]);
    // A class that never nests: its bit on its own cell as well.
    const g2 = s.space.alloc(LOCK_CLASS.grant);
    s.space.lock(grant, 'g1', 1);
    s.space.lock(g2, 'g2', 2);
    s.space.unlock(g2);
    s.space.unlock(grant);
    expect(bits()).toEqual([R * C + G, 1, G * C + R, 2, G * C + G, 4, P * C + P, 4]);
    expect(texts(s.log)).toHaveLength(4);
  });
});
