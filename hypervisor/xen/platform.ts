/**
 * What the hardware and the host OS give the Xen core: cpu_relax, NOW(),
 * waiting on a word and waking its waiters, yielding the core. Every place
 * where a thread spins, blocks, yields or reads the clock goes through
 * `sched()`, so the deterministic simulator (hypervisor/host/sim/) can
 * replace the real one without touching callers.
 */
export interface Sched {
  /** One iteration of a spin loop; `iteration` counts from 0. */
  relax(iteration: number): void;
  /**
   * Block while `word[index] === expected`, at most `timeout_ms` (Infinity
   * for no bound). Returns false on timeout.
   */
  wait(word: Int32Array, index: number, expected: number, timeout_ms: number): boolean;
  /** Wake up to `count` threads blocked in `wait` on that word. */
  wake(word: Int32Array, index: number, count: number): void;
  /** Give the CPU away briefly (a descheduling point). */
  yield(): void;
  /** Monotonic time in microseconds (simulated under the deterministic scheduler). */
  now_us(): number;
  /**
   * `n` operations of a kind took place on this thread: the simulator
   * moves its clock by what its cost model says they take
   * (hypervisor/host/sim/cost-model.ts); real threads spend the time
   * doing them, and ignore this.
   */
  charge(kind: CostKind, n: number): void;
  /**
   * A TLB shootdown waits for the vCPU in `slot` (GUEST, its acknowledgement not in): the deterministic simulator
   * delivers the flush IPI there when it suspended that vCPU between two accesses (docs/sim.md §2); on real threads
   * absent — the vCPU acknowledges at its next boundary on its own thread.
   */
  awaitAck?(slot: number): void;
}

/** What the simulator's cost model charges simulated time for (Sched.charge). */
export const COST = { ACCESS: 0, HYPERCALL: 1, SHOOTDOWN: 2, IOREQ: 3, GPU_COMMAND: 4 } as const;
export type CostKind = (typeof COST)[keyof typeof COST];

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/** The real-thread scheduler: Atomics for blocking, performance.now for time. */
export const realSched: Sched = {
  relax(iteration: number): void {
    // Short spins stay on the core; longer ones give it away, since with
    // more vCPU threads than cores the thread we wait for may be the one the
    // OS preempted to run us.
    if (iteration >= 128 && (iteration & 7) === 0) Atomics.wait(sleepCell, 0, 0, 0.02);
  },
  wait(word, index, expected, timeout_ms) {
    return Atomics.wait(word, index, expected, timeout_ms) !== 'timed-out';
  },
  wake(word, index, count) {
    Atomics.notify(word, index, count);
  },
  yield() {
    Atomics.wait(sleepCell, 0, 0, 0.02);
  },
  now_us() {
    return performance.now() * 1000;
  },
  charge() {
    // Real time passes by itself.
  },
};

let current: Sched = realSched;

/** The scheduler of this thread. */
export function sched(): Sched {
  return current;
}

/** Install another scheduler on this thread (deterministic simulation, tests). */
export function setSched(s: Sched): void {
  current = s;
}
