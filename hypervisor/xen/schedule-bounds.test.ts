/**
 * The pCPU scheduler's edges on one thread (schedule.ts): pcpuInit's
 * bounds and its fresh run queues, the run-queue lock contended, a queue of
 * three and slot 0 in it (slot + 1 is the link: 0 is "none"), a queue
 * emptied and filled again, credit at exactly one slice (credit2's
 * runq_candidate keeps a unit for less than its rate limit, not for it),
 * the wait and run times, the slice test, and each BUG the scheduler's
 * own invariants raise when a word is corrupted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { MAX_PCPUS, MAX_VCPUS, PCPU_SLICE_US } from '../layout/constants.js';
import { CTL } from '../layout/control.js';
import { STAT, VC } from '../layout/vcpus.js';
import { GLOBAL_LOCK, type Machine } from './machine.js';
import { realSched, setSched } from './platform.js';
import { scripted } from '../../tests/scripted-sched.js';
import { GIVE, pcpuCount, pcpuGive, pcpuInit, pcpuRunqueues, pcpuSliceOver, pcpuTake, pcpuWanted } from './schedule.js';

afterEach(() => setSched(realSched));

/**
 * A machine with `n` pCPUs whose `slots` start with no credit burnt: each takes an idle pCPU (which resets
 * it) and gives it back at once (the scheduler's per-slot times are this thread's, shared by every test).
 */
function fresh(n: number, slots: number[]): Machine {
  const m = testMachine();
  pcpuInit(m, n);
  setSched(scripted());
  for (const v of slots) {
    pcpuTake(m, v);
    pcpuGive(m, v, GIVE.OFFLINE);
  }
  return m;
}

/**
 * Slot 9 takes the one pCPU; then `take` queues behind it under a scheduler whose first wait records the
 * run queues in `seen` and has 9 hand the pCPU over (preempted); then the clock `c` is back.
 */
function behind9(m: Machine, c: ReturnType<typeof scripted>, seen: Array<ReturnType<typeof pcpuRunqueues>>, take: () => void): void {
  pcpuTake(m, 9);
  const s = scripted([
    () => {
      seen.push(pcpuRunqueues(m));
      pcpuGive(m, 9, GIVE.PREEMPT);
    },
  ]);
  s.now = c.now;
  setSched(s);
  take();
  setSched(c);
}

const RUNQ_WORDS = [CTL.RUNQ_LOCK, CTL.RUNQ_LEN, CTL.RUNQ_HEAD, CTL.RUNQ_HEAD + 1, CTL.RUNQ_TAIL, CTL.RUNQ_TAIL + 1];

describe('the pCPU scheduler, edges', () => {
  it('pcpuInit: 0…MAX_PCPUS pCPUs, integers only; it empties the run queues', () => {
    const m = testMachine();
    for (const n of [-1, 1.5, MAX_PCPUS + 1]) expect(() => pcpuInit(m, n)).toThrow(/pcpus must be an integer 0…64/);
    pcpuInit(m, MAX_PCPUS);
    expect(pcpuCount(m)).toBe(MAX_PCPUS);
    for (const k of RUNQ_WORDS) Atomics.store(m.control.w, k, 5);
    pcpuInit(m, 0);
    expect([...RUNQ_WORDS, CTL.PCPU_IDLE, CTL.PCPUS].map((k) => Atomics.load(m.control.w, k))).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('no pCPUs (the OS schedules the vCPU threads): taking and giving do nothing', () => {
    const m = testMachine();
    pcpuInit(m, 0);
    expect(pcpuTake(m, 3)).toBe(0);
    pcpuGive(m, 3);
    pcpuGive(m, 3);
    expect([m.vcpus.at(3, VC.PCPU), m.vcpus.stat(3, STAT.SCHED_RUNS), m.vcpus.stat(3, STAT.SCHED_BLOCKS), Atomics.load(m.control.w, CTL.PCPU_IDLE)]).toEqual([0, 0, 0, 0]);
  });

  it('a vCPU waiting for a pCPU while it holds a lock is a hypervisor bug: those on the pCPUs could spin on it for ever', () => {
    const m = fresh(1, [3]);
    m.lock(GLOBAL_LOCK.DOMCTL, 'test');
    expect(() => pcpuTake(m, 3)).toThrow(/slot 3 waits for a pCPU holding 1 lock\(s\)/);
    m.unlock(GLOBAL_LOCK.DOMCTL);
    pcpuTake(m, 3);
    expect(m.vcpus.at(3, VC.PCPU)).toBe(1);
  });

  it('the run-queue lock: spins (relax 0, 1, …) while another holds it, not at all when free', () => {
    const m = fresh(1, []);
    const s = scripted();
    setSched(s);
    Atomics.store(m.control.w, CTL.RUNQ_LOCK, 1);
    s.onRelax = (i) => {
      if (i === 1) Atomics.store(m.control.w, CTL.RUNQ_LOCK, 0);
    };
    pcpuTake(m, 3);
    expect(s.relaxed).toEqual([0, 1]);
    expect([m.vcpus.at(3, VC.PCPU), Atomics.load(m.control.w, CTL.RUNQ_LOCK)]).toEqual([1, 0]);
    pcpuGive(m, 3);
    expect(s.relaxed).toEqual([0, 1]);
  });

  it('three in the normal queue, slot 0 first: FIFO, each handed a pCPU in turn, one joining behind after a pop; waits and runs timed; the queue emptied and filled again', () => {
    const m = fresh(4, [0, 1, 2, 5, 7, 10, 11, 12, 13]);
    const w = m.control.w;
    for (const v of [10, 11, 12, 13]) pcpuTake(m, v);
    const grant = (v: number): number => m.vcpus.at(v, VC.PCPU_GRANT);
    const seen: Array<ReturnType<typeof pcpuRunqueues>> = [];
    let wanted = false;
    const s = scripted([
      () => pcpuTake(m, 5, false),
      () => pcpuTake(m, 7, false),
      () => {
        seen.push(pcpuRunqueues(m));
        wanted = pcpuWanted(m);
        s.now += 700;
        pcpuGive(m, 10, GIVE.PREEMPT);
        expect([grant(0), grant(5), grant(7), Atomics.load(w, CTL.PCPU_IDLE)]).toEqual([1, 0, 0, 0]);
        // Slot 2 joins the queue that 0 has just left: behind 5 and 7.
        pcpuTake(m, 2, false);
      },
      () => {
        seen.push(pcpuRunqueues(m));
        pcpuGive(m, 11, GIVE.PREEMPT);
        expect([grant(5), grant(7), grant(2)]).toEqual([1, 0, 0]);
      },
      () => pcpuGive(m, 12, GIVE.PREEMPT),
      () => {
        expect([grant(7), grant(2)]).toEqual([1, 0]);
        pcpuGive(m, 13, GIVE.PREEMPT);
      },
    ]);
    setSched(s);
    expect(pcpuTake(m, 0, false)).toBe(700);
    expect(seen).toEqual([
      { boost: [], normal: [0, 5, 7] },
      { boost: [], normal: [5, 7, 2] },
    ]);
    expect(wanted).toBe(true);
    expect([0, 5, 7, 2].map((v) => m.vcpus.at(v, VC.PCPU))).toEqual([1, 1, 1, 1]);
    expect([CTL.PCPU_IDLE, CTL.RUNQ_LEN, CTL.RUNQ_HEAD + 1, CTL.RUNQ_TAIL + 1].map((k) => Atomics.load(w, k))).toEqual([0, 0, 0, 0]);
    expect(pcpuWanted(m)).toBe(false);
    expect([m.vcpus.stat(0, STAT.SCHED_WAIT_US), m.vcpus.stat(0, STAT.SCHED_WAIT_MAX_US)]).toEqual([700, 700]);
    // Four waits in the normal queue (none boosted), four preemptions given.
    expect([0, 5, 7, 2].map((v) => [m.vcpus.stat(v, STAT.SCHED_WAITS), m.vcpus.stat(v, STAT.SCHED_BOOSTS)])).toEqual([
      [1, 0],
      [1, 0],
      [1, 0],
      [1, 0],
    ]);
    expect([10, 11, 12, 13].map((v) => m.vcpus.stat(v, STAT.SCHED_PREEMPTS))).toEqual([1, 1, 1, 1]);
    // Slot 0 runs from the end of its wait: 300 µs, not counting the 700 it waited.
    const ran = m.vcpus.stat(0, STAT.SCHED_RUN_US);
    s.now += 300;
    // The emptied normal queue takes a new waiter (its tail was reset), who gets slot 0's pCPU.
    const t = scripted([() => pcpuGive(m, 0, GIVE.BLOCK)]);
    t.now = s.now;
    setSched(t);
    pcpuTake(m, 1, false);
    expect(m.vcpus.stat(0, STAT.SCHED_RUN_US) - ran).toBe(300);
    expect(m.vcpus.at(1, VC.PCPU)).toBe(1);
  });

  it('woken by default; credit of exactly one slice burnt is none left: the normal queue', () => {
    const m = fresh(1, [3, 4, 9]);
    const c = scripted();
    setSched(c);
    const seen: Array<ReturnType<typeof pcpuRunqueues>> = [];
    const queued = (take: () => void): void => behind9(m, c, seen, take);
    // Slot 4: a slice less 1 µs burnt, woken (the default): boosted.
    pcpuTake(m, 4);
    c.now += PCPU_SLICE_US - 1;
    pcpuGive(m, 4, GIVE.BLOCK);
    queued(() => pcpuTake(m, 4));
    pcpuGive(m, 4, GIVE.BLOCK);
    // Slot 3: exactly a slice.
    pcpuTake(m, 3);
    c.now += PCPU_SLICE_US;
    pcpuGive(m, 3, GIVE.BLOCK);
    queued(() => pcpuTake(m, 3, true));
    pcpuGive(m, 3, GIVE.BLOCK);
    expect(seen).toEqual([
      { boost: [4], normal: [] },
      { boost: [], normal: [3] },
    ]);
    expect([m.vcpus.stat(4, STAT.SCHED_BOOSTS), m.vcpus.stat(3, STAT.SCHED_BOOSTS)]).toEqual([1, 0]);
  });

  it('credit burnt across a boosted wait adds up: two half slices, boosted once, then the normal queue', () => {
    const m = fresh(1, [3, 9]);
    const c = scripted();
    setSched(c);
    const seen: Array<ReturnType<typeof pcpuRunqueues>> = [];
    const through = (v: number): void => behind9(m, c, seen, () => pcpuTake(m, v, true));
    pcpuTake(m, 3);
    c.now += PCPU_SLICE_US / 2 + 1;
    pcpuGive(m, 3, GIVE.BLOCK);
    through(3);
    c.now += PCPU_SLICE_US / 2;
    pcpuGive(m, 3, GIVE.BLOCK);
    through(3);
    expect(seen).toEqual([
      { boost: [3], normal: [] },
      { boost: [], normal: [3] },
    ]);
    // A pCPU taken idle resets the credit: boosted again next time.
    pcpuGive(m, 3, GIVE.BLOCK);
    pcpuTake(m, 3);
    pcpuGive(m, 3, GIVE.BLOCK);
    through(3);
    expect(seen[2]).toEqual({ boost: [3], normal: [] });
    pcpuGive(m, 3, GIVE.OFFLINE);
  });

  it('a vCPU that ran for ages queues behind everyone; queueing there, or taking an idle pCPU, gives it its credit back', () => {
    const m = fresh(1, [3, 9]);
    const c = scripted();
    setSched(c);
    const seen: Array<ReturnType<typeof pcpuRunqueues>> = [];
    const through = (): void => {
      behind9(m, c, seen, () => pcpuTake(m, 3, true));
      pcpuGive(m, 3, GIVE.BLOCK);
    };
    // Far more than the credit any other test (or mutant) may have left in slot 3 on this thread, whatever
    // the clocks they switched between: the queue it joins depends on none of it.
    const run = (us: number): void => {
      pcpuTake(m, 3);
      c.now += us;
      pcpuGive(m, 3, GIVE.BLOCK);
    };
    const runForAges = (): void => run(1e18);
    runForAges();
    through();
    through();
    // Six tenths of a slice, then an idle pCPU taken (credit whole again) and six tenths more: boosted still.
    run(0.6 * PCPU_SLICE_US);
    run(0.6 * PCPU_SLICE_US);
    through();
    expect(seen).toEqual([
      { boost: [], normal: [3] },
      { boost: [3], normal: [] },
      { boost: [3], normal: [] },
    ]);
  });

  it('a pCPU given up to go offline is none of a block, a yield or a preemption', () => {
    const m = fresh(1, [3]);
    pcpuTake(m, 3);
    const before = [STAT.SCHED_BLOCKS, STAT.SCHED_YIELDS, STAT.SCHED_PREEMPTS].map((k) => m.vcpus.stat(3, k));
    pcpuGive(m, 3, GIVE.OFFLINE);
    expect([STAT.SCHED_BLOCKS, STAT.SCHED_YIELDS, STAT.SCHED_PREEMPTS].map((k) => m.vcpus.stat(3, k))).toEqual(before);
  });

  it('pcpuSliceOver: a slice or more since', () => {
    const s = scripted();
    setSched(s);
    expect(pcpuSliceOver(s.now - PCPU_SLICE_US + 1)).toBe(false);
    expect(pcpuSliceOver(s.now - PCPU_SLICE_US)).toBe(true);
    expect(pcpuSliceOver(s.now - PCPU_SLICE_US - 1)).toBe(true);
    expect(pcpuSliceOver(s.now + PCPU_SLICE_US)).toBe(false);
  });

  it('pcpuRunqueues stops after MAX_VCPUS on a corrupted (cyclic) queue', () => {
    const m = fresh(1, []);
    Atomics.store(m.control.w, CTL.RUNQ_HEAD, 4);
    m.vcpus.set(3, VC.RUNQ_NEXT, 4);
    expect(pcpuRunqueues(m).boost).toEqual(Array(MAX_VCPUS).fill(3));
  });

  it("the scheduler's own invariants: each corrupted word is a hypervisor bug with its message", () => {
    let m = fresh(2, [3]);
    pcpuTake(m, 3);
    expect(() => pcpuTake(m, 3)).toThrow(/slot 3 takes a pCPU while holding one/);
    pcpuGive(m, 3);
    expect(() => pcpuGive(m, 3)).toThrow(/slot 3 gives back a pCPU it does not hold/);
    Atomics.store(m.control.w, CTL.RUNQ_LEN, 1);
    expect(() => pcpuTake(m, 3)).toThrow(/2 pCPU\(s\) idle while vCPUs wait/);

    m = fresh(1, [3]);
    pcpuTake(m, 3);
    Atomics.store(m.control.w, CTL.PCPU_IDLE, 1);
    expect(() => pcpuGive(m, 3)).toThrow(/more pCPUs idle than the host has \(1\)/);

    m = fresh(1, [3]);
    pcpuTake(m, 3);
    Atomics.store(m.control.w, CTL.RUNQ_LEN, 1);
    expect(() => pcpuGive(m, 3)).toThrow(/run queues empty, length not zero/);

    m = fresh(1, [0, 3]);
    pcpuTake(m, 0);
    let thrown: unknown;
    setSched(
      scripted([
        () => {
          Atomics.store(m.control.w, CTL.RUNQ_LEN, 0);
          try {
            pcpuGive(m, 0);
          } catch (e) {
            thrown = e;
          }
          m.vcpus.set(3, VC.PCPU_GRANT, 1);
        },
      ]),
    );
    pcpuTake(m, 3, false);
    expect(String(thrown)).toMatch(/run queue length below zero/);
  });
});
