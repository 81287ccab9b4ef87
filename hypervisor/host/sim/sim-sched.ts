/**
 * The deterministic scheduler (issue 7): every vCPU of a topology runs on
 * ONE thread, and every scheduling point of hypervisor/xen/platform.ts — a wait
 * (ioreq block, sleep), a yield, a lock spin, a clock read — is either a
 * decision of a seeded scheduler or a step of simulated time. Same seed,
 * same decisions, same trace hash (docs/sim.md says why one thread and not
 * a Coyote-style controller over real threads).
 *
 * How a blocking wait works on one thread: the waiting actor stays on the
 * JavaScript stack and the scheduler runs other actors' steps *nested*
 * inside the wait until the awaited word changes or simulated time passes
 * the deadline. Nesting is allowed only where a real vCPU could be
 * descheduled and hold nothing: its state is BLOCKED (so it acknowledges
 * TLB shootdowns implicitly, docs/semantics.md §2) and it holds no hypervisor lock (so
 * a nested actor can never spin on a lock whose holder cannot run). A spin
 * or wait that no nested actor may end is a finding, never a hang: a
 * SimStuck error names it.
 */
import type { LockSpace } from '../../xen/locks.js';
import { setThreadTag } from '../../xen/locks.js';
import type { CostKind, Sched } from '../../xen/platform.js';
import { costTable, FLAT_COST_MODEL, type CostModel } from './cost-model.js';

/** One schedulable thing: a vCPU (its workload's steps), in the simulator's order. */
export interface SimActor {
  readonly name: string;
  /** Its vCPU slot (layout/vcpus.ts), and its domain's id. */
  readonly slot: number;
  readonly domid: number;
  /** Run one step (resume, a workload step, the end-of-step tick, pause). */
  step(): void;
  /** Whether it may be given a step now (alive; excluded ones are not). */
  ready(): boolean;
  /** Whether it is descheduled-safe at this moment: BLOCKED, so a nested step may run meanwhile. */
  blocked(): boolean;
  /** Whether it is inside a hypercall (HYPERVISOR): another vCPU may act meanwhile at a lock-free point, as on another pCPU. */
  inHypervisor(): boolean;
  /**
   * Whether others wait for it (a device model answers ioreqs): it is never
   * preempted, since on one thread a vCPU suspended beneath a waiter cannot
   * answer it.
   */
  readonly serves: boolean;
}

/** A wait an actor is in: until `word[index]` differs from `expected`, or until `deadline_us` of simulated time. */
export interface SimWait {
  readonly word: Int32Array;
  readonly index: number;
  readonly expected: number;
  readonly deadline_us: number;
  /** Where it was called from (only with SimSched.traceWaits). */
  readonly site?: string;
}

export class SimStuck extends Error {
  override readonly name = 'SimStuck';
}

export type Strategy = 'random' | 'pct';

export interface SimSchedOptions {
  seed: number;
  /** Decisions after which nothing new is started (waits only run out their time). */
  max_steps: number;
  strategy: Strategy;
  /** PCT: number of priority change points (depth of the bugs it aims at). */
  pct_depth: number;
  /** Steps the PCT change points are drawn from (independent of max_steps, so a shorter replay takes the same decisions). */
  horizon_steps: number;
  locks: LockSpace;
  /** What decisions and operations cost in simulated time (default: the flat model). */
  cost?: CostModel;
}

export { STEP_US } from './cost-model.js';
/** Simulated time a clock read or one spin iteration costs. */
export const TICK_US = 0.05;
/** A spin that outlasts this many iterations with nobody able to end it is stuck. */
export const MAX_SPIN = 2_000_000;
/**
 * Stack depth up to which any vCPU may run nested inside a wait; deeper,
 * only a vCPU that serves others (a device model, which never waits) may —
 * so an ioreq is always answered, and no more than this many vCPUs are
 * frozen beneath the top (a frame can only return once those above it did).
 */
export const MAX_NEST_DEPTH = 3;
/** The most simulated time one idle moment skips (a device model's poll period). */
export const JUMP_QUANTUM_US = 1000;
/** Waits in a row that only time ended, with nobody else able to run, before the run is declared stuck. */
export const MAX_IDLE_JUMPS = 100_000;

/**
 * Mean distance, in a vCPU's guest accesses, between two of its access points (docs/sim.md §2): each gap is drawn
 * uniform in 1…2×this. Every TLB batch (TLB_BATCH_ACCESSES = 64) has even odds or so of holding one, and a
 * preemption is one more decision, so the run's length in decisions changes little.
 */
export const ACCESS_POINT_MEAN = 128;

/** A vCPU's MMU as the simulator sees it at an access point (hypervisor/xen/mmu.ts). */
export interface AccessPointMmu {
  readonly slot: number;
  preemptIn: number;
  accessPoint: (() => void) | null;
  flushIpi(): void;
}

const KIND = { step: 1, wait: 2, yield: 3, preempt: 4, access: 5 } as const;
export type DecisionKind = keyof typeof KIND;

/** xorshift32: small, fast, and the same on every machine. */
export class SimRng {
  private s: number;
  constructor(seed: number) {
    this.s = (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) | 0) || 0x1234567;
    for (let i = 0; i < 4; i++) this.u32();
  }
  u32(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x;
    return x >>> 0;
  }
  /** Uniform in [0, n). */
  below(n: number): number {
    return this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
}

/** FNV-1a, 32 bits, over 32-bit words. */
export function fnv(h: number, word: number): number {
  let x = h;
  for (let k = 0; k < 4; k++) {
    x ^= (word >>> (k * 8)) & 0xff;
    x = Math.imul(x, 0x01000193);
  }
  return x >>> 0;
}
export const FNV_OFFSET = 0x811c9dc5;

export class SimSched implements Sched {
  clock_us = 0;
  /** Simulated time of one decision, and of each kind of operation (cost-model.ts). */
  private readonly step_us: number;
  private readonly costs: Float64Array;
  /** Decisions taken (top-level steps and nested ones). */
  steps = 0;
  /** Rolling hash of every decision: (step, actor, kind). */
  hash = FNV_OFFSET;
  /** Deepest nesting reached. */
  max_depth = 0;
  nested_steps = 0;
  private idleJumps = 0;
  private stopped = false;
  readonly rng: SimRng;
  private actors: SimActor[] = [];
  private onStack: boolean[] = [];
  private readonly stack: number[] = [];
  /** pick's candidates (the first n of them), one slot per actor. */
  private cand = new Int32Array(0);
  private prio: number[] = [];
  private readonly changeAt = new Set<number>();
  private lowest = 0;
  /** Actors the shrinker left out (never scheduled). */
  excluded = new Set<number>();
  /**
   * Called once, when a decision is asked for after the last one: the
   * simulator stops the machine there (CTL.STOP), so whatever is still on
   * the stack winds down by itself — an ioreq wait gives up, a sleep runs
   * out its time.
   */
  onExhausted: (() => void) | undefined;
  /** Asked every few decisions whether the run has failed already (exploration stops there). */
  failedHook: (() => boolean) | undefined;
  /** The decision at which failedHook first said yes. */
  failed_at: number | null = null;
  /** Called when a spin runs long (the simulator retires vCPUs of dead domains there). */
  onSpin: (() => void) | undefined;
  /** The wait each actor is in, while it is in one (by actor index; liveness asks whether it is over). */
  private readonly waitOf: Array<SimWait | undefined> = [];
  /** Record where each wait was called from (XGSIM_LIVENESS_DUMP: liveness prints it); off, nothing is captured. */
  traceWaits = false;
  /** vCPUs suspended between two accesses, by slot: in GUEST, their TLB live, beneath the top of the stack. */
  private readonly midBatch = new Map<number, AccessPointMmu>();
  /**
   * Per domain, its vCPUs suspended at an access point: no vCPU of such a
   * domain runs until they resume — a guest's vCPUs may wait for each other
   * in guest code (a spin on shared memory, as dom0's device model on an
   * eviction in progress), which a vCPU suspended beneath could never end.
   */
  private readonly midBatchDomains = new Map<number, number>();
  /**
   * Domains with a device model: at an access point only their vCPUs run
   * (the backend's kernel and device model, which Revoke and shoot down):
   * a frontend's step there could block for long beneath nothing that ends
   * it, and the suspended vCPU with it.
   */
  private backendDomains = new Set<number>();
  /** Steps run at access points, and flush IPIs delivered to vCPUs suspended there. */
  access_preemptions = 0;
  flush_ipis = 0;
  /** Whether a vCPU in GUEST mode may be suspended between two accesses (docs/sim.md §2); off: the old model. */
  accessPoints = true;
  /**
   * No access point from this decision on: with liveness mode, a margin
   * before the quiet tail, so that a nested step begun at one has ended
   * when the tail judges progress (a vCPU beneath it cannot progress).
   */
  accessPointsUntil = Infinity;

  constructor(readonly o: SimSchedOptions) {
    this.rng = new SimRng(o.seed);
    const cost = o.cost ?? FLAT_COST_MODEL;
    this.step_us = cost.step_us;
    this.costs = costTable(cost);
  }

  setActors(actors: SimActor[]): void {
    this.actors = actors;
    this.backendDomains = new Set(actors.filter((a) => a.serves).map((a) => a.domid));
    this.onStack = actors.map(() => false);
    this.cand = new Int32Array(actors.length);
    // PCT (Burckhardt et al.): random distinct priorities, d-1 change points
    // spread over the run; at a change point the running actor drops below all.
    const perm = actors.map((_, i) => i);
    for (let i = perm.length - 1; i > 0; i--) {
      const j = this.rng.below(i + 1);
      [perm[i], perm[j]] = [perm[j]!, perm[i]!];
    }
    this.prio = perm.map((p) => p + 1000);
    for (let k = 0; k < this.o.pct_depth - 1; k++) this.changeAt.add(1 + this.rng.below(Math.max(1, this.o.horizon_steps)));
  }

  get depth(): number {
    return this.stack.length;
  }
  get current(): number {
    return this.stack.length === 0 ? -1 : this.stack[this.stack.length - 1]!;
  }
  get exhausted(): boolean {
    return this.steps >= this.o.max_steps;
  }

  /**
   * Called before every decision, where nothing holds a lock (the top
   * level, or a wait that may nest): injections and the running checker go
   * there, so they land between any two steps, nested or not.
   */
  beforePick: (() => void) | undefined;

  /** Choose who runs next among those not on the stack; -1 when nobody can. */
  pick(kind: DecisionKind): number {
    this.beforePick?.();
    // The candidates in a buffer kept across decisions: no allocation per decision.
    const cand = this.cand;
    let n = 0;
    const serversOnly = this.stack.length >= MAX_NEST_DEPTH;
    for (let i = 0; i < this.actors.length; i++) {
      const a = this.actors[i]!;
      if (!this.onStack[i] && !this.excluded.has(i) && (!serversOnly || a.serves) && (this.midBatchDomains.size === 0 || !this.midBatchDomains.has(a.domid)) && (kind !== 'access' || this.backendDomains.has(a.domid)) && a.ready()) cand[n++] = i;
    }
    if (n === 0) return -1;
    if (this.exhausted) {
      // The decision after the last: none is taken. Exhaustion changes
      // nothing else (no coin is skipped), so a run cut at step k is the
      // longer run up to k; from here the machine is stopped so that what is
      // on the stack winds down (an ioreq wait gives up, a sleep runs out).
      if (!this.stopped) {
        this.stopped = true;
        this.onExhausted?.();
      }
      return -1;
    }
    let chosen: number;
    if (this.o.strategy === 'random') chosen = cand[this.rng.below(n)]!;
    else {
      chosen = cand[0]!;
      for (let k = 1; k < n; k++) if (this.prio[cand[k]!]! > this.prio[chosen]!) chosen = cand[k]!;
    }
    this.steps++;
    if ((this.steps & 15) === 0 && this.failed_at === null && this.failedHook?.() === true) {
      // Stop here, exactly as a replay with --steps <this step> stops.
      this.failed_at = this.steps;
      this.o.max_steps = this.steps;
    }
    if (this.o.strategy === 'pct' && this.changeAt.has(this.steps)) this.prio[chosen] = --this.lowest;
    this.hash = fnv(fnv(fnv(this.hash, this.steps), chosen), KIND[kind]);
    this.clock_us += this.step_us;
    return chosen;
  }

  /** Run one step of actor i (on top of whatever is on the stack). */
  run(i: number): void {
    this.stack.push(i);
    this.onStack[i] = true;
    if (this.stack.length > this.max_depth) this.max_depth = this.stack.length;
    if (this.stack.length > 1) this.nested_steps++;
    // Lock ownership is per actor, as it is per thread in real runs.
    setThreadTag(i + 2);
    try {
      this.actors[i]!.step();
    } finally {
      this.stack.pop();
      this.onStack[i] = false;
      setThreadTag(this.current + 2);
    }
  }

  /** The actors on the stack, bottom first. */
  stackOrder(): readonly number[] {
    return [...this.stack];
  }

  /** The wait actor i is in, if it is in one. */
  waitingIn(i: number): SimWait | undefined {
    return this.waitOf[i];
  }

  /**
   * Whether actor i is held by the simulator rather than by anything it
   * waits for — a real vCPU would be running: its frame is beneath another
   * actor's (LIFO nesting) and it could go on (it is in no wait: preempted
   * at a hook point; or its wait is over: the word moved, or the time
   * passed), or it is off the stack but the stack is MAX_NEST_DEPTH deep, so
   * only a device model may run. Xen wakes a vCPU blocked in wait_for_io as
   * soon as its ioreq reaches IORESP_READY (xen/common/ioreq.c); here it
   * resumes only once every frame above it returned.
   */
  held(i: number): boolean {
    if (!this.onStack[i]) return this.stack.length >= MAX_NEST_DEPTH && !this.actors[i]!.serves;
    if (this.current === i) return false;
    const w = this.waitOf[i];
    return w === undefined || Atomics.load(w.word, w.index) !== w.expected || this.clock_us >= w.deadline_us;
  }

  /** Whether the actor on top may be descheduled for a nested step now. */
  private mayNest(): boolean {
    const top = this.current;
    return (
      top >= 0 &&
      this.o.locks.heldCount() === 0 &&
      this.actors[top]!.blocked()
    );
  }

  /**
   * A lock-free point inside a hypercall (hypervisor/xen/hooks.ts): with even
   * odds another vCPU runs a step here, as it would on another pCPU. Returns
   * whether one did.
   */
  preempt(): boolean {
    const top = this.current;
    if (top < 0 || this.o.locks.heldCount() !== 0) return false;
    const a = this.actors[top]!;
    if (a.serves || (!a.inHypervisor() && !a.blocked())) return false;
    if (!this.rng.chance(0.5)) return false;
    const j = this.pick('preempt');
    if (j < 0) return false;
    this.run(j);
    return true;
  }

  /**
   * Give a vCPU's MMU access points. Never a device model's domain's (dom0's
   * kernel too): others wait for the device model, which could not run
   * while a vCPU of its domain is suspended (see midBatchDomains).
   */
  armAccessPoints(mmu: AccessPointMmu): void {
    if (!this.accessPoints) return;
    mmu.accessPoint = () => this.atAccess(mmu);
    mmu.preemptIn = 1 + this.rng.below(2 * ACCESS_POINT_MEAN);
  }

  /**
   * Between two guest accesses of the vCPU on top (GUEST, holding no lock):
   * another vCPU may run a step here, as it would on another pCPU, while this
   * one keeps its TLB and budget — the window of an acknowledgement batch. A
   * shootdown made meanwhile reaches it through awaitAck.
   */
  private atAccess(mmu: AccessPointMmu): void {
    mmu.preemptIn = 1 + this.rng.below(2 * ACCESS_POINT_MEAN);
    const top = this.current;
    // Only a vCPU running at the top level: one suspended above another's
    // wait would keep that one beneath it for its whole nested step, and a
    // stack that deep starves who waits at its bottom (LIFO, docs/sim.md §7)
    // — a false liveness failure, not the design's.
    if (!this.accessPoints || this.steps >= this.accessPointsUntil || top < 0 || this.stack.length !== 1 || this.o.locks.heldCount() !== 0) return;
    const a = this.actors[top]!;
    // The vCPU on top in guest mode, not another's MMU used on its behalf (the racer's touch) nor one inside a hypercall.
    if (a.slot !== mmu.slot || a.serves || a.blocked() || a.inHypervisor()) return;
    // pick() leaves out this vCPU's own domain once it is marked; mark it first so the choice is another domain's.
    this.midBatchDomains.set(a.domid, (this.midBatchDomains.get(a.domid) ?? 0) + 1);
    const j = this.pick('access');
    const left = this.midBatchDomains.get(a.domid)! - 1;
    if (left === 0) this.midBatchDomains.delete(a.domid);
    else this.midBatchDomains.set(a.domid, left);
    if (j < 0) return;
    this.access_preemptions++;
    this.midBatch.set(mmu.slot, mmu);
    this.midBatchDomains.set(a.domid, (this.midBatchDomains.get(a.domid) ?? 0) + 1);
    try {
      this.run(j);
    } finally {
      this.midBatch.delete(mmu.slot);
      const n = this.midBatchDomains.get(a.domid)! - 1;
      if (n === 0) this.midBatchDomains.delete(a.domid);
      else this.midBatchDomains.set(a.domid, n);
    }
  }

  /** A shootdown waits for `slot`: a vCPU suspended between two accesses takes the flush IPI now. */
  awaitAck(slot: number): void {
    const mmu = this.midBatch.get(slot);
    if (mmu === undefined) return;
    mmu.flushIpi();
    this.flush_ipis++;
    this.hash = fnv(this.hash, 0x1f1 + slot);
  }

  // ---- Sched -----------------------------------------------------------------

  relax(iteration: number): void {
    this.clock_us += TICK_US;
    if (iteration === 10_000) this.onSpin?.();
    if (iteration >= MAX_SPIN) throw new SimStuck(`${this.who()} spins with nobody able to end it (${this.o.locks.heldCount()} locks held)`);
  }

  wait(word: Int32Array, index: number, expected: number, timeout_ms: number): boolean {
    const deadline_us = timeout_ms === Infinity ? Infinity : this.clock_us + timeout_ms * 1000;
    if (deadline_us === this.clock_us) return Atomics.load(word, index) !== expected;
    const me = this.current;
    const outer = me < 0 ? undefined : this.waitOf[me];
    if (me >= 0) this.waitOf[me] = this.traceWaits ? { word, index, expected, deadline_us, site: new Error().stack ?? '' } : { word, index, expected, deadline_us };
    try {
      return this.waitNested(word, index, expected, deadline_us);
    } finally {
      if (me >= 0) this.waitOf[me] = outer;
    }
  }

  private waitNested(word: Int32Array, index: number, expected: number, deadline_us: number): boolean {
    for (;;) {
      if (Atomics.load(word, index) !== expected) return true;
      if (this.clock_us >= deadline_us) return false;
      const j = this.mayNest() ? this.pick('wait') : -1;
      if (j >= 0) {
        this.idleJumps = 0;
        this.run(j);
        continue;
      }
      // Nobody else may run now: only time can end this wait.
      if (deadline_us === Infinity) throw new SimStuck(`${this.who()} waits for ever with nobody able to wake it`);
      // Time moves on by at most a quantum: a vCPU that is only waiting for
      // its time (a device model's poll) becomes ready on the way.
      this.clock_us = Math.min(deadline_us, this.clock_us + JUMP_QUANTUM_US);
      // A caller that waits again and again for what only a vCPU suspended
      // beneath it could do: a limit of one thread, not a finding.
      if (++this.idleJumps > MAX_IDLE_JUMPS) throw new SimStuck(`${this.who()} keeps waiting with every other vCPU suspended beneath it (depth ${this.depth})`);
    }
  }

  wake(_word: Int32Array, _index: number, _count: number): void {
    // Waiters re-check their word when the scheduler gets back to them.
  }

  yield(): void {
    // A yield only gives the CPU away: the top-level loop hands it on anyway.
    this.clock_us += this.step_us;
  }

  charge(kind: CostKind, n: number): void {
    this.clock_us += this.costs[kind]! * n;
  }

  now_us(): number {
    this.clock_us += TICK_US;
    return this.clock_us;
  }

  private who(): string {
    const top = this.current;
    return top < 0 ? 'the simulator' : (this.actors[top]?.name ?? `actor ${top}`);
  }
}
