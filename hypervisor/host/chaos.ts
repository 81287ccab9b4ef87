/**
 * The nemeses of `xgsim chaos`, executed inside a host process against its
 * running machine. The orchestrator expands a plan (schedule and random
 * rates, seeded) into a concrete list of actions; this file carries each
 * one out, logs it with its time and target, and measures recovery: the
 * time from the end of the injection until every vCPU of every running
 * domain has made progress again (its heartbeat moved).
 */
import { RedisAdmin } from '../../transport/redis-admin.js';
import { domainCrash } from '../xen/domain-crash.js';
import { toolstackDestroy } from './toolstack.js';
import type { Machine } from '../xen/machine.js';
import { type Injection, type NemesisAction, type NemesisKind, WINDOW_DEFAULT_MS } from './nemesis.js';
import type { HostSpec } from './spec.js';

export { NEMESIS_KINDS, WINDOW_DEFAULT_MS, type Injection, type NemesisAction, type NemesisKind } from './nemesis.js';

/** What the nemeses need of the host they run in (host.ts's Host). */
export interface ChaosHost {
  readonly m: Machine;
  readonly spec: HostSpec;
  allVcpusRunning(bound_ms: number): Promise<boolean>;
  killDeviceModel(hold?: boolean): void;
  releaseDeviceModel(): void;
}
import { CTL, NEMESIS_IOREQ } from '../layout/control.js';
import { DOM, DS } from '../layout/domains.js';
import { VC } from '../layout/vcpus.js';
import { XS_KEY, xsKey } from '../public/xenstore.js';

const IOREQ_BITS: Partial<Record<NemesisKind, number>> = {
  'ioreq-delay': NEMESIS_IOREQ.DELAY,
  'ioreq-duplicate': NEMESIS_IOREQ.DUPLICATE,
  'ioreq-drop': NEMESIS_IOREQ.DROP,
  'ioreq-reorder': NEMESIS_IOREQ.REORDER,
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Chaos {
  readonly log: Injection[] = [];
  private rng: number;
  private t0: number;
  private readonly pending: Array<{ inj: Injection; since: number; beats: Map<number, number> }> = [];
  private recoveryTimer: NodeJS.Timeout | undefined;
  private admin: RedisAdmin | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly host: ChaosHost,
    t0 = performance.now(),
  ) {
    this.t0 = t0;
    this.rng = (host.spec.seed ^ 0x5bd1e995) | 1;
  }

  private random(): number {
    this.rng ^= this.rng << 13;
    this.rng ^= this.rng >>> 17;
    this.rng ^= this.rng << 5;
    return (this.rng >>> 0) / 2 ** 32;
  }

  private now(): number {
    return performance.now() - this.t0;
  }

  /** The moment injections' `at_ms` count from, as performance.now() of this thread (the timeline maps them onto its clock). */
  get t0_ms(): number {
    return this.t0;
  }

  /**
   * Arm every action on a timer relative to t0 — which is when every vCPU
   * has made progress (worker threads take a while to come up on two cores;
   * an injection before the guests run would test nothing).
   */
  schedule(actions: readonly NemesisAction[]): void {
    void this.host.allVcpusRunning(15_000).then(() => {
      if (this.stopped) return;
      this.t0 = performance.now();
      this.arm(actions);
    });
  }

  private arm(actions: readonly NemesisAction[]): void {
    for (const a of actions) {
      const t = setTimeout(
        () => {
          this.timers.delete(t);
          void this.inject(a);
        },
        Math.max(0, a.at_ms - this.now()),
      );
      this.timers.add(t);
    }
    this.recoveryTimer = setInterval(() => this.checkRecovery(), 5);
  }

  /** Stop injecting, close every open window (so shutdown finds a sane machine), report. */
  async stop(): Promise<Injection[]> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.recoveryTimer !== undefined) clearInterval(this.recoveryTimer);
    const m = this.host.m;
    Atomics.store(m.control.w, CTL.IOREQ_NEMESIS, 0);
    Atomics.store(m.control.w, CTL.MIDMAP_FE, 0);
    const store = new Int32Array(m.sabs.store);
    for (const d of this.host.spec.domains) Atomics.store(store, xsKey(d.domid, XS_KEY.MEMORY_PRESSURE), 0);
    this.host.releaseDeviceModel();
    if (this.admin !== undefined) {
      await this.admin.close();
      this.admin = undefined;
    }
    return this.log;
  }

  private domain(name: string | undefined, eligible: (d: HostSpec['domains'][number]) => boolean): HostSpec['domains'][number] | undefined {
    const live = this.host.spec.domains.filter((d) => this.host.m.dom.state(d.domid) === DS.RUNNING && eligible(d));
    if (name !== undefined) return live.find((d) => d.name === name);
    return live.length === 0 ? undefined : live[Math.floor(this.random() * live.length)];
  }

  private backendOf(name: string | undefined): HostSpec['domains'][number] | undefined {
    return this.domain(name, (d) => this.host.spec.domains.some((f) => f.backend === d.domid) && d.devices.length > 0);
  }

  /** Carry out one action now. Never throws: a nemesis that cannot act is logged as skipped. */
  async inject(a: NemesisAction): Promise<Injection> {
    const inj: Injection = { at_ms: Math.round(this.now()), kind: a.kind, target: a.target ?? '' };
    this.log.push(inj);
    if (this.stopped) {
      inj.skipped = 'the run was ending';
      return inj;
    }
    const m = this.host.m;
    const skip = (why: string): Injection => {
      inj.skipped = why;
      return inj;
    };
    const window = a.for_ms ?? WINDOW_DEFAULT_MS[a.kind] ?? 0;
    const closeAfter = async (ms: number, close: () => void): Promise<void> => {
      await this.windowed(ms);
      close();
    };
    try {
      switch (a.kind) {
        case 'kill-device-model': {
          const be = this.backendOf(a.target);
          if (be === undefined) return skip('no running backend with a device model');
          inj.target = be.name;
          const hold = a.for_ms ?? 0;
          this.host.killDeviceModel(hold > 0);
          inj.detail = hold > 0 ? `held down ${hold} ms` : 'restarted at once';
          if (hold > 0) await closeAfter(hold, () => this.host.releaseDeviceModel());
          break;
        }
        case 'crash-domain': {
          const d = this.domain(a.target, (x) => x.role === 'frontend');
          if (d === undefined) return skip('no running frontend');
          inj.target = d.name;
          domainCrash(m, d.domid, 'chaos crash-domain');
          inj.detail = 'crashed (on_crash=destroy)';
          break;
        }
        case 'destroy-mid-map': {
          const d = this.domain(a.target, (x) => x.role === 'frontend' && x.backend !== undefined && x.workload.kind === 'render');
          if (d === undefined) return skip('no running frontend a backend Maps into');
          inj.target = d.name;
          inj.detail = await this.destroyMidMap(d.domid);
          break;
        }
        case 'memory-pressure': {
          const be = this.backendOf(a.target);
          if (be === undefined) return skip('no running GPU backend');
          inj.target = be.name;
          const rate = a.rate ?? 500;
          const store = new Int32Array(m.sabs.store);
          Atomics.store(store, xsKey(be.domid, XS_KEY.MEMORY_PRESSURE), rate);
          inj.detail = `+${rate} MMU-notifier evictions/s for ${window} ms`;
          await closeAfter(window, () => Atomics.store(store, xsKey(be.domid, XS_KEY.MEMORY_PRESSURE), 0));
          break;
        }
        case 'redis-kill':
        case 'redis-pause': {
          const tr = this.host.spec.transport;
          if (tr?.kind !== 'redis') return skip('the transport is the ring, not Redis');
          const refused = this.host.spec.redis_nemeses_refused;
          if (refused !== undefined) return skip(refused);
          this.admin ??= new RedisAdmin(tr.url, tr.namespace);
          inj.target = 'redis';
          if (a.kind === 'redis-kill') {
            const n = await this.admin.killRunConnections();
            inj.detail = `CLIENT KILL of ${n} connections`;
            if (n === 0) inj.skipped = 'no connection of this run was open';
          } else {
            await this.admin.pauseWrites(window);
            inj.detail = `CLIENT PAUSE ${window} ms WRITE`;
            await this.windowed(window);
          }
          break;
        }
        case 'ioreq-delay':
        case 'ioreq-duplicate':
        case 'ioreq-drop':
        case 'ioreq-reorder': {
          if (!this.host.spec.domains.some((d) => d.devices.length > 0)) return skip('no IOREQ server in this topology');
          const bit = IOREQ_BITS[a.kind]!;
          inj.target = 'transport';
          if (a.kind === 'ioreq-delay') Atomics.store(m.control.w, CTL.IOREQ_DELAY_US, Math.round((a.delay_ms ?? 20) * 1000));
          Atomics.or(m.control.w, CTL.IOREQ_NEMESIS, bit);
          inj.detail = `${window} ms${a.kind === 'ioreq-delay' ? `, ${a.delay_ms ?? 20} ms per batch` : ''}`;
          await closeAfter(window, () => Atomics.and(m.control.w, CTL.IOREQ_NEMESIS, ~bit));
          break;
        }
        case 'hang-vcpu': {
          const d = this.domain(a.target, () => true);
          if (d === undefined) return skip('no running domain');
          const v = a.vcpu ?? Math.floor(this.random() * d.vcpus);
          if (v >= d.vcpus) return skip(`${d.name} has no vCPU ${v}`);
          inj.target = `${d.name} vCPU ${v}`;
          Atomics.store(m.vcpus.w, m.vcpus.idx(m.dom.at(d.domid, DOM.VCPU_BASE) + v, VC.HANG_MS), window);
          inj.detail = `descheduled ${window} ms`;
          await this.windowed(window);
          break;
        }
        case 'adversary-on': {
          const store = new Int32Array(m.sabs.store);
          const d = this.domain(a.target, (x) => x.workload.kind === 'adversary' && (x.workload as Record<string, unknown>)['dormant'] === true && Atomics.load(store, xsKey(x.domid, XS_KEY.ADVERSARY_ON)) === 0);
          if (d === undefined) return skip('no dormant adversary left');
          inj.target = d.name;
          Atomics.store(store, xsKey(d.domid, XS_KEY.ADVERSARY_ON), 1);
          inj.detail = 'switched on';
          break;
        }
      }
    } catch (e) {
      inj.skipped = `failed: ${e instanceof Error ? e.message : String(e)}`;
      return inj;
    }
    inj.end_ms = Math.round(this.now());
    this.watchRecovery(inj);
    return inj;
  }

  /** Wait out a window, cut short if the run ends. */
  private async windowed(ms: number): Promise<void> {
    const end = this.now() + ms;
    while (!this.stopped && this.now() < end) await sleep(Math.min(20, end - this.now()));
  }

  /**
   * Arm the rendezvous in dmMap, wait for a Map into `fe` to begin, then
   * destroy fe while that Map goes on (it waits for us, bounded, holding no
   * lock; then both race for fe's locks).
   */
  private async destroyMidMap(fe: number): Promise<string> {
    const m = this.host.m;
    Atomics.store(m.control.w, CTL.MIDMAP_FE, fe + 1);
    const until = this.now() + 3000;
    while (!this.stopped && this.now() < until && Atomics.load(m.control.w, CTL.MIDMAP_FE) === fe + 1) {
      const w = Atomics.waitAsync(m.control.w, CTL.MIDMAP_FE, fe + 1, 20);
      if (w.async) await w.value;
    }
    const hit = Atomics.compareExchange(m.control.w, CTL.MIDMAP_FE, -(fe + 1), 0) === -(fe + 1);
    if (!hit) Atomics.store(m.control.w, CTL.MIDMAP_FE, 0);
    const rc = toolstackDestroy(m, fe);
    return hit ? `destroyed while a Map into it was under way (rc ${rc})` : `no Map began within 3 s; destroyed anyway (rc ${rc})`;
  }

  private beatsOfRunning(): Map<number, number> {
    const m = this.host.m;
    const out = new Map<number, number>();
    for (const d of this.host.spec.domains) {
      if (m.dom.state(d.domid) !== DS.RUNNING) continue;
      const base = m.dom.at(d.domid, DOM.VCPU_BASE);
      for (let v = 0; v < d.vcpus; v++) out.set(base + v, m.vcpus.at(base + v, VC.HEARTBEAT));
    }
    return out;
  }

  private watchRecovery(inj: Injection): void {
    this.pending.push({ inj, since: this.now(), beats: this.beatsOfRunning() });
  }

  /** Recovered: every vCPU still running at the end of the injection has moved since (or its domain is gone). */
  private checkRecovery(): void {
    if (this.pending.length === 0) return;
    const m = this.host.m;
    for (let i = 0; i < this.pending.length; ) {
      const p = this.pending[i]!;
      let all = true;
      for (const [slot, beat] of p.beats) {
        const d = m.vcpus.at(slot, VC.DOMID);
        if (m.dom.state(d) !== DS.RUNNING) continue;
        if (m.vcpus.at(slot, VC.HEARTBEAT) === beat) {
          all = false;
          break;
        }
      }
      if (all) {
        p.inj.recovery_ms = Math.round((this.now() - p.since) * 10) / 10;
        this.pending.splice(i, 1);
      } else i++;
    }
  }
}
