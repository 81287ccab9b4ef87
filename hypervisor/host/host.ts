/**
 * One simulated physical machine (docs/semantics.md §1): the hypervisor's main thread
 * plays toolstack and invariant checker; every vCPU of every domain is a
 * long-lived piscina task on its own worker thread.
 */
// Registers the memory-sharing designs with the Xen core before any Machine is built (xen/design.ts).
import { RTT_BUCKETS, rttQuantile } from '../layout/rtt-hist.js';
import '../designs/index.js';
import { DEFAULT_DESIGN } from '../xen/design.js';
import { Piscina } from 'piscina';
import { MAX_DOMAINS, P2M_DEFAULT_PADDR_BITS } from '../layout/constants.js';
import { p2mPoolPagesFor } from '../layout/p2m.js';
import { ioreqServerCreate } from '../xen/ioreq.js';
import { DEFAULT_EVICTIONS_PER_S, MAX_BLOB_PAGES, RES_PER_FE } from '../../domains/gpu/protocol.js';
import type { GpuEnv } from '../../domains/workload.js';
import type { GuestEnv } from '../../domains/index.js';
import { checkFramesConserved, checkNoLeaks, checkQuiescent, checkRunning } from '../checker/checker.js';
import { iomemAdd } from '../xen/domctl.js';
import { domainCreate, domainDestroy, populateRange, type DomainCreateSpec } from '../xen/domain.js';
import type { GrantLimits } from '../layout/grants.js';
import { INVARIANTS, type Invariant } from '../layout/invariants.js';
import { CTL } from '../layout/control.js';
import { DOM, DS, DS_NAMES } from '../layout/domains.js';
import { STAT, VC } from '../layout/vcpus.js';
import { IOS } from '../layout/ioreq-slots.js';
import { IOREQ_STATE } from '../public/ioreq.js';
import { createMachineSabs, Machine, type MachineSabs } from '../xen/machine.js';
import { distModule } from './worker-path.js';
import type { VcpuResult, VcpuTask } from './vcpu-worker.js';
import { RedisDispatcher, type DispatcherStats } from './redis-dispatcher.js';
import { DM_KILLED } from './transport-ends.js';
import { keysToWire, newRunKey, serverKey } from '../../transport/auth.js';
import { DEFAULT_TRANSPORT_TIMEOUT_MS } from '../../transport/constants.js';
import { isTransportFault, TRANSPORT_FAULT, TransportFault } from '../../transport/faults.js';
import { serverId } from '../../transport/redis-end.js';
import { RunAcl, withoutUser, type AclRole } from '../../transport/redis-acl.js';
import { VS } from '../xen/vcpu.js';
import { pcpuInit } from '../xen/schedule.js';
import { statusName } from '../public/errno.js';
import { toolstackDestroy } from './toolstack.js';
import { armDeath } from './death.js';
import { TraceCollector, type TraceData } from './trace-collector.js';
import { clearTracer, hostRing, setHostTracer } from '../xen/trace.js';
import { Chaos } from './chaos.js';
import type { Injection } from './nemesis.js';
import { hostPcpus, type HostDomainSpec, type HostSpec } from './spec.js';

export type { HostDomainSpec, HostSpec } from './spec.js';

/** The start gate opens at the latest this long after start(), every vCPU thread ready or not. */
export const RELEASE_BOUND_MS = 30_000;

/** A vCPU blocked this long without progress is reported by the watchdog. */
export const HUNG_VCPU_MS = 5000;

/** Gfns per vCPU above RAM for grant and foreign mappings. */
export const MAP_WINDOW_PAGES = 64;

/**
 * How long shutdown waits for the vCPU threads to leave their run loops
 * before it terminates them (and the run is `unknown`). Nothing a vCPU
 * waits on outlasts CTL.STOP by much — an ioreq is given up, a device
 * model's wait on Redis abandoned — so this only bounds a thread that is
 * stuck for another reason, generously for a loaded machine.
 */
export const VCPU_STOP_BOUND_MS = 10_000;

/**
 * How long the end of the run waits for a vCPU still in its step that
 * makes no progress — its heartbeat, bumped at every boundary, the end of
 * every ioreq included, unchanged — before it stops the vCPUs anyway
 * (Host.drain). Steps are bounded (docs/architecture.md §4) but not all
 * short: over Redis on the shared two-core machine at load 7, the
 * adversary's fault storm (32 FAULT ioreqs in one step, p99 round trip 72
 * ms) held the whole drain up to 1.3 s, while it progressed with every
 * answer; the drain took 2–6 ms over the ring, 368 ms for many-domains' 128
 * vCPUs. 2 s without a single answer or boundary is far beyond a round trip:
 * the vCPU waits on a device model that stopped answering (the run is
 * `unknown`). Under HUNG_VCPU_MS, so the drain alone never makes the
 * watchdog speak.
 */
export const DRAIN_GRACE_MS = 2000;

/** The drain ends this long after it began, progress or not: a step that progresses without ever ending (a livelock) is stopped too. */
export const DRAIN_BOUND_MS = 10_000;

/**
 * The longest gap between two periodic checks that is still checking the
 * whole run: ten check intervals, and at least 2 s. The checks are a timer
 * on the host's main thread, which also reaps crashed domains (a destroy
 * waits for their vCPUs), drains the timeline and runs the Redis dispatcher,
 * on two cores shared with every vCPU thread: timers firing late by tens of
 * ms, and checks of a large machine taking longer, are the normal case (the
 * longest gap measured with the default 250 ms: 285 ms for gpu-desktop,
 * 449 ms for many-domains' 1 GiB and 128 vCPUs, under loads of 3 to 19). A
 * gap of ten intervals is not that: the event loop was held up, and the
 * machine ran unchecked meanwhile (the run is `unknown`). The 2 s floor keeps
 * a short `--check-interval` from turning jitter into a blind spot.
 */
export function checkGapBound(interval_ms: number): number {
  return Math.max(10 * interval_ms, 2000);
}

export interface HostReport {
  duration_ms: number;
  domains: Array<{ name: string; domid: number; state: string; tot_pages: number; max_pages: number }>;
  stats: Record<string, number>;
  invariants: Record<string, { checks: number; violations: number }>;
  violations: Array<{ invariant: Invariant; text: string }>;
  frames: { total: number; free: number; conserved: boolean };
  threads: number[];
  vcpu_results: VcpuResult[];
  errors: string[];
  /** IOREQ round trips, log2 µs buckets. */
  rtt_hist: number[];
  transport: {
    kind: string;
    published: number;
    completed: number;
    duplicates_dropped: number;
    malformed: number;
    guests_crashed: number;
    dm_restarts: number;
    /** Messages dropped for what their sender may not say (docs/security.md): by the dispatcher and the device models. */
    rejected: number;
    /** Requests sent again, unanswered after a timeout or lost with the run's keys. */
    resent: number;
    /** Times Redis was found to have lost the run's keys. */
    resets: number;
  };
  /**
   * Why the run could not see everything it was asked to (its verdict is
   * then `unknown` unless it found a real violation): the transport down or
   * refusing the run's writes, Redis losing the run's keys, vCPU threads
   * that had to be terminated, ioreqs still unanswered when the drain at the
   * end gave up (Host.drain), the periodic checks held up (checkGapBound).
   */
  unknown: string[];
  events: string[];
  /** The timeline, when the spec asked for it. */
  trace?: TraceData;
  /** Chaos: every injection with its time, target and recovery; what the transport nemesis did. */
  injections: Injection[];
  /** What the transport nemesis did; duplicates_skipped: deliveries the device model recognized as answered (any cause). */
  nemesis: { delayed: number; duplicated: number; dropped: number; reordered: number; duplicates_skipped: number };
  /** Set by the orchestrator (orchestrator/up/up.ts runHost) when a signal stopped the run before its duration. */
  stopped_early?: boolean;
  /** The pCPU scheduler: its pCPUs (0: none), how long vCPUs waited for one (log2 µs buckets) and the longest wait; the counters are in `stats` (sched_*). */
  sched: { pcpus: number; wait_hist: number[]; wait_max_us: number };
  /** How long the end of the run waited for the vCPUs to finish their steps (Host.drain); 0 when it did not drain (a run error, or no vCPU threads). */
  drain_ms?: number;
  /** The longest time between two periodic checks (from the first to the end of the run); 0 without periodic checks. */
  check_gap_ms?: number;
  /** Hangs the watchdog reported: a vCPU of a running domain blocked without progress for HUNG_VCPU_MS (each hang once; the events name them). */
  hung_vcpus?: number;
}


/**
 * Invariants the summary lists: all of them, but ioreq_forward only when the
 * run had ioreqs to check (a topology without an IOREQ server has none).
 */
export const CHECKED_INVARIANTS: readonly Invariant[] = INVARIANTS;

/** STAT words that are not counters to sum over vCPUs: histograms (their own report fields) and maxima. */
const NOT_SUMMED = new Set(['WORDS', 'SCHED_WAIT_MAX_US']);

export class Host {
  readonly sabs: MachineSabs;
  readonly m: Machine;
  private pools: Piscina[] = [];
  private tasks: Array<Promise<VcpuResult>> = [];
  private checkTimer: NodeJS.Timeout | undefined;
  /** When the periodic checks last ran (performance.now(), ms; 0: never started) and the longest gap between two. */
  private lastCheck_ms = 0;
  private checkGap_ms = 0;
  private drain_ms = 0;
  private started_us = 0;

  /**
   * The run proper begins now (every vCPU has made progress): the report's
   * duration counts from here, so it matches `--duration` however long the
   * worker threads took to come up. Without a call, from start().
   */
  markRunning(): void {
    this.started_us = performance.now() * 1000;
  }
  readonly errors: string[] = [];
  /** HostReport.unknown. */
  readonly unknown: string[] = [];
  private results: VcpuResult[] = [];
  /** The run key of the `redis` transport (transport/auth.ts): drawn here, never sent anywhere but to this host's threads. */
  private readonly runKey = newRunKey();

  /** Resolves when something other than the clock or a signal must end the run (runError); host-main then shuts down. */
  readonly ended: Promise<void>;
  private endNow: () => void = () => undefined;
  private endedAlready = false;

  /**
   * The owner of every failure of a task the host runs (a vCPU, the
   * transport's loops, the chaos executor): a transport fault (a Redis that
   * is down or refuses the run's writes, transport/faults.ts) makes the run
   * `unknown`; anything else is a run error (`fail`). Either way the run
   * ends: the vCPUs stop, the checks run, the summary is printed, the run's
   * keys are deleted. Never a crash of the host process.
   */
  runError(e: unknown, who = 'transport'): void {
    const msg = e instanceof Error ? e.message : String(e);
    if (isTransportFault(e)) this.unknown.push(msg.slice(msg.indexOf(TRANSPORT_FAULT) + TRANSPORT_FAULT.length + 2));
    else this.errors.push(`${who}: ${e instanceof Error ? (e.stack ?? msg) : msg}`);
    if (this.endedAlready) return;
    this.endedAlready = true;
    this.endNow();
  }

  /** The key of IOREQ server `server` (host-wide id) of this run (tests: forge what a genuine device model would send). */
  transportKey(server: number): Buffer {
    return serverKey(this.runKey, server);
  }

  private readonly gpu: Map<number, GpuEnv>;

  constructor(readonly spec: HostSpec) {
    this.ended = new Promise((r) => (this.endNow = r));
    this.gpu = gpuLayout(spec);
    this.sabs = createMachineSabs({
      nr_frames: spec.nr_frames,
      page_size_bytes: spec.page_size_bytes,
      p2m_pool_pages: spec.domains.reduce((a, d) => a + p2mPoolPages(d), 0),
      bars: spec.domains.flatMap((d) => d.devices.map((dev) => ({ name: dev.name, owner: d.domid, nr_pages: dev.bar_pages }))),
      checking: spec.checking,
      buggify: spec.buggify,
      seed: spec.seed,
      ...(spec.transitive_revoke === false ? { transitive_revoke: false } : {}),
      max_domains: Math.max(1, ...spec.domains.map((d) => d.domid + 1)),
      grant_limits: grantLimitsOf(spec.domains),
      ...(spec.design !== undefined ? { design: spec.design } : {}),
      // A ring per vCPU slot (boot allocates them from 0, first fit) and one for this thread.
      ...(spec.trace === true ? { trace_rings: spec.domains.reduce((a, d) => a + d.vcpus, 0) + 1 } : {}),
    });
    this.m = new Machine(this.sabs);
    if (spec.domains.length > MAX_DOMAINS) throw new Error(`at most ${MAX_DOMAINS} domains`);
    pcpuInit(this.m, spec.pcpus ?? hostPcpus());
    if (spec.death !== undefined) armDeath(this.m, spec.death);
  }

  /** The toolstack's part: create every domain, populate its RAM, give BARs to their owners. */
  boot(): void {
    for (const d of this.spec.domains) {
      const id = domainCreate(this.m, { domid: d.domid, max_pages: d.max_pages, nr_vcpus: d.vcpus, ...p2mSpec(d), ...toolstackSpec(d), privileged: d.privileged, ...(d.backend !== undefined ? { backend: d.backend } : {}) });
      if (id !== d.domid) throw new Error(`creating ${d.name}: ${id < 0 ? statusName(id) : `got domid ${id}`}`);
      const rc = populateRange(this.m, d.domid, 0, d.memory_pages);
      if (rc < 0) throw new Error(`populating ${d.name}: ${statusName(rc)}`);
    }
    for (const b of this.sabs.bars) iomemAdd(this.m, b.owner, b.base_mfn, b.nr_pages);
    // Each GPU frontend's IOREQ server, owned by its backend, claiming the MMIO page;
    // the device model enables it when it starts.
    for (const [be, g] of this.gpu) {
      const bar = this.sabs.bars.find((b) => b.owner === be);
      if (bar !== undefined) g.bar = { base_mfn: bar.base_mfn, nr_pages: bar.nr_pages };
      for (const f of g.frontends) {
        // The register page is posted, through a buffered ring (domains/gpu/protocol.ts).
        const s = ioreqServerCreate(this.m, be, f.domid, [{ start: f.mmio_gfn, count: 1, posted: true }], f.fault_policy, { bufioreq: true });
        if (s < 0) throw new Error(`ioreq server for d${f.domid}: ${statusName(s)}`);
        f.server = s;
      }
    }
    this.viewerServers();
  }

  /**
   * A viewer's two IOREQ servers (docs/gpu.md §12), neither with ranges nor
   * a device model attached: first dom0's platform device model (as every
   * HVM guest has QEMU's), answering NONE; then its compositor's, answering
   * FAIL. A FAULT on a share the compositor revoked belongs to the
   * compositor's (the Mapping backend's), never to the first one.
   */
  private viewerServers(): void {
    const dom0 = this.spec.domains.find((x) => x.privileged);
    for (const d of this.spec.domains) {
      if (d.workload.kind !== 'viewer' || d.backend === undefined || dom0 === undefined || dom0.domid === d.backend) continue;
      for (const [by, policy] of [[dom0.domid, 'none'], [d.backend, 'fail']] as const) {
        const s = ioreqServerCreate(this.m, by, d.domid, [], policy);
        if (s < 0) throw new Error(`ioreq server of d${by} for viewer d${d.domid}: ${statusName(s)}`);
      }
    }
  }

  private dispatcher: RedisDispatcher | undefined;
  private transportStats: Partial<DispatcherStats> = {};
  /** The run's Redis ACL users (`acl` transports): their URLs live only here and in the threads they are handed to. */
  private acl: RunAcl | undefined;

  /** Start the transport's hypervisor side, then every vCPU thread. */
  async startAsync(): Promise<void> {
    const tr = this.spec.transport;
    if (tr?.kind === 'redis') {
      if (tr.acl === true) {
        try {
          this.acl = await RunAcl.create({ url: tr.url, namespace: tr.namespace, roles: this.aclRoles() });
        } catch (e) {
          throw new TransportFault(e instanceof Error ? e.message : String(e), { cause: e });
        }
      }
      this.dispatcher = await RedisDispatcher.start(this.m, this.acl?.url('dispatcher') ?? tr.url, tr.namespace, this.spec.domains.map((d) => d.domid), {
        runKey: this.runKey,
        timeout_ms: tr.timeout_ms ?? DEFAULT_TRANSPORT_TIMEOUT_MS,
        onFault: (e) => this.runError(e),
        ...(this.acl !== undefined ? { adminUrl: this.acl.url('admin') } : {}),
      });
    }
    this.start();
    if (this.spec.chaos !== undefined) {
      this.chaos = new Chaos(this);
      this.chaos.schedule(this.spec.chaos);
    }
  }
  /** The chaos executor, when the spec has nemeses (or a test made one). */
  chaos: Chaos | undefined;

  /**
   * What each vCPU runs: its slot, seed, workload and what the toolstack
   * told it (GuestEnv), in domain order. The same tasks run on piscina
   * threads (start) or under the deterministic simulator (hypervisor/sim).
   */
  vcpuTasks(): Array<{ domain: HostDomainSpec; task: VcpuTask }> {
    const out: Array<{ domain: HostDomainSpec; task: VcpuTask }> = [];
    const frontends = this.spec.domains.filter((d) => d.role === 'frontend').map((d) => d.domid);
    const memory_pages: Record<number, number> = {};
    for (const d of this.spec.domains) memory_pages[d.domid] = d.memory_pages;
    for (const d of this.spec.domains) {
      const vbase = this.m.dom.at(d.domid, DOM.VCPU_BASE);
      for (let v = 0; v < d.vcpus; v++) {
        const env: GuestEnv = {
          peers: d.peers,
          frontends: d.privileged ? frontends : [],
          memory_pages,
          map_window_gfn: Math.max(d.memory_pages, d.max_pages) + v * MAP_WINDOW_PAGES,
          map_window_pages: MAP_WINDOW_PAGES,
          ...gpuEnvOf(this.gpu, d),
          ...shareEnvOf(this.spec, d),
        };
        const task: VcpuTask = {
          kind: 'run-vcpu',
          sabs: this.sabs,
          domid: d.domid,
          vcpu: v,
          slot: vbase + v,
          memory_pages: d.memory_pages,
          seed: (this.spec.seed * 1000003 + d.domid * 131 + v) | 0,
          // A GPU backend runs the device model and the kernel, with the kernel behaviours a swarm seed left out (sim/swarm.ts).
          workload: this.gpu.has(d.domid) ? { kind: 'gpu-backend', ...swarmOff(d.workload) } : d.workload,
          env,
          transport: this.taskTransport(d),
        };
        out.push({ domain: d, task });
      }
    }
    return out;
  }

  /**
   * A vCPU task's transport: under Redis, a backend's vCPUs get the keys of
   * the servers its device model serves, and no other; with ACL users, the
   * URL of its device model's user, and a vCPU that runs no device model
   * gets no credentials at all.
   */
  private taskTransport(d: HostDomainSpec): VcpuTask['transport'] {
    const tr = this.spec.transport ?? { kind: 'ring' };
    if (tr.kind !== 'redis') return tr;
    const g = this.gpu.get(d.domid);
    const acl = this.acl;
    if (g === undefined || (acl !== undefined && g.frontends.length === 0)) return acl !== undefined ? { ...tr, url: withoutUser(tr.url) } : tr;
    const keys = new Map<number, Buffer>();
    for (const f of g.frontends) keys.set(serverId(f.domid, f.server), this.transportKey(serverId(f.domid, f.server)));
    return { ...tr, keys: keysToWire(keys), ...(acl !== undefined ? { url: acl.url(dmRole(d.domid)) } : {}) };
  }

  /**
   * The run's ACL roles (transport/redis-acl.ts): the dispatcher, the admin
   * that deletes the keys, and one device model per GPU backend, with its
   * frontends' servers only.
   */
  private aclRoles(): Record<string, AclRole> {
    const roles: Record<string, AclRole> = { dispatcher: { kind: 'dispatcher' }, admin: { kind: 'admin' } };
    for (const [be, g] of this.gpu) {
      if (g.frontends.length === 0) continue;
      roles[dmRole(be)] = { kind: 'device-model', servers: g.frontends.map((f) => serverId(f.domid, f.server)), frontends: g.frontends.map((f) => f.domid) };
    }
    return roles;
  }

  /** Start every vCPU thread (ring transport). */
  start(): void {
    this.started_us = performance.now() * 1000;
    // The vCPU worker as one CommonJS file (`npm run bundle:vcpu`): a thread
    // that loads 54 ES modules spends more on the loader than on everything
    // else it does before its first boundary (docs/architecture.md §1).
    // It is loaded through vcpu-loader with the V8 code cache the build
    // wrote (code-cache.ts); XGSIM_CODE_CACHE=0 compiles it in every thread.
    const filename = distModule('bundle/vcpu-loader', '.cjs');
    const pools = new Map<number, Piscina>();
    for (const d of this.spec.domains) {
      // recordTiming off: two HDR histograms per pool that nobody reads.
      const pool = new Piscina({ filename, minThreads: d.vcpus, maxThreads: d.vcpus, idleTimeout: Infinity, atomics: 'disabled', concurrentTasksPerWorker: 1, recordTiming: false });
      this.pools.push(pool);
      pools.set(d.domid, pool);
    }
    for (const { domain, task } of this.vcpuTasks()) {
      const t = this.runTask(pools.get(domain.domid)!, task);
      // Owned: runTask reported the failure; shutdown collects the outcome.
      t.catch(() => undefined);
      this.tasks.push(t);
    }
    this.releaseWhenReady(this.tasks.length);
    this.startTrace();
  }

  private releaseTimer: NodeJS.Timeout | undefined;

  /**
   * Open the start gate (vcpu-worker.ts) once all `n` vCPU threads are
   * ready, or RELEASE_BOUND_MS after start at the latest (a thread that
   * failed to start is then the watchdog's and the report's to tell).
   */
  private releaseWhenReady(n: number): void {
    const until_ms = performance.now() + RELEASE_BOUND_MS;
    const poll = (): void => {
      this.releaseTimer = undefined;
      if (Atomics.load(this.m.control.w, CTL.VCPUS_READY) >= n || performance.now() > until_ms) this.release();
      else this.releaseTimer = setTimeout(poll, 2);
    };
    poll();
  }

  /**
   * Let every vCPU waiting at the start gate run (once), and start the
   * periodic checks: before, no guest code has run, and walking the frame
   * table of a large machine every check interval took CPU from the threads
   * that were starting.
   */
  private release(): void {
    if (this.releaseTimer !== undefined) clearTimeout(this.releaseTimer);
    this.releaseTimer = undefined;
    if (Atomics.load(this.m.control.w, CTL.RELEASED) === 1) return;
    Atomics.store(this.m.control.w, CTL.RELEASED, 1);
    Atomics.notify(this.m.control.w, CTL.RELEASED);
    if (this.spec.check_interval_ms > 0 && !this.m.control.stopping) {
      this.lastCheck_ms = performance.now();
      this.checkTimer = setInterval(() => this.periodicCheck(), this.spec.check_interval_ms);
    }
  }

  private collector: TraceCollector | undefined;

  /** Drain the timeline rings from now on (tracing on only); this thread's own events go to the host ring. */
  private startTrace(): void {
    const t = this.m.trace;
    if (t === undefined) return;
    const threads = [{ ring: hostRing(t), domid: -1, vcpu: 0 }];
    for (const d of this.spec.domains) {
      const base = this.m.dom.at(d.domid, DOM.VCPU_BASE);
      for (let v = 0; v < d.vcpus; v++) threads.push({ ring: base + v, domid: d.domid, vcpu: v });
    }
    this.collector = new TraceCollector(this.m, {
      domains: this.spec.domains.map((d) => ({ domid: d.domid, name: d.name })),
      threads,
      stats: () => this.stats(),
      ...(this.spec.trace_max_events !== undefined ? { max_events: this.spec.trace_max_events } : {}),
    });
    setHostTracer(t);
    this.collector.start();
  }

  private finishTrace(injections: readonly Injection[]): TraceData | undefined {
    const c = this.collector;
    if (c === undefined) return undefined;
    this.collector = undefined;
    clearTracer();
    const data = c.finish();
    // Injections count from chaos's t0 (every vCPU running): put them on the timeline's clock.
    const t0 = this.chaos?.t0_ms;
    if (t0 !== undefined && injections.length > 0) {
      data.vcpus_running_us = c.clock(t0);
      data.injections = injections.map((i) => ({
        at_us: c.clock(t0 + i.at_ms),
        ...(i.end_ms !== undefined ? { end_us: c.clock(t0 + i.end_ms) } : {}),
        kind: i.kind,
        target: i.target,
        ...(i.detail !== undefined ? { detail: i.detail } : i.skipped !== undefined ? { detail: `skipped: ${i.skipped}` } : {}),
      }));
    }
    return data;
  }

  /** Run a vCPU; a device model killed by chaos is restarted on the same vCPU. */
  private async runTask(pool: Piscina, task: VcpuTask): Promise<VcpuResult> {
    for (;;) {
      try {
        const r = (await pool.run(task)) as VcpuResult;
        if (r.transport_fault !== undefined) this.runError(r.transport_fault);
        return r;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        // A device model killed by chaos is never an error, whenever it dies.
        if (msg.includes(DM_KILLED)) {
          // Held down (a test, a chaos plan): stay dead until released or the host stops.
          while (this.dmHeld && !this.m.control.stopping) await new Promise((r) => setTimeout(r, 10));
          if (this.m.control.stopping) return { kind: 'vcpu-done', domid: task.domid, vcpu: task.vcpu, threadId: -1, steps: 0, accesses: 0, workload_ops: 0, check_fails: 0, out: {}, samples: {} };
          this.dmRestarts++;
          this.m.log.event(`device model of d${task.domid} killed; restarted`);
          continue;
        }
        // A thread that died before the gate will never be ready: the others need not wait for the bound.
        this.release();
        // Terminated by shutdown after VCPU_STOP_BOUND_MS: shutdown says so.
        if (this.terminated) throw e;
        this.runError(e, `d${task.domid}v${task.vcpu}`);
        throw e;
      }
    }
  }
  dmRestarts = 0;
  private terminated = false;

  /** Chaos: kill the device model after it claims its next requests; `hold` keeps it down until released. */
  killDeviceModel(hold = false): void {
    this.dmHeld = hold;
    Atomics.store(this.m.control.w, CTL.KILL_DM, 1);
  }
  releaseDeviceModel(): void {
    this.dmHeld = false;
  }
  private dmHeld = false;
  /** Whether the device model is running (false between a kill and its restart). */
  deviceModelDown(): boolean {
    return Atomics.load(this.m.control.w, CTL.KILL_DM) === 0 && this.m.vcpus.at(this.m.dom.at(0, DOM.VCPU_BASE), VC.STATE) === VS.OFFLINE;
  }

  /** Last heartbeat seen per vCPU slot and when it last moved (the hung-vCPU watchdog). */
  private readonly beats = new Map<number, { beat: number; since_ms: number; reported: boolean }>();
  hungReports = 0;

  /**
   * Xen waits on an ioreq with no timeout; so does xgsim — and says so when
   * a vCPU of a running domain has made no progress for HUNG_VCPU_MS.
   */
  private watchdog(): void {
    const now = performance.now();
    for (const d of this.spec.domains) {
      if (this.m.dom.state(d.domid) !== DS.RUNNING) continue;
      const base = this.m.dom.at(d.domid, DOM.VCPU_BASE);
      for (let v = 0; v < d.vcpus; v++) {
        const beat = this.m.vcpus.at(base + v, VC.HEARTBEAT);
        const b = this.beats.get(base + v);
        if (b === undefined || b.beat !== beat) this.beats.set(base + v, { beat, since_ms: now, reported: false });
        else if (!b.reported && now - b.since_ms > HUNG_VCPU_MS && this.m.vcpus.at(base + v, VC.STATE) === VS.BLOCKED) {
          b.reported = true;
          this.hungReports++;
          this.m.log.event(`watchdog: ${d.name} vCPU ${v} blocked without progress for ${Math.round(now - b.since_ms)} ms`);
        }
      }
    }
  }

  private periodicCheck(): void {
    this.checkTick();
    try {
      this.watchdog();
      // on_crash=destroy: the toolstack reaps crashed guests.
      for (const d of this.spec.domains) if (this.m.dom.state(d.domid) === DS.CRASHED) toolstackDestroy(this.m, d.domid);
      checkRunning(this.m);
    } catch (e) {
      this.errors.push(`checker: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** A periodic check runs now (or the checks end): the gap since the last one. */
  private checkTick(): void {
    const now = performance.now();
    this.checkGap_ms = Math.max(this.checkGap_ms, now - this.lastCheck_ms);
    this.lastCheck_ms = now;
  }

  /** vCPUs of every domain, summed, as of now. */
  stats(): Record<string, number> {
    const out: Record<string, number> = {};
    const names = Object.keys(STAT).filter((k) => !NOT_SUMMED.has(k)) as Array<Exclude<keyof typeof STAT, 'WORDS'>>;
    for (const n of names) out[n.toLowerCase()] = 0;
    for (const d of this.spec.domains) {
      const base = this.m.dom.at(d.domid, DOM.VCPU_BASE);
      for (let v = 0; v < d.vcpus; v++) for (const n of names) out[n.toLowerCase()]! += this.m.vcpus.stat(base + v, STAT[n]);
    }
    out['ioreqs_abandoned_at_stop'] = Atomics.load(this.m.control.w, CTL.IOREQS_ABANDONED_AT_STOP);
    // Host-wide p2m work (xen/p2m.ts): superpages split, TLB shootdowns completed.
    out['p2m_splits'] = Atomics.load(this.m.control.w, CTL.P2M_SPLITS);
    out['tlb_shootdowns'] = Atomics.load(this.m.control.w, CTL.TLB_SHOOTDOWNS_DONE);
    // The costs a design comparison shows (layout/control.ts, counted where the work is done).
    const costs = {
      revocations: CTL.REVOCATIONS, revoke_p2m_removed: CTL.REVOKE_P2M_REMOVED, revoke_shootdowns: CTL.REVOKE_SHOOTDOWNS,
      revoke_vcpus_paused: CTL.REVOKE_VCPUS_PAUSED, revoke_pause_us: CTL.REVOKE_PAUSE_US, revoke_pause_max_us: CTL.REVOKE_PAUSE_MAX_US,
      revoke_splits: CTL.REVOKE_SPLITS, p2m_removed: CTL.P2M_REMOVED, pinned_peak: CTL.PINNED_PEAK, shared_peak: CTL.SHARED_PEAK,
      grant_ref_peak: CTL.GRANT_REF_PEAK, grant_frames_peak: CTL.GRANT_FRAMES_PEAK, maptrack_peak: CTL.MAPTRACK_PEAK, grant_no_space: CTL.GRANT_NO_SPACE,
    } as const;
    for (const [k, w] of Object.entries(costs)) out[k] = Atomics.load(this.m.control.w, w);
    const faults = Array.from(this.m.vcpus.faultRtt, (_, k) => Atomics.load(this.m.vcpus.faultRtt, k));
    out['fault_rtts'] = faults.reduce((a, c) => a + c, 0);
    out['fault_us_p50'] = rttQuantile(faults, 0.5);
    out['fault_us_p99'] = rttQuantile(faults, 0.99);
    return out;
  }

  /** The merged IOREQ round-trip histogram of every vCPU (layout/rtt-hist.ts: log-linear, two significant digits). */
  rttHistogram(): number[] {
    return this.slotHistogram(this.m.vcpus.rtt);
  }

  /** The pCPU scheduler's part of the report (schedule.ts): waits for a pCPU merged over every vCPU. */
  schedReport(): HostReport['sched'] {
    let wait_max_us = 0;
    for (const d of this.spec.domains) {
      const base = this.m.dom.at(d.domid, DOM.VCPU_BASE);
      for (let v = 0; v < d.vcpus; v++) wait_max_us = Math.max(wait_max_us, this.m.vcpus.stat(base + v, STAT.SCHED_WAIT_MAX_US));
    }
    return { pcpus: Atomics.load(this.m.control.w, CTL.PCPUS), wait_hist: this.slotHistogram(this.m.vcpus.schedWait), wait_max_us: Math.round(wait_max_us) };
  }

  /** A per-vCPU log-linear histogram (layout/rtt-hist.ts buckets) merged over every vCPU. */
  private slotHistogram(a: Int32Array): number[] {
    const h = new Array<number>(RTT_BUCKETS).fill(0);
    for (const d of this.spec.domains) {
      const base = this.m.dom.at(d.domid, DOM.VCPU_BASE);
      for (let v = 0; v < d.vcpus; v++) {
        const at = (base + v) * RTT_BUCKETS;
        for (let k = 0; k < RTT_BUCKETS; k++) h[k]! += Atomics.load(a, at + k);
      }
    }
    return h;
  }

  /**
   * Resolves true once every vCPU has passed its first boundary (worker
   * threads take a while to come up on two loaded cores), false if that
   * took longer than `bound_ms` (a vCPU that never starts is the watchdog's
   * to report).
   */
  async allVcpusRunning(bound_ms: number): Promise<boolean> {
    const until = performance.now() + bound_ms;
    while (this.heartbeats().some((b) => b === 0)) {
      if (performance.now() > until) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }

  /** Every vCPU's heartbeat (for progress and the hung-vCPU watchdog). */
  heartbeats(): number[] {
    const out: number[] = [];
    for (const d of this.spec.domains) {
      const base = this.m.dom.at(d.domid, DOM.VCPU_BASE);
      for (let v = 0; v < d.vcpus; v++) out.push(this.m.vcpus.at(base + v, VC.HEARTBEAT));
    }
    return out;
  }

  /**
   * Wait for every vCPU task, up to VCPU_STOP_BOUND_MS; threads still
   * running then are terminated (their pools destroyed) and the run is
   * `unknown`: what they were doing was cut short.
   */
  private async stopVcpus(): Promise<Array<PromiseSettledResult<VcpuResult>>> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), VCPU_STOP_BOUND_MS)));
    const all = Promise.allSettled(this.tasks);
    const settled = await Promise.race([all, late]);
    clearTimeout(timer);
    if (settled !== undefined) return settled;
    this.terminated = true;
    this.unknown.push(`vCPU threads did not stop within ${VCPU_STOP_BOUND_MS} ms of the end of the run, and were terminated`);
    await Promise.all(this.pools.map((p) => p.destroy().catch(() => undefined)));
    return all;
  }

  /**
   * The orderly end of the run: every vCPU is asked to issue no new work
   * (CTL.DRAIN) while device models keep serving, and the host waits until
   * every vCPU of a running domain has finished the step it was in — then no
   * ioreq is in flight and CTL.STOP abandons none — or until none of those
   * still in their step has made progress for DRAIN_GRACE_MS (DRAIN_BOUND_MS
   * at most). Returns the vCPUs still in their step then, each with the
   * ioreq it waits on, if any.
   */
  private async drain(): Promise<string[]> {
    const t0 = performance.now();
    Atomics.store(this.m.control.w, CTL.DRAIN, 1);
    const beats = new Map<number, number>();
    let moved_ms = t0;
    let late = this.undrained();
    for (let now = t0; late.length > 0 && now - moved_ms < DRAIN_GRACE_MS && now - t0 < DRAIN_BOUND_MS; now = performance.now()) {
      for (const { slot } of late) {
        const beat = this.m.vcpus.at(slot, VC.HEARTBEAT);
        if (beats.get(slot) !== beat) moved_ms = now;
        beats.set(slot, beat);
      }
      await new Promise((r) => setTimeout(r, 2));
      late = this.undrained();
    }
    this.drain_ms = performance.now() - t0;
    const ios = this.m.ios;
    return late.map(({ d, v, slot }) => {
      const i = ios.idx(slot);
      const st = Atomics.load(ios.slots, i + IOS.STATE);
      if (st !== IOREQ_STATE.READY && st !== IOREQ_STATE.INPROCESS) return `${d.name} vCPU ${v}`;
      const owner = this.m.ioreq.owner(ios.slots[i + IOS.TARGET]!, ios.slots[i + IOS.SERVER]!);
      const by = this.spec.domains.find((x) => x.domid === owner)?.name ?? `d${owner}`;
      return `${d.name} vCPU ${v} (waiting on an ioreq to ${by}'s device model, ${st === IOREQ_STATE.READY ? 'not taken' : 'taken, unanswered'})`;
    });
  }

  /** vCPUs of running domains that have not finished their step since CTL.DRAIN. */
  private undrained(): Array<{ d: HostDomainSpec; v: number; slot: number }> {
    const out: Array<{ d: HostDomainSpec; v: number; slot: number }> = [];
    for (const d of this.spec.domains) {
      if (this.m.dom.state(d.domid) !== DS.RUNNING) continue;
      const base = this.m.dom.at(d.domid, DOM.VCPU_BASE);
      for (let v = 0; v < d.vcpus; v++) if (!this.m.control.hasDrained(base + v)) out.push({ d, v, slot: base + v });
    }
    return out;
  }

  /** Stop the Redis dispatcher (bounded); a run whose keys could not be deleted says so. */
  private async stopTransport(): Promise<void> {
    const d = this.dispatcher;
    // The users go last: the admin deletes the keys first. ACL DELUSER also closes their connections.
    if (d === undefined) return this.removeAcl();
    try {
      await d.stop();
    } finally {
      await this.removeAcl();
    }
    this.transportStats = { ...d.stats };
    if (d.stats.resets > 0) this.unknown.push(`Redis lost the run's keys ${d.stats.resets} time(s) (a flush, or a restart without persistence): what it held then — requests, answers, the device model's exactly-once record — is not all known; the run went on with what was sent again (${d.completedSinceReset} ioreqs answered after the last loss)`);
    if (d.cleanup !== 'deleted') this.m.log.event(`redis transport: the run's keys under ${this.spec.transport?.kind === 'redis' ? this.spec.transport.namespace : '?'} could not be deleted: ${d.cleanup}`);
  }

  /** Delete the run's ACL users (bounded); a run whose users could not be deleted says so. */
  private async removeAcl(): Promise<void> {
    const acl = this.acl;
    if (acl === undefined) return;
    this.acl = undefined;
    if (!(await acl.remove())) this.m.log.event(`redis transport: the run's Redis ACL users xgsim-${acl.tag}-* could not be deleted (Redis did not answer)`);
  }

  private transportReport(): HostReport['transport'] {
    const base = { kind: this.spec.transport?.kind ?? 'ring', published: 0, completed: 0, duplicates_dropped: 0, malformed: 0, guests_crashed: 0, resent: 0, resets: 0, ...this.transportStats };
    return { ...base, dm_restarts: this.dmRestarts, rejected: (this.transportStats.rejected ?? 0) + Atomics.load(this.m.control.w, CTL.TRANSPORT_REJECTED) };
  }

  /**
   * After the drain and the stop: an ioreq the stop abandoned under a live
   * domain was never seen answered — the run could not see everything
   * (`unknown`); vCPUs slow to finish a step that left nothing unanswered
   * are worth an event only.
   */
  private endOfDrain(late: string[]): void {
    const n = Atomics.load(this.m.control.w, CTL.IOREQS_ABANDONED_AT_STOP);
    const after = `${Math.round(this.drain_ms)} ms after the end of the run`;
    const still = `${late.join(', ')} still in ${late.length === 1 ? 'its step' : 'their steps'}`;
    if (n > 0) this.unknown.push(`${n} ioreq${n === 1 ? '' : 's'} still unanswered ${after}: ${late.length > 0 ? still : 'though every vCPU had finished its step'}; the stop gave ${n === 1 ? 'it' : 'them'} up`);
    else if (late.length > 0) this.m.log.event(`end of run: ${still} ${after}; stopped there, no ioreq left unanswered`);
  }

  /**
   * Stop the vCPUs, check at quiescence, destroy every domain, check for
   * leaks. `drain: false` stops at once (a signal: the run is `interrupted`
   * whatever it would have seen, and Ctrl-C must not wait for a device model).
   */
  async shutdown(o: { drain?: boolean } = {}): Promise<HostReport> {
    const injections = this.chaos !== undefined ? [...(await this.chaos.stop())] : [];
    // The end of the duration drains first; a run ended by an error or a signal stops as it is.
    const ctl = this.m.control.w;
    const late = o.drain !== false && this.tasks.length > 0 && !this.endedAlready && Atomics.load(ctl, CTL.RELEASED) === 1 ? await this.drain() : undefined;
    Atomics.store(ctl, CTL.STOP, 1);
    Atomics.notify(ctl, CTL.STOP);
    this.release();
    const settled = await this.stopVcpus();
    await this.stopTransport();
    this.results = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    if (late !== undefined) this.endOfDrain(late);
    if (this.checkTimer !== undefined) {
      clearInterval(this.checkTimer);
      this.checkTick();
      const bound_ms = checkGapBound(this.spec.check_interval_ms);
      if (this.checkGap_ms > bound_ms) {
        this.unknown.push(`the periodic checks stopped for ${Math.round(this.checkGap_ms)} ms (every ${this.spec.check_interval_ms} ms asked, ${bound_ms} ms tolerated): the host's main thread was held up, and the machine ran unchecked meanwhile`);
      }
    }
    const duration_ms = (performance.now() * 1000 - this.started_us) / 1000;
    const domains = this.spec.domains.map((d) => ({
      name: d.name,
      domid: d.domid,
      state: DS_NAMES[this.m.dom.state(d.domid)] ?? 'unknown',
      tot_pages: this.m.dom.at(d.domid, DOM.TOT_PAGES),
      max_pages: this.m.dom.at(d.domid, DOM.MAX_PAGES),
    }));
    const stats = this.stats();
    const rtt_hist = this.rttHistogram();
    const sched = this.schedReport();
    // Every access through a cached translation was checked against its removal generation.
    if (this.spec.checking) {
      // Every access with checking on is checked for both (xen/mmu.ts).
      this.m.log.checked('no_use_after_revoke', stats['accesses'] ?? 0);
      this.m.log.checked('isolation', stats['accesses'] ?? 0);
    }
    try {
      checkQuiescent(this.m);
    } catch (e) {
      this.errors.push(`checker: ${e instanceof Error ? e.message : String(e)}`);
    }
    // Frontends first, backends last, as a toolstack tears a system down.
    const order = [...this.spec.domains].sort((a, b) => (a.role === b.role ? b.domid - a.domid : a.role === 'frontend' ? -1 : 1));
    for (const d of order) {
      const st = this.m.dom.state(d.domid);
      try {
        if (st === DS.RUNNING || st === DS.CRASHED) domainDestroy(this.m, d.domid);
      } catch (e) {
        // A hypervisor assertion in the teardown (a bug left the machine inconsistent): the run fails, the report still comes.
        this.errors.push(`teardown of ${d.name}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    let conserved = false;
    try {
      conserved = checkFramesConserved(this.m);
    } catch (e) {
      this.errors.push(`checker: ${e instanceof Error ? e.message : String(e)}`);
    }
    checkNoLeaks(this.m);
    if (!this.terminated) await Promise.all(this.pools.map((p) => p.destroy()));
    const counts = this.m.log.counts();
    const invariants: Record<string, { checks: number; violations: number }> = {};
    for (const i of CHECKED_INVARIANTS) if (i !== 'ioreq_forward' || counts[i].checks > 0) invariants[i] = counts[i];
    const trace = this.finishTrace(injections);
    return {
      duration_ms,
      domains,
      stats,
      invariants,
      violations: this.m.log.records(),
      frames: { total: this.spec.nr_frames, free: this.m.heap.free, conserved },
      threads: this.results.map((r) => r.threadId),
      vcpu_results: this.results,
      errors: this.errors,
      unknown: this.unknown,
      transport: this.transportReport(),
      events: this.m.log.events(),
      rtt_hist,
      sched,
      drain_ms: Math.round(this.drain_ms),
      check_gap_ms: Math.round(this.checkGap_ms),
      hung_vcpus: this.hungReports,
      ...(trace !== undefined ? { trace } : {}),
      injections,
      nemesis: {
        delayed: Atomics.load(this.m.control.w, CTL.NEM_DELAYED),
        duplicated: Atomics.load(this.m.control.w, CTL.NEM_DUPLICATED),
        dropped: Atomics.load(this.m.control.w, CTL.NEM_DROPPED),
        reordered: Atomics.load(this.m.control.w, CTL.NEM_REORDERED),
        duplicates_skipped: Atomics.load(this.m.control.w, CTL.DUPLICATES_SKIPPED),
      },
    };
  }
}

/** Gfns above the mapping windows for a GPU frontend's blob window and MMIO page. */
export const GPU_WINDOW_PAGES = RES_PER_FE * MAX_BLOB_PAGES + 8;

/** A domain's guest physical space: RAM (up to max), a mapping window per vCPU (+1), and a GPU frontend's device window. */
export function p2mSize(d: Pick<HostDomainSpec, 'memory_pages' | 'max_pages' | 'vcpus'> & { workload?: { kind: string } }): number {
  const gpu = d.workload !== undefined && GPU_KINDS.has(d.workload.kind) ? GPU_WINDOW_PAGES : 0;
  return Math.max(d.memory_pages, d.max_pages) + (d.vcpus + 1) * MAP_WINDOW_PAGES + gpu;
}

/**
 * A domain's share of the p2m pool (its HAP pool, as libxl sizes one from
 * the guest's memory): tables for its RAM and windows at 4 KiB, plus slack
 * for mappings elsewhere (layout/p2m.ts p2mPoolPagesFor).
 */
export function p2mPoolPages(d: Parameters<typeof p2mSize>[0] & { paddr_bits?: number }): number {
  return p2mPoolPagesFor(d.paddr_bits ?? P2M_DEFAULT_PADDR_BITS, [[0, p2mSize(d)]]);
}

/** The p2m fields of domainCreate's spec for a domain of a topology. */
export function p2mSpec(d: Parameters<typeof p2mPoolPages>[0]): { paddr_bits: number; p2m_pages: number } {
  return { paddr_bits: d.paddr_bits ?? P2M_DEFAULT_PADDR_BITS, p2m_pages: p2mPoolPages(d) };
}

const GPU_KINDS = new Set(['render', 'compute-svm', 'adversary']);

/** The GPU frontends of a backend: where their device sits, which server serves them. */
function gpuLayout(spec: HostSpec): Map<number, GpuEnv> {
  const out = new Map<number, GpuEnv>();
  for (const be of spec.domains) {
    const fes = spec.domains.filter((d) => d.backend === be.domid && GPU_KINDS.has(d.workload.kind));
    if (fes.length === 0) continue;
    out.set(be.domid, {
      design: spec.design ?? DEFAULT_DESIGN,
      backend: be.domid,
      frontends: fes.map((d) => {
        const window_gfn = Math.max(d.memory_pages, d.max_pages) + (d.vcpus + 1) * MAP_WINDOW_PAGES;
        const policy = (d.workload as Record<string, unknown>)['fault_policy'];
        const missing_page = be.devices[0]?.missing_page ?? 'fault';
        return { domid: d.domid, window_gfn, mmio_gfn: window_gfn + RES_PER_FE * MAX_BLOB_PAGES, server: 0, fault_policy: policy === 'fail' || policy === 'none' ? policy : 'remap', missing_page };
      }),
      backend_memory_pages: be.memory_pages,
      backend_max_pages: be.max_pages,
      evictions_per_s: be.devices[0]?.evictions_per_s ?? DEFAULT_EVICTIONS_PER_S,
    });
  }
  return out;
}

/** The kernel behaviours a swarm seed left out of a GPU backend (sim/swarm.ts), if any. */
function swarmOff(w: HostDomainSpec['workload']): { swarm_off?: unknown[] } {
  const off = (w as Record<string, unknown>)['swarm_off'];
  return Array.isArray(off) ? { swarm_off: off } : {};
}

function gpuEnvOf(gpu: Map<number, GpuEnv>, d: HostDomainSpec): { gpu?: GpuEnv } {
  const own = gpu.get(d.domid);
  if (own !== undefined) return { gpu: own };
  const be = d.backend !== undefined ? gpu.get(d.backend) : undefined;
  return be !== undefined && be.frontends.some((f) => f.domid === d.domid) ? { gpu: be } : {};
}

/**
 * The compositor chain (docs/gpu.md §12): a `render` frontend with
 * `share_with` learns its viewer and the viewer's share window — the spare
 * mapping window above the viewer's per-vCPU ones, which nothing else uses;
 * a `viewer` learns its compositor (its backend).
 */
function shareEnvOf(spec: HostSpec, d: HostDomainSpec): Pick<GuestEnv, 'share' | 'viewing'> {
  const w = d.workload as Record<string, unknown>;
  if (d.workload.kind === 'viewer' && d.backend !== undefined) return { viewing: { compositor: d.backend } };
  if (d.workload.kind !== 'render' || typeof w['share_with'] !== 'string') return {};
  const v = spec.domains.find((x) => x.name === w['share_with'] && x.backend === d.domid);
  if (v === undefined) return {};
  return { share: { viewer: v.domid, window_gfn: Math.max(v.memory_pages, v.max_pages) + v.vcpus * MAP_WINDOW_PAGES, window_pages: MAP_WINDOW_PAGES } };
}

/** The ACL role of the device model of backend `domid`. */
function dmRole(domid: number): string {
  return `dm-d${domid}`;
}

/** Each domain's grant limits by domid, which size its grant storage (MachineConfig.grant_limits). */
export function grantLimitsOf(domains: ReadonlyArray<{ domid: number; max_grant_frames?: number; max_maptrack_frames?: number }>): GrantLimits[] {
  const out: GrantLimits[] = [];
  for (const d of domains) {
    out[d.domid] = { ...(d.max_grant_frames !== undefined ? { max_grant_frames: d.max_grant_frames } : {}), ...(d.max_maptrack_frames !== undefined ? { max_maptrack_frames: d.max_maptrack_frames } : {}) };
  }
  return out;
}

type ToolstackFields = Pick<DomainCreateSpec, 'max_grant_frames' | 'max_maptrack_frames' | 'passthrough'>;

/** A domain's grant limits and passthrough for domainCreate, where its topology sets them (else Xen's defaults apply). */
export function toolstackSpec(d: ToolstackFields): ToolstackFields {
  return {
    ...(d.max_grant_frames !== undefined ? { max_grant_frames: d.max_grant_frames } : {}),
    ...(d.max_maptrack_frames !== undefined ? { max_maptrack_frames: d.max_maptrack_frames } : {}),
    ...(d.passthrough !== undefined ? { passthrough: d.passthrough } : {}),
  };
}
