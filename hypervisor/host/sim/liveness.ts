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
 *  - every buffered ioreq posted before the half was consumed by its
 *    server (the ring's READ reached the half's WRITE): a posted write is
 *    answered by nobody, and a device model that stops taking them hangs
 *    nobody either — the ring fills and the writes go the synchronous way;
 *  - every Revoke of the tail returned within its bound
 *    (TLB_SHOOTDOWN_BOUND_MS: a shootdown waits at most that long).
 * A run that fails one of these fails with `liveness: …`, not `stuck`.
 * A vCPU is judged over the decisions that were its own: those in which
 * the one-thread simulator held it (SimSched.held: beneath other frames
 * with its wait over, or off a full stack) are not, since Xen would have
 * run it; the half stretches until each vCPU without progress had a half
 * of its own, and one that did not by LIVENESS_STRETCH_HALVES makes the
 * run `stuck` (docs/verification.md §1).
 */
import { MAX_IOREQ_SERVERS_PER_DOMAIN, TLB_SHOOTDOWN_BOUND_MS } from '../../layout/constants.js';
import { IOS } from '../../layout/ioreq-slots.js';
import { BUF } from '../../layout/ioreq.js';
import { VC } from '../../layout/vcpus.js';
import { DS } from '../../layout/domains.js';
import { IOREQ_STATE, IOREQ_TYPE } from '../../public/ioreq.js';
import { VS } from '../../xen/vcpu.js';
import type { Host } from '../host.js';
import { LOST_POLL_MS } from '../../../transport/ring.js';
import type { SimSched } from './sim-sched.js';

/** Decisions of the quiet tail after the steps of a run (a tenth of the default 20 000). */
export const LIVENESS_TAIL_STEPS = 2000;

/**
 * How far the tail's second half may stretch, in halves, for a vCPU that the
 * simulator held (SimSched.held: beneath other vCPUs' frames) to have
 * had a half's worth of decisions of its own. A vCPU held for longer than
 * that is not judged: the run is `stuck` (a limit of one thread), not failed.
 */
export const LIVENESS_STRETCH_HALVES = 8;

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

/** A buffered ring at the half: its domain, server, and the position its vCPUs had posted up to. */
interface RingSnapshot {
  d: number;
  s: number;
  write: number;
}

export class Liveness {
  private quiet = false;
  private quietAt_us = 0;
  private snap: Snapshot[] | undefined;
  private rings: RingSnapshot[] = [];
  private revokesAtQuiet: number[] = [];
  /** The last decision of the tail, once its half is reached. */
  private endStep = Infinity;
  /** The decision of the snapshot (the half), and the last one the tail may stretch to. */
  private snapStep = 0;
  private capStep = Infinity;
  /** Per actor: decisions since the snapshot during which the simulator held it (SimSched.held). */
  private heldFor: number[] = [];
  private countedAt = 0;
  /** Set by check(): the vCPUs the tail could not judge (held by the simulator past the stretch). */
  inconclusive: string | null = null;

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
    if (!this.quiet || sim.failed_at !== null) return;
    if (this.snap !== undefined) {
      this.countHeld();
      return;
    }
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
    const io = this.m.ioreq;
    this.rings = [];
    for (let d = 0; d < this.m.nd; d++) {
      for (let k = 0; k < MAX_IOREQ_SERVERS_PER_DOMAIN; k++) if (io.active(d, k) && io.bufioreq(d, k)) this.rings.push({ d, s: k, write: Atomics.load(io.buf, io.bufIdx(d, k) + BUF.WRITE) });
    }
    this.endStep = steps + this.half;
    this.snapStep = this.countedAt = steps;
    this.capStep = steps + LIVENESS_STRETCH_HALVES * this.half;
    this.heldFor = this.actors.map(() => 0);
    sim.o.max_steps = this.endStep;
  }

  /**
   * Before each decision of the second half: which vCPUs the simulator holds
   * beneath other frames (LIFO nesting: a vCPU whose ioreq was answered, or
   * whose sleep is over, resumes only once every frame above it returned).
   * Those decisions are not the vCPU's to make progress in: at the end of
   * the half, the tail goes on until every vCPU without progress has had a
   * half of its own, up to LIVENESS_STRETCH_HALVES halves.
   */
  private countHeld(): void {
    const sim = this.sim;
    const steps = sim.steps;
    if (steps === this.countedAt) return; // no decision since the last look (an idle pick)
    const n = steps - this.countedAt;
    this.countedAt = steps;
    // A vCPU whose ioreq is not answered yet waits for the device model, not for the simulator, however
    // long ago its wait's 50 ms ran out (sendIoreq waits again).
    for (let k = 0; k < this.actors.length; k++) if (sim.held(k) && !this.awaitsAnswer(k)) this.heldFor[k]! += n;
    if (steps < this.endStep || steps >= this.capStep) return;
    let need = 0;
    let unanswered = false;
    this.actors.forEach((a, k) => {
      if (!this.judged(a, k)) return;
      unanswered ||= this.unanswered(k);
      if (a.completed() === this.snap![k]!.completed) need = Math.max(need, this.half - this.own(k));
    });
    // An ioreq unanswered, or a ring not drained, for the whole half fails the run whatever the stretch shows (the device model is never held).
    if (need <= 0 || unanswered || this.undrained().length > 0) return;
    this.endStep = Math.min(this.capStep, steps + need);
    sim.o.max_steps = this.endStep;
  }

  /** Decisions since the snapshot in which vCPU k was not held by the simulator. */
  private own(k: number): number {
    return this.countedAt - this.snapStep - this.heldFor[k]!;
  }

  /** Whether vCPU k's ioreq is sent and not answered (READY or INPROCESS). */
  private awaitsAnswer(k: number): boolean {
    const state = Atomics.load(this.m.ios.slots, this.m.ios.idx(this.actors[k]!.slot) + IOS.STATE);
    return state === IOREQ_STATE.READY || state === IOREQ_STATE.INPROCESS;
  }

  /** Whether the ioreq vCPU k had in flight at the half is still not answered (IORESP_READY is answered). */
  private unanswered(k: number): boolean {
    const was = this.snap![k]!;
    return was.state !== IOREQ_STATE.NONE && this.awaitsAnswer(k) && Atomics.load(this.m.ios.slots, this.m.ios.idx(this.actors[k]!.slot) + IOS.SEQ) === was.seq;
  }

  /**
   * The buffered rings whose server has not consumed what was posted before
   * the half (READ short of the half's WRITE), of domains still running
   * and servers still there (a server made again starts empty).
   */
  private undrained(): Array<RingSnapshot & { read: number }> {
    const io = this.m.ioreq;
    return this.rings
      .filter((r) => this.m.dom.state(r.d) === DS.RUNNING && io.active(r.d, r.s) && io.bufioreq(r.d, r.s))
      .map((r) => ({ ...r, read: Atomics.load(io.buf, io.bufIdx(r.d, r.s) + BUF.READ) }))
      .filter((r) => ((r.read - r.write) | 0) < 0);
  }

  private judged(a: LiveActor, k: number): boolean {
    return !a.retired && !this.excluded.has(k) && this.m.dom.state(a.domid) === DS.RUNNING;
  }

  /** At the last decision of the tail, before the machine is stopped (a stop abandons the waits): what did not move. */
  check(): string[] {
    const snap = this.snap;
    if (snap === undefined) return [];
    const out: string[] = [];
    // The unanswered ioreqs first: a vCPU that made no progress is often only waiting behind one.
    const stalled: string[] = [];
    const half = this.half;
    const unjudged: string[] = [];
    const decisions = this.countedAt - this.snapStep;
    this.actors.forEach((a, k) => {
      if (!this.judged(a, k)) return;
      const was = snap[k]!;
      const i = this.m.ios.idx(a.slot);
      const state = Atomics.load(this.m.ios.slots, i + IOS.STATE);
      const seq = Atomics.load(this.m.ios.slots, i + IOS.SEQ);
      // IORESP_READY is answered: whether the vCPU took the answer is the progress check's question.
      if (this.unanswered(k)) {
        const type = this.m.ios.slots[i + IOS.TYPE] === IOREQ_TYPE.FAULT ? 'FAULT' : 'ioreq';
        const gfn = this.m.ios.slots[i + IOS.GFN]!;
        out.push(`liveness: ${a.name}'s ${type} ${seq} (gfn 0x${gfn.toString(16)}) not answered in the last ${decisions} decisions of the quiet tail (state ${state})`);
      } else if (a.completed() === was.completed) {
        const held = this.heldFor[k]!;
        const doing = whatDoing(Atomics.load(this.m.vcpus.w, this.m.vcpus.idx(a.slot, VC.STATE)));
        // A vCPU that had less than a half of its own is not judged: the simulator held it (its waits were over).
        if (this.own(k) < half) unjudged.push(`${a.name} (${doing}) held by the simulator (beneath other vCPUs' frames, or off a full stack) for ${held} of the last ${decisions} decisions of the quiet tail`);
        else stalled.push(`liveness: ${a.name} made no progress in the last ${decisions} decisions of the quiet tail (${doing}${held > 0 ? `; held by the simulator for ${held} of them` : ''})`);
      }
      const late = a.revokes().slice(this.revokesAtQuiet[k] ?? 0).find((us) => us > TLB_SHOOTDOWN_BOUND_MS * 1000);
      if (late !== undefined) out.push(`liveness: a Revoke by ${a.name} took ${Math.round(late)} µs, above its bound of ${TLB_SHOOTDOWN_BOUND_MS} ms`);
    });
    // Posted writes are answered by nobody: the ring's READ reaching what was posted before the half is their answer.
    for (const r of this.undrained()) {
      const who = this.actors.find((a) => a.domid === r.d)?.name.split('/')[0] ?? `d${r.d}`;
      out.push(`liveness: ${who}'s buffered ioreqs before position ${r.write} not consumed by its server ${r.s} in the last ${decisions} decisions of the quiet tail (read at ${r.read})`);
    }
    const failures = [...out, ...stalled];
    if (failures.length === 0 && unjudged.length > 0) this.inconclusive = `liveness could not judge ${unjudged.join(', ')} (one thread: a frame resumes only after those above it)`;
    if (process.env['XGSIM_LIVENESS_DUMP'] === '1' && (failures.length > 0 || unjudged.length > 0)) this.dump();
    return failures;
  }

  /** XGSIM_LIVENESS_DUMP=1: the simulator's stack and every vCPU's state at a liveness failure, on stderr. */
  private dump(): void {
    const { sim, m } = this;
    const lines = [`liveness dump at decision ${sim.steps} (snapshot at ${this.snapStep}), simulated ${Math.round(sim.clock_us)} µs`, `stack (bottom first): ${sim.stackOrder().map((k) => this.actors[k]!.name).join(' > ') || '(empty)'}`];
    this.actors.forEach((a, k) => {
      const i = m.ios.idx(a.slot);
      const io = (f: number): number => Atomics.load(m.ios.slots, i + f);
      const was = this.snap![k]!;
      lines.push(`${a.name}: domain state ${m.dom.state(a.domid)}, vCPU ${whatDoing(Atomics.load(m.vcpus.w, m.vcpus.idx(a.slot, VC.STATE)))}${a.retired ? ', retired' : ''}; steps ${was.completed} → ${a.completed()}; ioreq seq ${was.seq} → ${io(IOS.SEQ)}, state ${was.state} → ${io(IOS.STATE)}, type ${io(IOS.TYPE)}, gfn 0x${(io(IOS.GFN) >>> 0).toString(16)}; held ${this.heldFor[k] ?? 0}${sim.held(k) ? ' (held now)' : ''}`);
      const w = sim.waitingIn(k);
      if (w !== undefined) {
        lines.push(`  in a wait: word[${w.index}] ${Atomics.load(w.word, w.index)} (waits while ${w.expected}), deadline ${w.deadline_us === Infinity ? 'none' : `${Math.round(w.deadline_us)} µs`}`);
        if (w.site !== undefined) lines.push(...w.site.split('\n').slice(1, 12).map((l) => `  ${l.trim()}`));
      }
    });
    for (const r of this.rings) lines.push(`d${r.d} server ${r.s}'s buffered ring: write ${r.write} at the snapshot, read ${Atomics.load(m.ioreq.buf, m.ioreq.bufIdx(r.d, r.s) + BUF.READ)} now`);
    process.stderr.write(`${lines.join('\n')}\n`);
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
