/**
 * Liveness mode of `xgsim sim` (issue 19; TigerBeetle's VOPR): a run goes on
 * for a quiet tail after its horizon, with every nemesis stopped and a fair
 * scheduler (the random walk: PCT would starve all but one vCPU for the
 * whole tail), and must then show that the machine still moves — a safety
 * checker sees nothing wrong in a machine where nothing happens any more.
 * The tail's second half starts once the nemeses' timed recoveries are
 * over too (a request an `ioreq-drop` lost just before the tail comes back
 * LOST_POLL_MS of simulated time later), so the tail grows until then.
 * Over its second half:
 *  - every vCPU of a running domain completed a step (no vCPU hung in a
 *    hypercall, a wait or a spin);
 *  - every ioreq it had in flight at the half (a FAULT among them) was
 *    answered and reached NONE (Xen's wait in hvm_wait_for_io has no
 *    timeout: an ioreq never answered is a vCPU hung for ever);
 *  - every Revoke of the tail returned within its bound
 *    (TLB_SHOOTDOWN_BOUND_MS: a shootdown waits at most that long).
 * A run that fails one of these fails with `liveness: …`, not `stuck`.
 */
import { TLB_SHOOTDOWN_BOUND_MS } from '../../layout/constants.js';
import { IOS } from '../../layout/ioreq-slots.js';
import { VC } from '../../layout/vcpus.js';
import { DS } from '../../layout/domains.js';
import { IOREQ_STATE, IOREQ_TYPE } from '../../public/ioreq.js';
import { VS } from '../../xen/vcpu.js';
import type { Host } from '../host.js';
import { LOST_POLL_MS } from '../../../transport/ring.js';
import type { SimSched } from './sim-sched.js';

/** Decisions of the quiet tail after the steps of a run (a tenth of the default 20 000). */
export const LIVENESS_TAIL_STEPS = 2000;

/** What liveness needs of a simulated vCPU. */
export interface LiveActor {
  readonly name: string;
  readonly domid: number;
  readonly slot: number;
  readonly retired: boolean;
  /** Workload steps it completed. */
  completed(): number;
  /** Revoke latencies it measured (simulated µs), if it Revokes. */
  revokes(): readonly number[];
}

interface Snapshot {
  completed: number;
  seq: number;
  state: number;
}

export class Liveness {
  private quiet = false;
  private quietAt_us = 0;
  private snap: Snapshot[] | undefined;
  private revokesAtQuiet: number[] = [];
  /** The last decision of the tail, once its half is reached. */
  private endStep = Infinity;

  constructor(
    private readonly sim: SimSched,
    private readonly m: Host['m'],
    private readonly actors: readonly LiveActor[],
    private readonly excluded: ReadonlySet<number>,
    /** The decision at which the tail starts (the run's steps). */
    readonly start: number,
    readonly tail: number,
  ) {}

  /** Whether the tail is over (its checks are due). */
  get due(): boolean {
    return this.sim.steps >= this.endStep;
  }

  private get half(): number {
    return this.tail - Math.floor(this.tail / 2);
  }

  /** Before each decision: stop the nemeses once (`stopNemeses`) at the start of the tail, look at the machine at its half. */
  tick(stopNemeses: () => void): void {
    const sim = this.sim;
    const steps = sim.steps;
    if (!this.quiet && steps >= this.start) {
      this.quiet = true;
      this.quietAt_us = sim.clock_us;
      stopNemeses();
      this.revokesAtQuiet = this.actors.map((a) => a.revokes().length);
    }
    // A run that failed stops where it failed (SimSched.failedHook): no tail to stretch.
    if (!this.quiet || this.snap !== undefined || sim.failed_at !== null) return;
    if (steps < this.start + Math.floor(this.tail / 2) || sim.clock_us < this.quietAt_us + LOST_POLL_MS * 1000) {
      // Not at the half yet: the run must not end before it.
      sim.o.max_steps = Math.max(sim.o.max_steps, steps + this.half + 1);
      return;
    }
    const s = this.m.ios.slots;
    this.snap = this.actors.map((a) => {
      const i = this.m.ios.idx(a.slot);
      return { completed: a.completed(), seq: Atomics.load(s, i + IOS.SEQ), state: Atomics.load(s, i + IOS.STATE) };
    });
    this.endStep = steps + this.half;
    sim.o.max_steps = this.endStep;
  }

  /** At the last decision of the tail, before the machine is stopped (a stop abandons the waits): what did not move. */
  check(): string[] {
    const snap = this.snap;
    if (snap === undefined) return [];
    const out: string[] = [];
    // The unanswered ioreqs first: a vCPU that made no progress is often only waiting behind one.
    const stalled: string[] = [];
    const half = this.half;
    this.actors.forEach((a, k) => {
      if (a.retired || this.excluded.has(k) || this.m.dom.state(a.domid) !== DS.RUNNING) return;
      const was = snap[k]!;
      const i = this.m.ios.idx(a.slot);
      const state = Atomics.load(this.m.ios.slots, i + IOS.STATE);
      const seq = Atomics.load(this.m.ios.slots, i + IOS.SEQ);
      if (was.state !== IOREQ_STATE.NONE && state !== IOREQ_STATE.NONE && seq === was.seq) {
        const type = this.m.ios.slots[i + IOS.TYPE] === IOREQ_TYPE.FAULT ? 'FAULT' : 'ioreq';
        const gfn = this.m.ios.slots[i + IOS.GFN]!;
        out.push(`liveness: ${a.name}'s ${type} ${seq} (gfn 0x${gfn.toString(16)}) not answered in the last ${half} decisions of the quiet tail (state ${state})`);
      } else if (a.completed() === was.completed) {
        stalled.push(`liveness: ${a.name} made no progress in the last ${half} decisions of the quiet tail (${whatDoing(Atomics.load(this.m.vcpus.w, this.m.vcpus.idx(a.slot, VC.STATE)))})`);
      }
      const late = a.revokes().slice(this.revokesAtQuiet[k] ?? 0).find((us) => us > TLB_SHOOTDOWN_BOUND_MS * 1000);
      if (late !== undefined) out.push(`liveness: a Revoke by ${a.name} took ${Math.round(late)} µs, above its bound of ${TLB_SHOOTDOWN_BOUND_MS} ms`);
    });
    return [...out, ...stalled];
  }
}

function whatDoing(state: number): string {
  switch (state) {
    case VS.HYPERVISOR:
      return 'in a hypercall';
    case VS.BLOCKED:
      return 'blocked';
    case VS.GUEST:
      return 'running guest code';
    default:
      return 'descheduled: given no turn, or every turn ended inside a wait';
  }
}
