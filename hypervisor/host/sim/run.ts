/**
 * One deterministic simulation run (issue 7): the host boots a topology as
 * in a real run, but every vCPU is a SimActor on this thread, the device
 * model reads a polled ring end, time is simulated, chaos nemeses are
 * switched on per run (BUGGIFY-style) and injected at seeded steps, and the
 * same checkers as a real run judge the result. Same inputs, same hash.
 */
import { makeWorkload, type WorkloadReport } from '../../../domains/index.js';
import { checkRunning } from '../../checker/checker.js';
import { domainCrash } from '../../xen/domain-crash.js';
import { designOf } from '../../xen/design.js';
import { toolstackDestroy } from '../toolstack.js';
import { VcpuContext } from '../../xen/guest-cpu.js';
import { Host, MAP_WINDOW_PAGES, type HostReport, type HostSpec } from '../host.js';
import { CTL, NEMESIS_IOREQ } from '../../layout/control.js';
import { DOM, DS } from '../../layout/domains.js';
import { STAT, VC } from '../../layout/vcpus.js';
import { XS_KEY, xsKey } from '../../public/xenstore.js';
import { realSched, setSched } from '../../xen/platform.js';
import { setServerEndFactory } from '../transport-ends.js';
import { VS } from '../../xen/vcpu.js';
import type { VcpuResult } from '../vcpu-worker.js';
import { PolledRingServerEnd, RingServerEnd } from '../../../transport/ring.js';
import { FNV_OFFSET, fnv, SimRng, SimSched, SimStuck, type SimActor, type Strategy } from './sim-sched.js';
import type { CostModel } from './cost-model.js';
import type { ViolationRecord } from '../../layout/invariants.js';
import { HOOK_NAMES, setPreempter, type HookName } from '../../xen/hooks.js';
import { deathAt } from '../death.js';
import { setThreadTag, threadTag } from '../../xen/locks.js';
import { foreignMap, removeFromPhysmap } from '../../xen/memory.js';
import { guestStoreBegin, guestStoreEnd } from '../../xen/grant-table.js';
import { gfn as gfnOf } from '../../public/types.js';
import { Liveness, LIVENESS_TAIL_STEPS } from './liveness.js';
import { drawSwarm, type SwarmDraw } from './swarm.js';

/** The count of a preemption at each hook (made once: a string built per preemption was garbage on the per-decision path). */
const STEP_KEY = Object.fromEntries(HOOK_NAMES.map((n) => [n, `${n}:step`])) as Readonly<Record<HookName, string>>;

/** Steps between two progress calls (the caller's clock checks: timeouts, claim renewals). */
const SIM_PROGRESS_STEPS = 1_000;

/** The nemeses a simulation can inject (the chaos kinds that need no Redis and no second thread). */
export const SIM_NEMESES = ['ioreq-delay', 'ioreq-duplicate', 'ioreq-drop', 'ioreq-reorder', 'memory-pressure', 'hang-vcpu', 'crash-domain', 'adversary-on', 'dm-retry-storm'] as const;
export type SimNemesis = (typeof SIM_NEMESES)[number];

/**
 * PCT on actors that never finish: one priority change point per this many
 * steps (a handful over a whole run would leave one vCPU running and every
 * other starved). Between two change points the highest-priority vCPU runs
 * uninterrupted — long stretches, where the random walk switches at every
 * step: the two strategies explore different interleavings.
 */
export const PCT_STEPS_PER_CHANGE = 500;

export interface SimOptions {
  seed: number;
  steps: number;
  /**
   * Steps over which PCT change points and injections are drawn (default:
   * `steps`). A replay cut short at step k passes the original horizon, so
   * it takes exactly the decisions of the longer run up to k.
   */
  horizon?: number;
  /** 'mixed' (default): each seed picks random walk or PCT. */
  strategy?: Strategy | 'mixed';
  /** Chaos nemeses, each on or off per run by the seed; false: none. */
  chaos?: boolean;
  /** Nemeses forced off (the shrinker). */
  nemeses_off?: readonly SimNemesis[];
  /** Actors (vCPUs, by index) left out (the shrinker). */
  exclude?: readonly number[];
  /** Top-level steps between runs of the running checker. */
  check_every_steps?: number;
  /** Stop at the first violation or error (exploration); default true. */
  stop_on_failure?: boolean;
  /** Called now and then with the decisions taken so far. */
  progress?: (steps: number) => void;
  /**
   * Liveness mode (default on): after `steps`, a quiet tail of `tail_steps`
   * decisions with every nemesis stopped, then the liveness checks
   * (hypervisor/host/sim/liveness.ts).
   */
  liveness?: boolean;
  tail_steps?: number;
  /**
   * Swarm testing (hypervisor/host/sim/swarm.ts): true, the seed draws a
   * subset of behaviours and attacks per domain; a draw, that subset (a
   * replay file's); absent or false, the full mix the topology lists.
   */
  swarm?: boolean | SwarmDraw;
  /**
   * An injected stall, for the liveness tests (no nemesis plan draws it),
   * from the start: 'lose-fault-answers', the device model's end loses its
   * answers to FAULTs (NEMESIS_IOREQ.LOSE_FAULT; the tail stops it, but a
   * vCPU whose FAULT was lost waits for ever); 'skip-buffered', it hands
   * the device model no buffered ioreq (NEMESIS_IOREQ.SKIP_BUFFERED; the
   * tail keeps it: a broken device model, not a nemesis).
   */
  stall?: 'lose-fault-answers' | 'skip-buffered';
  /** The cost model (cost-model.ts; default the flat one). */
  cost?: CostModel;
  /**
   * Access points (default on, docs/sim.md §2): a vCPU in guest mode may be suspended between any two of its
   * accesses, its TLB live, while others run; false: only between steps (the model before issue 19).
   */
  access_points?: boolean;
}

export interface SimInjection {
  step: number;
  kind: SimNemesis;
  target: string;
}

export interface SimResult {
  seed: number;
  steps: number;
  strategy: Strategy;
  hash: string;
  sim_us: number;
  real_ms: number;
  steps_per_s: number;
  /** Simulated time per real time. */
  sim_ratio: number;
  max_depth: number;
  nested_steps: number;
  /** Operations run in the middle of another vCPU's hypercall, by hook point. */
  races: Record<string, number>;
  actors: string[];
  nemeses: SimNemesis[];
  injections: SimInjection[];
  /** stuck: the simulator could not go on (a limit of one thread, docs/sim.md), which says nothing either way. */
  verdict: 'pass' | 'fail' | 'stuck';
  stuck?: string;
  /**
   * The decision after which the first failure was seen (replay with --steps
   * this); a failure in the quiet tail gives the run's steps (the tail comes
   * after them).
   */
  failed_at_step: number | null;
  /** The quiet tail's decisions (0: liveness mode off); `steps` counts them. */
  tail_steps: number;
  /** The behaviours and attacks this seed ran, per domain (swarm mode), or null: the full mix. */
  swarm: SwarmDraw | null;
  violations: ViolationRecord[];
  errors: string[];
  report: HostReport;
}

interface Actor extends SimActor {
  readonly cpu: VcpuContext;
  readonly domid: number;
  retire(): void;
  retired: boolean;
  /** hang-vcpu: descheduled until this simulated time. */
  hungUntil_us: number;
  /** The workload's own failed checks (an attack that worked, a wrong value read). */
  fails(): number;
  /** What they were, as far as the workload's counters say. */
  failures(): string;
  /** The vCPU's result, as hypervisor/host/vcpu-worker.ts returns it. */
  result(): VcpuResult;
  readonly slot: number;
  completed(): number;
  revokes(): readonly number[];
}

export async function runSim(fullSpec: HostSpec, o: SimOptions): Promise<SimResult> {
  const t0 = performance.now();
  const swarm = o.swarm === undefined || o.swarm === false ? null : drawSwarm(o.seed, fullSpec, o.swarm === true ? undefined : o.swarm);
  const spec = swarm?.spec ?? fullSpec;
  const planRng = new SimRng(o.seed ^ 0x51f15eed);
  // Its own generator: naming the strategy a mixed run picked (the replay
  // command does) must not change anything else about the run.
  const strategy: Strategy = o.strategy === 'random' || o.strategy === 'pct' ? o.strategy : new SimRng(o.seed ^ 0x57a7e6).chance(0.5) ? 'random' : 'pct';
  const host = new Host({ ...spec, pcpus: 0, transport: { kind: 'ring' }, check_interval_ms: 0, trace: false });
  const m = host.m;
  const horizon = o.horizon ?? o.steps;
  const tail = o.liveness === false ? 0 : (o.tail_steps ?? LIVENESS_TAIL_STEPS);
  const sim = new SimSched({ seed: o.seed, max_steps: o.steps + tail, strategy, pct_depth: Math.max(3, Math.round(horizon / PCT_STEPS_PER_CHANGE)), horizon_steps: horizon, locks: m.locks, ...(o.cost !== undefined ? { cost: o.cost } : {}) });
  setSched(sim);
  // XGSIM_LIVENESS_DUMP=1: a liveness failure prints the stack and every vCPU's state, with where each wait was called from.
  sim.traceWaits = process.env['XGSIM_LIVENESS_DUMP'] === '1';
  setServerEndFactory((mm, owner) => new PolledRingServerEnd(mm, owner));
  const errors: string[] = [];
  let failedAt: number | null = null;
  let stuck: string | null = null;
  const actors: Actor[] = [];
  try {
    host.boot();
    const tasks = host.vcpuTasks();
    // Device models are never spinning on the simulator: a vCPU that sends
    // an ioreq notifies and waits (layout/ioreq-slots.ts), never spins.
    for (const { task } of tasks) if (task.workload.kind === 'gpu-backend') Atomics.store(m.ios.parked, task.domid, 1);
    for (const { domain, task } of tasks) actors.push(makeActor(m, domain.name, task, () => sim.clock_us));
    sim.setActors(actors);
    if (o.access_points === false) sim.accessPoints = false;
    // From the horizon, not --steps: a replay cut at its failing step (same --horizon) is the longer run up to there.
    if (tail > 0) sim.accessPointsUntil = Math.max(0, horizon - ACCESS_POINTS_MARGIN_STEPS);
    for (const a of actors) if (!actors.some((b) => b.serves && b.domid === a.domid)) sim.armAccessPoints(a.cpu.mmu);
    if (o.stall === 'lose-fault-answers') Atomics.or(m.control.w, CTL.IOREQ_NEMESIS, NEMESIS_IOREQ.LOSE_FAULT);
    if (o.stall === 'skip-buffered') Atomics.or(m.control.w, CTL.IOREQ_NEMESIS, NEMESIS_IOREQ.SKIP_BUFFERED);
    if (o.exclude !== undefined) for (const i of o.exclude) sim.excluded.add(i);
    // The tail starts at the horizon: a replay cut at its failing step (--steps k --horizon n) is the longer
    // run up to k, and a tail begun at k would stop its nemeses there, which the longer run did not.
    const live = tail > 0 ? new Liveness(sim, m, actors, sim.excluded, Math.max(o.steps, horizon), tail) : undefined;
    sim.onExhausted = () => {
      // Before the stop: a stop makes every wait give up, which would hide what hangs.
      if (live !== undefined && live.due && !failed()) {
        errors.push(...live.check());
        // A vCPU the simulator held beneath others past the stretch: a limit of one thread, neither pass nor fail.
        if (live.inconclusive !== null) stuck = live.inconclusive;
      }
      Atomics.store(m.control.w, CTL.STOP, 1);
    };
    // The racer's DMA mapping goes to the last gfn of dom0's spare window
    // (the one above its vCPUs' mapping windows, p2mSize in host.ts).
    const dom0 = tasks.filter((t) => t.task.domid === 0);
    const racerGfn = dom0[0] === undefined ? -1 : dom0[0].task.env.map_window_gfn + (dom0.length + 1) * MAP_WINDOW_PAGES - 1;
    const racer = new Racer(m, sim, racerGfn, actors);
    setPreempter((name, a, b) => racer.at(name, a, b), () => racer.unflip());
    sim.onSpin = () => {
      for (const a of actors) if (!a.retired && m.dom.state(a.domid) !== DS.RUNNING && m.vcpus.at(a.cpu.id.slot, VC.STATE) === VS.PAUSED) a.retire();
    };

    const plan = o.chaos === false ? [] : planChaos(planRng, horizon, spec, o.nemeses_off ?? []);
    const nemeses = [...new Set(plan.map((p) => p.kind))];
    const injections: SimInjection[] = [];
    const closing: Array<{ step: number; undo: () => void }> = [];
    const checkEvery = o.check_every_steps ?? 2000;
    const stopOnFailure = o.stop_on_failure !== false;
    let nextCheck = checkEvery;
    // Often enough that a campaign host renews its claim in time even at a few thousand steps/s on a loaded machine (RECLAIM_IDLE_MS is 5 s).
    let nextProgress = SIM_PROGRESS_STEPS;
    const failed = (): boolean => m.log.totalViolations() > 0 || errors.length > 0 || actors.some((a) => a.fails() > 0);
    if (stopOnFailure) sim.failedHook = failed;

    const stopNemeses = (): void => {
      plan.length = 0;
      for (const c of closing.splice(0)) c.undo();
      quiesce(m, actors);
      // A fair scheduler: PCT's change points are over, its top vCPU would run the whole tail.
      sim.o.strategy = 'random';
      // No more access points: a vCPU suspended between two accesses holds whoever waits beneath its nested
      // step (LIFO), which the tail would take for a design that does not progress (seed 2064 of the swarm).
      sim.accessPoints = false;
    };
    sim.beforePick = () => {
      racer.unflip();
      racer.settle();
      live?.tick(stopNemeses);
      // Injections due, and windows to close.
      while (plan.length > 0 && plan[0]!.step <= sim.steps) {
        const p = plan.shift()!;
        const target = inject(m, p, actors, planRng, closing, sim.steps, sim.clock_us);
        if (target !== undefined) {
          injections.push({ step: sim.steps, kind: p.kind, target });
          sim.hash = fnv(sim.hash, SIM_NEMESES.indexOf(p.kind) + 100);
        }
      }
      for (let k = 0; k < closing.length; ) {
        if (closing[k]!.step <= sim.steps) closing.splice(k, 1)[0]!.undo();
        else k++;
      }
      if (sim.steps >= nextCheck) {
        nextCheck = sim.steps + checkEvery;
        try {
          checkRunning(m);
        } catch (e) {
          errors.push(`checker: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      if (o.progress !== undefined && sim.steps >= nextProgress) {
        nextProgress = sim.steps + SIM_PROGRESS_STEPS;
        o.progress(sim.steps);
      }
    };
    while (!sim.exhausted) {
      // on_crash=destroy, here where no vCPU is in the middle of anything. A
      // hypervisor assertion in that teardown (a bug left the machine
      // inconsistent) fails the run, as one in a vCPU's step does.
      try {
        reap(m, actors);
      } catch (e) {
        errors.push(`toolstack: ${e instanceof Error ? e.message : String(e)}`);
      }
      const i = sim.pick('step');
      if (i < 0) break; // every vCPU is gone
      try {
        sim.run(i);
      } catch (e) {
        if (e instanceof SimStuck) {
          // In the quiet tail nothing interferes any more: a machine that
          // cannot go on there fails liveness.
          if (live !== undefined && sim.steps > live.start) errors.push(`liveness: stuck in the quiet tail: ${e.message}`);
          // Before it, the stack unwound through half-done hypercalls: what
          // the end-of-run checks find now says nothing about the design.
          else stuck = e.message;
          break;
        }
        errors.push(`${actors[i]!.name}: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (failedAt === null && failed()) {
        failedAt = sim.failed_at ?? sim.steps;
        if (stopOnFailure) break;
      }
    }
    for (const c of closing) c.undo();
    racer.settle();
    // An orderly stop, then the same end-of-run checks as a real host.
    for (const a of actors) if (!a.retired) {
      try {
        a.retire();
      } catch (e) {
        errors.push(`${a.name}: ${e instanceof Error ? e.message : String(e)}`);
        Atomics.store(m.vcpus.w, m.vcpus.idx(a.cpu.id.slot, VC.STATE), VS.OFFLINE);
      }
    }
    const report = await host.shutdown();
    // What each vCPU's workload counted, as a vCPU thread returns it.
    report.vcpu_results = actors.map((a) => a.result());
    errors.push(...report.errors);
    for (const a of actors) if (a.fails() > 0) errors.push(a.failures());
    if (failedAt === null && stuck === null && (report.violations.length > 0 || errors.length > 0)) failedAt = sim.steps;
    const real_ms = performance.now() - t0;
    return {
      seed: o.seed,
      steps: sim.steps,
      strategy,
      hash: (fnv(sim.hash, stateDigest(host)) >>> 0).toString(16).padStart(8, '0'),
      sim_us: Math.round(sim.clock_us),
      real_ms: Math.round(real_ms),
      steps_per_s: Math.round(sim.steps / Math.max(real_ms / 1000, 1e-6)),
      sim_ratio: sim.clock_us / 1000 / Math.max(real_ms, 1e-6),
      max_depth: sim.max_depth,
      // Steps run while a vCPU was suspended between two accesses, and flush IPIs a shootdown delivered to one.
      races: { ...racer.counts, ...(sim.access_preemptions > 0 ? { access_point: sim.access_preemptions } : {}), ...(sim.flush_ipis > 0 ? { flush_ipi: sim.flush_ipis } : {}) },
      nested_steps: sim.nested_steps,
      actors: actors.map((a) => a.name),
      nemeses,
      injections,
      verdict: failedAt !== null ? 'fail' : stuck !== null ? 'stuck' : 'pass',
      ...(stuck !== null ? { stuck } : {}),
      failed_at_step: failedAt === null ? null : Math.min(failedAt, o.steps),
      tail_steps: tail,
      swarm: swarm?.draw ?? null,
      violations: report.violations,
      errors,
      report,
    };
  } finally {
    setPreempter(null);
    setSched(realSched);
    setServerEndFactory((mm, owner) => new RingServerEnd(mm, owner));
  }
}

/** With liveness mode, access points end this many decisions before the quiet tail (sim-sched.ts accessPointsUntil). */
const ACCESS_POINTS_MARGIN_STEPS = 4000;

/** A device model with nothing pending still gets a turn this often, in simulated µs (its periodic poll finds dropped and delayed requests). */
const DM_POLL_US = 1000;

/** A vCPU as the simulator runs it: the loop body of hypervisor/host/vcpu-worker.ts, one step per turn. */
function makeActor(m: Host['m'], domainName: string, task: ReturnType<Host['vcpuTasks']>[number]['task'], now_us: () => number): Actor {
  const cpu = new VcpuContext(m, { domid: task.domid, vcpu: task.vcpu, slot: task.slot, memory_pages: task.memory_pages, seed: task.seed });
  const report: WorkloadReport = { fails: 0, ops: 0, out: {}, samples: {} };
  const wl = makeWorkload(cpu, task.workload, task.env, report);
  const hangIdx = m.vcpus.idx(task.slot, VC.HANG_MS);
  const stateIdx = m.vcpus.idx(task.slot, VC.STATE);
  cpu.start();
  cpu.pause();
  let steps = 0;
  let lastStep = 0;
  const noRevokes: readonly number[] = [];
  const actor: Actor = {
    name: `${domainName}/v${task.vcpu}`,
    cpu,
    slot: task.slot,
    completed: () => steps,
    revokes: () => report.samples['revoke_us'] ?? noRevokes,
    domid: task.domid,
    retired: false,
    hungUntil_us: 0,
    // A device model is worth a turn when a request waits for it, or when its poll is due.
    ready: () => !actor.retired && now_us() >= actor.hungUntil_us && (!actor.serves || m.ios.hasPending(task.domid) || now_us() - lastStep >= DM_POLL_US),
    fails: () => report.fails,
    result: () => ({ kind: 'vcpu-done', domid: task.domid, vcpu: task.vcpu, threadId: 0, steps, accesses: cpu.mmu.accesses, workload_ops: report.ops, check_fails: report.fails, out: report.out, samples: report.samples }),
    failures: () => {
      const worked = Object.keys(report.out).filter((k) => k.startsWith('succeeded_')).map((k) => k.slice('succeeded_'.length));
      // A check that names itself: a counter `failed_<what>` (domains/).
      const failed = Object.keys(report.out).filter((k) => k.startsWith('failed_')).map((k) => k.slice('failed_'.length));
      const why = [...(worked.length > 0 ? [`attack worked: ${worked.join(', ')}`] : []), ...(failed.length > 0 ? [failed.join(', ')] : [])];
      return `${actor.name}: ${report.fails} failed workload check(s)${why.length > 0 ? ` (${why.join('; ')})` : ''}`;
    },
    blocked: () => Atomics.load(m.vcpus.w, stateIdx) === VS.BLOCKED,
    inHypervisor: () => Atomics.load(m.vcpus.w, stateIdx) === VS.HYPERVISOR,
    serves: task.workload.kind === 'gpu-backend' && task.vcpu === 0,
    step() {
      if (cpu.stopping) {
        actor.retire();
        return;
      }
      lastStep = now_us();
      cpu.resume();
      const r = wl.step();
      if (r !== undefined) throw new Error(`${actor.name}: its workload awaited under the simulator (no polled transport end?)`);
      cpu.endOfStep(hangIdx);
      if ((++steps & 63) === 0) cpu.flushStats();
      cpu.pause();
    },
    retire() {
      actor.retired = true;
      const st = Atomics.load(m.vcpus.w, stateIdx);
      if (st !== VS.PAUSED && st !== VS.GUEST) {
        // A step that threw (the run failed there) left it mid-hypercall or
        // mid-wait: it is gone, like a vCPU thread that died.
        cpu.mmu.flushAll();
        Atomics.store(m.vcpus.w, stateIdx, VS.OFFLINE);
        return;
      }
      if (st === VS.PAUSED) cpu.resume();
      if (m.dom.state(task.domid) === DS.RUNNING) wl.finish?.();
      void wl.close?.();
      cpu.stat(STAT.WORKLOAD_OPS, report.ops);
      cpu.stat(STAT.CHECK_FAILS, report.fails);
      cpu.stop(VS.GUEST);
    },
  };
  return actor;
}

/**
 * The nemeses stop for liveness mode's quiet tail: no vCPU stays
 * descheduled, and a device model that answered RETRY for ever
 * (dm-retry-storm) is a sane one again (the toolstack restarted it).
 */
function quiesce(m: Host['m'], actors: Actor[]): void {
  const store = new Int32Array(m.sabs.store);
  for (const a of actors) a.hungUntil_us = 0;
  for (let d = 0; d < m.nd; d++) Atomics.store(store, xsKey(d, XS_KEY.DM_RETRY_STORM), 0);
  // A device model that stopped consuming its buffered rings is broken, not struck: it stays so.
  Atomics.and(m.control.w, CTL.IOREQ_NEMESIS, NEMESIS_IOREQ.SKIP_BUFFERED);
}

/** on_crash=destroy: the toolstack reaps crashed guests once their vCPUs are off. */
function reap(m: Host['m'], actors: Actor[]): void {
  for (let d = 0; d < m.nd; d++) {
    if (m.dom.state(d) !== DS.CRASHED) continue;
    for (const a of actors) if (a.domid === d && !a.retired) a.retire();
    toolstackDestroy(m, d);
  }
}

interface Planned {
  step: number;
  kind: SimNemesis;
}

/** BUGGIFY-style: each nemesis on or off for this run; the ones on strike one to three times at seeded steps. */
function planChaos(rng: SimRng, horizon: number, spec: HostSpec, off: readonly SimNemesis[]): Planned[] {
  const out: Planned[] = [];
  for (const kind of SIM_NEMESES) {
    const on = rng.chance(0.5);
    const times = kind === 'crash-domain' ? 1 : 1 + rng.below(3);
    const steps = Array.from({ length: times }, () => rng.below(Math.max(1, horizon)));
    if (!on || off.includes(kind)) continue;
    if (kind === 'crash-domain' && !spec.domains.some((d) => d.role === 'frontend')) continue;
    if (kind === 'adversary-on' && !spec.domains.some((d) => (d.workload as Record<string, unknown>)['dormant'] === true)) continue;
    for (const s of steps) out.push({ step: s, kind });
  }
  return out.sort((a, b) => a.step - b.step || SIM_NEMESES.indexOf(a.kind) - SIM_NEMESES.indexOf(b.kind));
}

const IOREQ_BIT: Partial<Record<SimNemesis, number>> = {
  'ioreq-delay': NEMESIS_IOREQ.DELAY,
  'ioreq-duplicate': NEMESIS_IOREQ.DUPLICATE,
  'ioreq-drop': NEMESIS_IOREQ.DROP,
  'ioreq-reorder': NEMESIS_IOREQ.REORDER,
};

/** Carry one injection out; returns its target, or undefined when there was none alive. */
function inject(m: Host['m'], p: Planned, actors: Actor[], rng: SimRng, closing: Array<{ step: number; undo: () => void }>, now: number, clock_us: number): string | undefined {
  const window = 500 + rng.below(5000);
  const store = new Int32Array(m.sabs.store);
  const live = actors.filter((a) => !a.retired && m.dom.state(a.domid) === DS.RUNNING);
  const bit = IOREQ_BIT[p.kind];
  if (bit !== undefined) {
    if (p.kind === 'ioreq-delay') Atomics.store(m.control.w, CTL.IOREQ_DELAY_US, 50 + rng.below(500));
    Atomics.or(m.control.w, CTL.IOREQ_NEMESIS, bit);
    closing.push({ step: now + window, undo: () => void Atomics.and(m.control.w, CTL.IOREQ_NEMESIS, ~bit) });
    return 'transport';
  }
  switch (p.kind) {
    case 'memory-pressure': {
      const backends = [...new Set(live.filter((a) => m.dom.at(a.domid, DOM.PRIVILEGED) !== 0).map((a) => a.domid))];
      if (backends.length === 0) return undefined;
      const be = backends[rng.below(backends.length)]!;
      Atomics.store(store, xsKey(be, XS_KEY.MEMORY_PRESSURE), 2000 + rng.below(20000));
      closing.push({ step: now + window, undo: () => Atomics.store(store, xsKey(be, XS_KEY.MEMORY_PRESSURE), 0) });
      return `d${be}`;
    }
    case 'dm-retry-storm': {
      const backends = [...new Set(live.filter((a) => m.dom.at(a.domid, DOM.PRIVILEGED) !== 0).map((a) => a.domid))];
      if (backends.length === 0) return undefined;
      const be = backends[rng.below(backends.length)]!;
      // Broken for good: a device model that answers RETRY for ever must
      // cost its guests a bounded number of retries, not a hung vCPU.
      Atomics.store(store, xsKey(be, XS_KEY.DM_RETRY_STORM), 1);
      return `d${be}`;
    }
    case 'hang-vcpu': {
      if (live.length === 0) return undefined;
      const a = live[rng.below(live.length)]!;
      // Descheduled: not given a turn until then (PAUSED meanwhile, so it
      // holds no TLB anyone waits for). Not the vCPU's own hang word: a
      // vCPU that slept inside its step would sit on the stack, and a device
      // model there could answer nobody above it.
      a.hungUntil_us = clock_us + 1000 * (1 + rng.below(5));
      return a.name;
    }
    case 'crash-domain': {
      const fes = [...new Set(live.filter((a) => m.dom.at(a.domid, DOM.PRIVILEGED) === 0).map((a) => a.domid))];
      if (fes.length === 0) return undefined;
      const d = fes[rng.below(fes.length)]!;
      domainCrash(m, d, 'sim crash-domain');
      return `d${d}`;
    }
    case 'adversary-on': {
      const doms = [...new Set(live.map((a) => a.domid))].filter((d) => Atomics.load(store, xsKey(d, XS_KEY.ADVERSARY_ON)) === 0);
      if (doms.length === 0) return undefined;
      const d = doms[rng.below(doms.length)]!;
      Atomics.store(store, xsKey(d, XS_KEY.ADVERSARY_ON), 1);
      return `d${d}`;
    }
    default:
      return undefined;
  }
}

/**
 * A digest of the machine's state at the end (what the hash adds to the
 * decisions): every non-zero word of the regions, and every 61st of RAM.
 */
function stateDigest(host: Host): number {
  const s = host.m.sabs;
  let h = FNV_OFFSET;
  // The design's region up to what is derived from its state (an index: MemoryDesign.stateBytes).
  const design = designOf(host.m).stateBytes?.(host.m.config) ?? s.design.byteLength;
  for (const sab of [s.frametable, s.heap, s.domains, s.p2m, s.grants, s.design, s.ioreqSlots, s.vcpus, s.store, s.reach]) h = digestWords(h, sab, 1, sab === s.design ? design : sab.byteLength);
  return digestWords(h, s.frames, 61);
}

/** Bytes compared at once against zeros by stateDigest. */
const DIGEST_CHUNK_BYTES = 4096;
const ZERO_CHUNK = Buffer.alloc(DIGEST_CHUNK_BYTES);

/**
 * Fold word i of `sab` (each i a multiple of `stride`) into h, as (i, word),
 * for every non-zero one. A zero word adds nothing, so chunks that are all
 * zeros — most of RAM and of the regions at the end of a run, every frame
 * never used or scrubbed since — are skipped by a native compare (memcmp)
 * instead of read word by word: the same digest, a tenth of the time.
 */
export function digestWords(h0: number, sab: SharedArrayBuffer, stride: number, byteLength = sab.byteLength): number {
  let h = h0;
  const bytes = Buffer.from(sab, 0, byteLength);
  const w = new Int32Array(sab, 0, byteLength >> 2);
  for (let off = 0; off < bytes.length; off += DIGEST_CHUNK_BYTES) {
    const end = Math.min(off + DIGEST_CHUNK_BYTES, bytes.length);
    if (bytes.compare(ZERO_CHUNK, 0, end - off, off, end) === 0) continue;
    const first = Math.ceil(off / 4 / stride) * stride;
    for (let i = first; i < end >> 2; i += stride) if (w[i] !== 0) h = fnv(fnv(h, i), w[i]!);
  }
  return h;
}

/** The lock owner tag of operations the simulator runs on behalf of "another pCPU". */
const RACER_TAG = 0x7ffffff0;

/**
 * What other vCPUs do in the middle of a hypercall, at the hook points of
 * hypervisor/xen/hooks.ts. Where the hypercall holds no lock, any other vCPU
 * may run a step there (SimSched.preempt). Where it does, only what needs
 * none of those locks can get in, so the simulator runs that operation
 * itself, with the held-lock stack set aside so lockdep sees another thread:
 *  - steal.window: dom0 foreign-maps the page being stolen (device DMA);
 *  - grant.after_validate: the granter rewrites the frame of the entry
 *    being mapped (a guest store needs no lock: the double-fetch window);
 *  - revoke.before_remove: a vCPU of the frontend, on another pCPU, reads
 *    a page being revoked while its entry is still there (an access takes
 *    no lock; the isolation oracle asks whether the frontend still has the
 *    right it uses: revoke-put-before-flush took it away too early).
 */
class Racer {
  readonly counts: Record<string, number> = {};
  private mapped = false;
  constructor(
    private readonly m: Host['m'],
    private readonly sim: SimSched,
    private readonly at_gfn: number,
    private readonly actors: readonly Actor[],
  ) {}

  at(name: HookName, a: number, b: number): void {
    const sim = this.sim;
    // A swarm seed's death stage strikes here if this is its occurrence (death.ts).
    const died = deathAt(this.m, name, a, sim.current >= 0 ? this.actors[sim.current]!.domid : -1);
    if (died >= 0) this.count(`death:d${died}`);
    // A vCPU waiting for its ioreq already lets the others run (the simulator's nested wait). The points
    // death stages added are none of another vCPU's yet: a step there would change every seed's run.
    if (name === 'ioreq.wait' || name === 'map.after_checks' || name === 'steal.after_checks' || name === 'return.after_checks' || name === 'foreign_map.placed') return;
    if (sim.preempt()) this.count(STEP_KEY[name]);
    switch (name) {
      case 'steal.window':
        if (this.at_gfn >= 0 && !this.mapped && sim.rng.chance(0.5)) this.asAnother(() => {
          this.mapped = foreignMap(this.m, 0, a, b, this.at_gfn) === 0;
          if (this.mapped) this.count('steal.window:foreign_map');
        });
        break;
      case 'revoke.before_remove':
        if (sim.rng.chance(0.5)) this.asAnother(() => this.touch(a, b));
        break;
      case 'grant.after_validate':
        if (this.flipped === undefined && sim.rng.chance(0.25)) {
          const si = this.m.grants.sharedIdx(a, b);
          const frame = Atomics.load(this.m.grants.shared, si + 1);
          this.store(a, b, frame ^ 1);
          this.flipped = { d: a, ref: b, frame };
          this.count('grant.after_validate:rewrite');
        }
        break;
      default:
        break;
    }
  }

  /**
   * When the hypercall that saw the flip returns (or, sooner, before the
   * next decision), the granter flips its entry back, as a double-fetch
   * attacker does: no later hypercall meets the rewritten frame.
   */
  unflip(): void {
    const f = this.flipped;
    if (f === undefined) return;
    this.flipped = undefined;
    this.store(f.d, f.ref, f.frame);
  }
  private flipped: { d: number; ref: number; frame: number } | undefined;

  private store(d: number, ref: number, frame: number): void {
    guestStoreBegin(this.m, d, ref);
    Atomics.store(this.m.grants.shared, this.m.grants.sharedIdx(d, ref) + 1, frame);
    guestStoreEnd(this.m, d, ref);
  }

  /**
   * One read of `gfn` by a vCPU of `d` that is off the stack and not
   * descheduled (PAUSED: it runs on another pCPU for the length of the
   * access, then is paused again), if there is one.
   */
  private touch(d: number, gfn: number): void {
    if (this.m.dom.state(d) !== DS.RUNNING) return;
    const a = this.actors.find((x) => x.domid === d && !x.retired && x.hungUntil_us <= this.sim.clock_us && this.m.vcpus.at(x.cpu.id.slot, VC.STATE) === VS.PAUSED);
    if (a === undefined) return;
    a.cpu.resume();
    a.cpu.read32(gfnOf(gfn), 0);
    a.cpu.pause();
    this.count('revoke.before_remove:access');
  }

  /** Before the next decision: dom0's DMA mapping of the racer is over (it lasted one hypercall and what came right after). */
  settle(): void {
    if (this.mapped && this.m.dom.state(0) === DS.RUNNING) removeFromPhysmap(this.m, 0, this.at_gfn);
    this.mapped = false;
  }

  private asAnother(f: () => void): void {
    const tag = threadTag();
    const held = this.m.locks.stashHeld();
    setThreadTag(RACER_TAG);
    try {
      f();
    } finally {
      setThreadTag(tag);
      this.m.locks.unstashHeld(held);
    }
    this.sim.hash = fnv(this.sim.hash, 0x4ace);
  }

  private count(k: string): void {
    this.counts[k] = (this.counts[k] ?? 0) + 1;
    this.sim.hash = fnv(this.sim.hash, k.length);
  }
}
