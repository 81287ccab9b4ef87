/**
 * `xgsim bench`: every figure is a ratio to a floor measured in the same
 * run, on this machine, now (docs/semantics.md §9): Atomics ping-pong (spin and
 * wait/notify), raw typed-array access, an uncontended lock pair, the raw
 * Redis stream round trip. Medians of repetitions; p50/p99 for latencies.
 */
// Registers the memory-sharing designs with the Xen core before any Machine is built (xen/design.ts).
import { table, withUnit } from '../text.js';
import { UsageError } from '../errors.js';
import '../../hypervisor/designs/index.js';
import { spawn } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { hostPcpus } from '../../hypervisor/host/spec.js';
import { join } from 'node:path';
import { Piscina } from 'piscina';
import type { BenchTask } from './bench-worker.js';
import { domainCreate, populateRange } from '../../hypervisor/xen/domain.js';
import { VcpuContext } from '../../hypervisor/xen/guest-cpu.js';
import { ioreqServerCreate } from '../../hypervisor/xen/ioreq.js';
import { DOM } from '../../hypervisor/layout/domains.js';
import { createMachineSabs, GLOBAL_LOCK, Machine } from '../../hypervisor/xen/machine.js';
import { gfn } from '../../hypervisor/public/types.js';
import { RedisDispatcher } from '../../hypervisor/host/redis-dispatcher.js';
import { signedTransport } from './ioreq.js';
import { distModule, PROJECT_ROOT } from '../../hypervisor/host/worker-path.js';
import { rawPipelinedXadd, rawStreamRoundTrip } from '../../transport/raw-floor.js';
import { percentiles } from '../stats.js';
import { bareWorkers, revokeLoad, topologyBoot } from './host.js';
import { rawPageMoveRate, revokeOnePageUs, stealReturnRate } from './primitives.js';
import { formatCurve, runCurve, type Curve } from './curves.js';
import { chooseTransport } from '../up/up.js';
import { haveRedisServer, startOwnRedis } from '../own-redis.js';
import { RunAcl } from '../../transport/redis-acl.js';
import { serverId } from '../../transport/redis-end.js';
import { ioreqThroughput } from './ioreq.js';
import { campaignThroughput, parallelSpeedup } from './campaign.js';
import { bareDecisionRate, simThroughput } from './sim.js';
import { RedisIoreqBus } from '../../transport/redis-bus.js';
import { redisUrlOf } from '../redis-url.js';
import { NO_BUGS } from '../../hypervisor/xen/buggify.js';
import { BENCH_SECTIONS } from '../cli-words.js';
import { TraceCollector } from '../../hypervisor/host/trace-collector.js';
import { clearTracer, hostRing, setHostTracer } from '../../hypervisor/xen/trace.js';
import { ioreqStages, STAGES, STAGE_WHAT, type IoreqStages } from '../trace/stages.js';

export interface BenchRow {
  figure: string;
  value: number;
  unit: string;
  floor: string;
  floor_value: number;
  ratio: number;
  goal: string;
  pass: boolean | null;
  /** What went wrong in the run behind the figure (violations, errors): the row fails. */
  note?: string;
  /** How the figure was made, where its name cannot say it all (printed under it). */
  detail?: string;
}

export interface BenchReport {
  date: string;
  machine: { cores: number; node: string; cpu: string };
  quick: boolean;
  /** The 1, 5 and 15 minute load averages when the report was made (other work on the machine skews every figure). */
  load: number[];
  floors: Record<string, number>;
  rows: BenchRow[];
  curves?: Curve[];
}

const median = (xs: number[]): number => percentiles(xs).p50;

function timeIt(reps: number, f: () => number): number[] {
  const out: number[] = [];
  for (let r = 0; r < reps; r++) out.push(f());
  return out;
}

/**
 * CPU time of this process, in ms. The three access throughputs below are
 * timed with it, not the wall clock: on a shared machine a 100 ms loop is
 * preempted more often than a 10 ms one, so wall time skewed the guest's
 * figure (2e7 accesses at ~300 M/s) against the raw floor (~2 G/s) — 0.115×
 * by the wall clock against 0.17× by CPU time in the same minutes, at load
 * 5. The other threads of the process are idle meanwhile (the pool waits
 * for a task); V8's own helper threads count, as part of the cost.
 */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Raw typed-array reads + writes per second (the floor of a guest access).
 * This loop and the guest's fold what they read into `acc` with `^=`: with
 * `+=` the guest's sum of unsigned words became a double, boxed into a new
 * HeapNumber every iteration — a quarter of the guest loop's time in a
 * profile, spent on the benchmark's checksum, not on the access.
 */
function rawAccessRate(n: number): number {
  const a = new Int32Array(new SharedArrayBuffer(4096 * 64));
  let acc = 0;
  const t0 = cpuMs();
  for (let i = 0; i < n; i++) {
    const k = (i * 7) & (a.length - 1);
    acc ^= a[k]!;
    a[k] = i;
  }
  const dt = cpuMs() - t0;
  if (acc === 42) console.log('');
  return (2 * n) / (dt / 1000);
}

function machineFor(frontends = 1, trace_rings = 0): Machine {
  const m = new Machine(createMachineSabs({ nr_frames: 4096, page_size_bytes: 4096, p2m_pool_pages: 64 * (1 + frontends), bars: [], checking: false, buggify: NO_BUGS, seed: 1, max_domains: 1 + frontends, ...(trace_rings > 0 ? { trace_rings } : {}) }));
  for (let d = 0; d <= frontends; d++) {
    domainCreate(m, { domid: d, max_pages: 512, nr_vcpus: 2, p2m_pages: 64, privileged: d === 0, ...(d > 0 ? { backend: 0 } : {}) });
    populateRange(m, d, 0, 512);
  }
  return m;
}

/** Guest accesses per second through the p2m and the software TLB (hot TLB). */
function mmuAccessRate(n: number): number {
  const m = machineFor(0);
  const cpu = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 512, seed: 1 });
  cpu.start();
  let acc = 0;
  const t0 = cpuMs();
  for (let i = 0; i < n; i++) {
    const g = gfn(i & 31);
    acc ^= cpu.read32(g, (i & 255) * 4);
    cpu.write32(g, (i & 255) * 4, i);
  }
  const dt = cpuMs() - t0;
  cpu.stop();
  if (acc === 42) console.log('');
  return (2 * n) / (dt / 1000);
}

/** The same loop through GuestCpu.mem (the MMU itself, taken once), one call fewer per access. */
function memAccessRate(n: number): number {
  const m = machineFor(0);
  const cpu = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 512, seed: 1 });
  cpu.start();
  const mem = cpu.mem;
  let acc = 0;
  const t0 = cpuMs();
  for (let i = 0; i < n; i++) {
    const g = gfn(i & 31);
    acc ^= mem.read32(g, (i & 255) * 4);
    mem.write32(g, (i & 255) * 4, i);
  }
  const dt = cpuMs() - t0;
  cpu.stop();
  if (acc === 42) console.log('');
  return (2 * n) / (dt / 1000);
}

/** The same accesses made in runs: readWords then writeWords of `words` words of one page, over 32 pages (hot TLB). */
function mmuRunRate(n: number, words: number): number {
  const m = machineFor(0);
  const cpu = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 512, seed: 1 });
  cpu.start();
  const buf = new Uint32Array(words);
  let acc = 0;
  const runs = Math.max(1, Math.round(n / words));
  const t0 = cpuMs();
  for (let r = 0; r < runs; r++) {
    const g = gfn(r & 31);
    cpu.mem.readWords(g, 0, buf);
    acc ^= buf[r & (words - 1)]!;
    buf[0] = r;
    cpu.mem.writeWords(g, 0, buf);
  }
  const dt = cpuMs() - t0;
  cpu.stop();
  if (acc === 42) console.log('');
  return (2 * runs * words) / (dt / 1000);
}

function lockPairNs(n: number): number {
  const m = machineFor(0);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    m.lock(GLOBAL_LOCK.REGISTRY, 'bench');
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
  return ((performance.now() - t0) * 1e6) / n;
}

function nullHypercallNs(n: number): number {
  const m = machineFor(0);
  const cpu = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 512, seed: 1 });
  cpu.start();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) cpu.hc.current_reservation();
  const ns = ((performance.now() - t0) * 1e6) / n;
  cpu.stop();
  return ns;
}

/** Ping-pong round trips; with `idle_ms`, the partner has slept that long before each ping (a cold wake-up). */
async function pingPong(pool: Piscina, role: 'pong-spin' | 'pong-wait', n: number, idle_ms = 0): Promise<number[]> {
  const cell = new SharedArrayBuffer(4);
  const c = new Int32Array(cell);
  const task: BenchTask = { role, cell, n };
  const done = pool.run(task);
  const out: number[] = [];
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < n; i++) {
    if (idle_ms > 0) Atomics.wait(nap, 0, 0, idle_ms);
    const t0 = performance.now();
    Atomics.store(c, 0, 2 * i + 1);
    if (role === 'pong-wait') Atomics.notify(c, 0);
    for (;;) {
      const v = Atomics.load(c, 0);
      if (v === 2 * i + 2) break;
      if (role === 'pong-wait') Atomics.wait(c, 0, v, 100);
    }
    out.push((performance.now() - t0) * 1000);
  }
  await done;
  return out;
}

/**
 * IOREQ round trips: a guest vCPU thread reads an emulated register; a
 * device-model thread answers. With `acl` (Redis only, on a Redis the bench
 * may configure: its own), the dispatcher and the device model talk to
 * Redis as their ACL users (transport/redis-acl.ts), as a run's do.
 */
async function ioreqRtt(pool: Piscina, transport: 'ring' | 'redis', n: number, idle_ms: number, redisUrl?: string, acl = false): Promise<number[]> {
  return (await ioreqRttRun(pool, transport, n, idle_ms, redisUrl, acl, false)).rtts;
}

/**
 * Where the Redis round trip goes: the same round trips with the timeline
 * on (the vCPU, the device model and the dispatcher stamp each ioreq,
 * layout/trace.ts), split in stages (orchestrator/trace/stages.ts). A run
 * of its own, so the tracing costs nothing to the figures beside it.
 */
async function ioreqStagesOf(pool: Piscina, transport: 'ring' | 'redis', n: number, redisUrl?: string): Promise<IoreqStages | null> {
  return (await ioreqRttRun(pool, transport, n, 0, redisUrl, false, true)).stages;
}

/** Rings of a traced bench machine: its vCPU slots (two domains of two vCPUs) and the host's. */
const BENCH_TRACE_RINGS = 5;

async function ioreqRttRun(pool: Piscina, transport: 'ring' | 'redis', n: number, idle_ms: number, redisUrl: string | undefined, acl: boolean, trace: boolean): Promise<{ rtts: number[]; stages: IoreqStages | null }> {
  const m = machineFor(1, trace ? BENCH_TRACE_RINGS : 0);
  let collector: TraceCollector | undefined;
  if (m.trace !== undefined) {
    const slot = (d: number): number => m.dom.at(d, DOM.VCPU_BASE);
    if (slot(1) >= hostRing(m.trace)) throw new Error(`bench: vCPU slot ${slot(1)} has no ring of its own among ${m.trace.nr_rings}`);
    collector = new TraceCollector(m, {
      domains: [
        { domid: 0, name: 'dom0' },
        { domid: 1, name: 'frontend' },
      ],
      threads: [
        { ring: slot(0), domid: 0, vcpu: 0 },
        { ring: slot(1), domid: 1, vcpu: 0 },
        { ring: hostRing(m.trace), domid: -1, vcpu: 0 },
      ],
      stats: () => ({}),
    });
    setHostTracer(m.trace);
    collector.start();
  }
  try {
    const rtts = await ioreqRttOn(m, pool, transport, n, idle_ms, redisUrl, acl);
    return { rtts, stages: collector !== undefined ? ioreqStages(collector.finish()) : null };
  } finally {
    if (collector !== undefined) clearTracer();
  }
}

async function ioreqRttOn(m: Machine, pool: Piscina, transport: 'ring' | 'redis', n: number, idle_ms: number, redisUrl: string | undefined, acl: boolean): Promise<number[]> {
  const s = ioreqServerCreate(m, 0, 1, [{ start: 600, count: 1 }], 'none');
  const tr = await chooseTransport(transport, redisUrl, 1);
  const signed = signedTransport(tr.choice, [{ target: 1, index: s }]);
  const users =
    acl && tr.choice.kind === 'redis'
      ? await RunAcl.create({ url: tr.choice.url, namespace: tr.choice.namespace, roles: { dispatcher: { kind: 'dispatcher' }, admin: { kind: 'admin' }, dm: { kind: 'device-model', servers: [serverId(1, s)], frontends: [1] } } })
      : undefined;
  try {
    const dispatcher = tr.choice.kind === 'redis' ? await RedisDispatcher.start(m, users?.url('dispatcher') ?? tr.choice.url, tr.choice.namespace, [1], { runKey: signed.runKey, ...(users !== undefined ? { adminUrl: users.url('admin') } : {}) }) : undefined;
    const stop = new SharedArrayBuffer(4);
    const transportOf = users !== undefined && signed.choice.kind === 'redis' ? { ...signed.choice, url: users.url('dm') } : signed.choice;
    const dm: BenchTask = { role: 'echo-dm', sabs: m.sabs, domid: 0, slot: m.dom.at(0, DOM.VCPU_BASE), transport: transportOf, servers: [{ target: 1, index: s }], stop };
    const dmDone = pool.run(dm);
    // Wait for the device model to enable the server.
    while (m.ioreq.state(1, s) !== 2) await new Promise((r) => setTimeout(r, 5));
    const client: BenchTask = { role: 'ioreq-client', sabs: m.sabs, domid: 1, slot: m.dom.at(1, DOM.VCPU_BASE), gfn: 600, n, warmup: Math.min(1000, n), idle_ms, server_owner: 0 };
    const out = (await pool.run(client)) as number[];
    Atomics.store(new Int32Array(stop), 0, 1);
    await dmDone;
    await dispatcher?.stop();
    return out;
  } finally {
    await users?.remove();
  }
}

/**
 * The cost of the run's Redis ACL users (docs/security.md): the Redis IOREQ
 * round trip with an ACL user per role, against the same without, on one
 * redis-server the bench starts for it (ACL SETUSER is never sent to a
 * Redis nobody named), the two interleaved in rounds so that load on the
 * machine falls on both alike. Skipped without redis-server.
 */
async function aclRow(pool: Piscina, q: boolean, o: { progress: (what: string) => void }, add: (r: RowInput) => void): Promise<void> {
  if (!haveRedisServer()) return;
  o.progress('Redis IOREQ round trip, ACL users and none (a redis-server of its own)');
  const own = await startOwnRedis();
  if (own === undefined) return;
  try {
    const plain: number[] = [];
    const acl: number[] = [];
    for (let round = 0; round < (q ? 1 : 4); round++) {
      plain.push(...(await ioreqRtt(pool, 'redis', q ? 100 : 500, 0, own.url)));
      acl.push(...(await ioreqRtt(pool, 'redis', q ? 100 : 500, 0, own.url, true)));
    }
    const a = percentiles(acl);
    const p = percentiles(plain);
    add({ figure: 'Redis IOREQ round trip, ACL user per role (p50)', value: a.p50, unit: 'µs', floor: 'the same without ACL users, p50', floor_value: p.p50, ratio: a.p50 / p.p50, goal: '≤ 1.1× p50', ok: (r) => r <= 1.1 });
    add({ figure: 'Redis IOREQ round trip, ACL user per role (p99)', value: a.p99, unit: 'µs', floor: 'the same without ACL users, p99', floor_value: p.p99, ratio: a.p99 / p.p99, goal: '—' });
  } finally {
    await own.stop();
  }
}

/** Frontend vCPU threads of the Redis throughput figure (--quick: 2). */
const REDIS_PIPELINE_VCPUS = 4;
/** Frontend vCPU threads posting writes for the pipelined figure. */
const REDIS_POSTED_VCPUS = 1;
/** XADDs per pipeline of its floor. */
const RAW_XADD_BATCH = 64;

export interface BenchOptions {
  quick: boolean;
  filter?: string;
  redisUrl?: string;
  /** Curves to sweep instead of the figures (names of CURVES, or all). */
  curves?: string[];
  /** pCPUs for the curves' machines (0: the OS schedules the vCPU threads); default one per core. */
  pcpus?: number;
  progress: (s: string) => void;
}

type RowInput = Omit<BenchRow, 'pass' | 'ratio' | 'note'> & { ratio: number; ok?: (ratio: number, value: number) => boolean; problems?: string[] };

/** What every section of the benchmark gets: the options, the floors so far, and where its rows go. */
interface Ctx {
  o: BenchOptions;
  q: boolean;
  floors: Record<string, number>;
  add: (r: RowInput) => void;
  seed: number;
}

export { BENCH_SECTIONS };

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const want = (name: string): boolean => o.filter === undefined || name.includes(o.filter);
  if (o.curves === undefined && !BENCH_SECTIONS.some(want)) {
    throw new UsageError(`--filter: \`${o.filter ?? ''}\` matches no section of the benchmark (${BENCH_SECTIONS.join(', ')})`);
  }
  const floors: Record<string, number> = {};
  const rows: BenchRow[] = [];
  const add = (r: RowInput): void => {
    const problems = r.problems ?? [];
    const pass = r.ok === undefined ? null : problems.length === 0 && r.ok(r.ratio, r.value);
    rows.push({ figure: r.figure, value: round(r.value), unit: r.unit, floor: r.floor, floor_value: round(r.floor_value), ratio: round(r.ratio, 3), goal: r.goal, pass, ...(problems.length > 0 ? { note: problems.join('; ') } : {}), ...(r.detail !== undefined ? { detail: r.detail } : {}) });
  };
  const c: Ctx = { o, q: o.quick, floors, add, seed: 1 };
  if (o.curves !== undefined) {
    const curves: Curve[] = [];
    for (const name of o.curves) curves.push(await runCurve(name, { quick: c.q, seed: c.seed, pcpus: o.pcpus ?? hostPcpus(), progress: o.progress }));
    return { ...reportHead(c.q), floors, rows, curves };
  }
  if (want('access') || want('hypercall') || want('ioreq')) await threadRows(c, want);
  if (want('revoke')) await revokeRows(c);
  if (want('steal')) stealRows(c);
  if (want('sim')) await simRows(c);
  if (want('campaign')) await campaignRows(c);
  if (want('topology')) {
    // After other sections, in a process of its own: their heap would count in the RSS figure.
    if (rows.length > 0) await topologyInChild(c, rows);
    else await topologyRows(c);
  }
  return { ...reportHead(c.q), floors, rows };
}

/** The topology section in a child `xgsim bench --filter topology` (a fresh process), its rows and floors taken into this report. */
async function topologyInChild({ o, q, floors }: Ctx, rows: BenchRow[]): Promise<void> {
  o.progress('topology: in a process of its own');
  const child = spawn(process.execPath, [join(PROJECT_ROOT, 'bin', 'xgsim.js'), 'bench', '--filter', 'topology', '--json', ...(q ? ['--quick'] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((res) => child.on('close', res));
  if (code !== 0) throw new Error(`the topology section's process exited with ${code}`);
  const r = JSON.parse(out) as BenchReport;
  Object.assign(floors, r.floors);
  rows.push(...r.rows);
}

/** Floors and figures of one thread and of two threads handing over: access, hypercall, IOREQ. */
async function threadRows({ o, q, floors, add }: Ctx, want: (name: string) => boolean): Promise<void> {
  const pool = new Piscina({ filename: distModule('orchestrator/bench/bench-worker'), minThreads: 2, maxThreads: 2, idleTimeout: Infinity, concurrentTasksPerWorker: 1 });
  try {
    const reps = q ? 3 : 7;
    o.progress('floors: typed-array access, lock pair, Atomics ping-pong');
    floors['raw_access_per_s'] = median(timeIt(reps, () => rawAccessRate(q ? 2e6 : 2e7)));
    floors['lock_pair_ns'] = median(timeIt(reps, () => lockPairNs(q ? 2e5 : 2e6)));
    const spin = percentiles(await pingPong(pool, 'pong-spin', q ? 2000 : 20000));
    const wait = percentiles(await pingPong(pool, 'pong-wait', q ? 300 : 2000));
    // The same with the partner parked 2 ms before each ping, as the idle server is.
    const cold = percentiles(await pingPong(pool, 'pong-wait', q ? 100 : 500, 2));
    floors['spin_pingpong_p50_us'] = spin.p50;
    floors['wait_pingpong_p50_us'] = wait.p50;
    floors['cold_wait_pingpong_p50_us'] = cold.p50;
    const tr = await chooseTransport('auto', o.redisUrl, 1);
    const redisUrl = tr.choice.kind === 'redis' ? tr.choice.url : undefined;
    if (tr.kind === 'redis' && tr.choice.kind === 'redis') {
      o.progress('floor: raw Redis stream round trip');
      floors['redis_stream_rtt_p50_us'] = percentiles(await rawStreamRoundTrip(tr.choice.url, q ? 200 : 2000)).p50;
      // The same round trips with the server on a thread of its own, as an IOREQ's device model is: each leg's
      // blocked reader is then woken on another event loop (BENCHMARKS.md, the Redis round trip by stage).
      o.progress('floor: raw Redis stream round trip, server on another thread');
      floors['redis_stream_rtt_across_p50_us'] = percentiles(await rawStreamRoundTrip(tr.choice.url, q ? 200 : 2000, true)).p50;
    }
    if (want('access')) {
      o.progress('guest access through p2m + TLB');
      const n = q ? 2e6 : 2e7;
      // Each repetition times the raw floor right before the figure and the
      // ratio is the median of those pairs: the floor measured minutes
      // earlier moved by up to 1.8× with the VM's load (1.1–2.0 G/s).
      const paired = (f: () => number): { v: number; floor: number; ratio: number } => {
        const vs: number[] = [];
        const fs: number[] = [];
        const rs: number[] = [];
        for (let r = 0; r < reps; r++) {
          const raw = rawAccessRate(n);
          const v = f();
          vs.push(v);
          fs.push(raw);
          rs.push(v / raw);
        }
        const mid = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!; // unrounded: median() keeps one decimal
        return { v: mid(vs), floor: mid(fs), ratio: mid(rs) };
      };
      const row = (figure: string, p: { v: number; floor: number; ratio: number }, goal: boolean): void =>
        add({ figure, value: p.v / 1e6, unit: 'M/s', floor: 'raw typed-array access (paired)', floor_value: p.floor / 1e6, ratio: p.ratio, ...(goal ? { goal: '≥ 0.25× throughput', ok: (r: number) => r >= 0.25 } : { goal: '—' }) });
      row('guest access through p2m + software TLB', paired(() => mmuAccessRate(n)), true);
      row('guest access through GuestCpu.mem (the MMU, one call fewer)', paired(() => memAccessRate(n)), false);
      row('guest access in runs of 256 words (readWords/writeWords)', paired(() => mmuRunRate(n, 256)), false);
    }
    if (want('hypercall')) {
      o.progress('null hypercall');
      const v = median(timeIt(reps, () => nullHypercallNs(q ? 2e5 : 2e6)));
      // Issue 18's goal: a null hypercall at most twice an uncontended lock pair.
      add({ figure: 'null hypercall on a vCPU thread', value: v, unit: 'ns', floor: 'uncontended lock pair', floor_value: floors['lock_pair_ns'], ratio: v / floors['lock_pair_ns'], goal: '≤ 2×', ok: (r) => r <= 2 });
    }
    if (want('ioreq')) {
      o.progress('ring IOREQ round trip (server hot)');
      const hot = percentiles(await ioreqRtt(pool, 'ring', q ? 500 : 5000, 0));
      add({ figure: 'ring IOREQ round trip, server hot (p50)', value: hot.p50, unit: 'µs', floor: 'spin ping-pong p50', floor_value: spin.p50, ratio: hot.p50 / spin.p50, goal: '≤ 3× p50', ok: (r) => r <= 3 });
      add({ figure: 'ring IOREQ round trip, server hot (p99)', value: hot.p99, unit: 'µs', floor: 'spin ping-pong p99', floor_value: spin.p99, ratio: hot.p99 / spin.p99, goal: '—' });
      o.progress('ring IOREQ round trip (server idle)');
      const idle = percentiles(await ioreqRtt(pool, 'ring', q ? 100 : 500, 2));
      add({ figure: 'ring IOREQ round trip, server idle (p50)', value: idle.p50, unit: 'µs', floor: 'wait/notify ping-pong p50', floor_value: wait.p50, ratio: idle.p50 / wait.p50, goal: '≤ 1.5× p50', ok: (r) => r <= 1.5 });
      add({ figure: 'ring IOREQ round trip, server idle (p50), vs cold', value: idle.p50, unit: 'µs', floor: 'wait/notify, parked 2 ms, p50', floor_value: cold.p50, ratio: idle.p50 / cold.p50, goal: '—' });
      const floor = floors['redis_stream_rtt_p50_us'];
      if (floor !== undefined && redisUrl !== undefined) {
        o.progress('Redis IOREQ round trip');
        const rd = percentiles(await ioreqRtt(pool, 'redis', q ? 100 : 1000, 0, o.redisUrl));
        add({ figure: 'Redis IOREQ round trip (p50)', value: rd.p50, unit: 'µs', floor: 'raw stream round trip p50', floor_value: floor, ratio: rd.p50 / floor, goal: '≤ 1.3× p50', ok: (r) => r <= 1.3 });
        const across = floors['redis_stream_rtt_across_p50_us'];
        // The same figure against the floor of the same shape; the issue's goal stays judged on the row above.
        if (across !== undefined) add({ figure: 'Redis IOREQ round trip (p50), vs the server on another thread', value: rd.p50, unit: 'µs', floor: 'raw stream round trip, server thread, p50', floor_value: across, ratio: rd.p50 / across, goal: '—' });
        add({ figure: 'Redis IOREQ round trip (p99)', value: rd.p99, unit: 'µs', floor: 'raw stream round trip p50', floor_value: floor, ratio: rd.p99 / floor, goal: '—' });
        // Where it goes: each stage's p50 as a row of its own (the stages' p50s need not add up to the total's).
        o.progress('Redis IOREQ round trip by stage (traced)');
        const st = await ioreqStagesOf(pool, 'redis', q ? 100 : 1000, o.redisUrl);
        if (st !== null) {
          for (const name of STAGES) {
            const f = st.stages[name];
            if (f !== undefined) add({ figure: `Redis IOREQ round trip, stage: ${name} (p50)`, value: f.p50, unit: 'µs', floor: 'raw stream round trip p50', floor_value: floor, ratio: f.p50 / floor, goal: '—', detail: STAGE_WHAT[name] });
          }
        }
        // Throughput, the same time as the floor, one device model: posted
        // writes (buffered ioreqs: many in flight, the dispatcher pipelines
        // them) from one frontend vCPU thread — the pipelined figure — and
        // synchronous reads from K vCPU threads (one ioreq in flight each).
        const duration_ms = q ? 300 : 2000;
        o.progress(`floor: raw pipelined XADD (${RAW_XADD_BATCH} per pipeline)`);
        const raw = await rawPipelinedXadd(redisUrl, duration_ms, RAW_XADD_BATCH);
        floors['redis_pipelined_xadd_per_s'] = raw.entries_per_s;
        o.progress('Redis IOREQ throughput, posted writes');
        const pw = await ioreqThroughput({ transport: 'redis', dms: 1, fe_vcpus: REDIS_POSTED_VCPUS, duration_ms, warmup: q ? 5 : 50, redisUrl: o.redisUrl, posted: true });
        const detail = `posted writes (buffered ioreqs) of ${REDIS_POSTED_VCPUS} vCPU thread: ${Math.round((100 * pw.posted) / Math.max(1, pw.ioreqs))}% posted, the rest found the ring full; ${Math.round(pw.per_pipeline)} requests per dispatcher pipeline`;
        add({ detail, figure: 'Redis IOREQ throughput, pipelined', value: pw.ioreqs_per_s / 1000, unit: 'k/s', floor: `raw pipelined XADD (${RAW_XADD_BATCH}/pipeline)`, floor_value: raw.entries_per_s / 1000, ratio: pw.ioreqs_per_s / raw.entries_per_s, goal: '≥ 0.5×', ok: (r) => r >= 0.5 });
        const k = q ? 2 : REDIS_PIPELINE_VCPUS;
        o.progress(`Redis IOREQ throughput, synchronous reads, ${k} vCPUs`);
        const tp = await ioreqThroughput({ transport: 'redis', dms: 1, fe_vcpus: k, duration_ms, warmup: q ? 5 : 50, redisUrl: o.redisUrl });
        add({ detail: `${k} vCPU threads reading, one ioreq in flight each; ${Math.round(tp.per_pipeline * 10) / 10} requests per dispatcher pipeline`, figure: 'Redis IOREQ throughput, synchronous reads', value: tp.ioreqs_per_s / 1000, unit: 'k/s', floor: `raw pipelined XADD (${RAW_XADD_BATCH}/pipeline)`, floor_value: raw.entries_per_s / 1000, ratio: tp.ioreqs_per_s / raw.entries_per_s, goal: '—' });
      }
      await aclRow(pool, q, o, add);
    }
  } finally {
    await pool.destroy();
  }
}

/** Revoke against hostile vCPU threads, against RAM size, and batched. */
async function revokeRows({ o, q, floors, add, seed }: Ctx): Promise<void> {
  const duration_ms = q ? 300 : 4000;
  // Twice: on as many pCPUs as cores (hypervisor/xen/schedule.ts, the
  // default of every run), and with the vCPU threads scheduled by the OS.
  for (const pcpus of [hostPcpus(), 0]) {
    const on = pcpus === 0 ? ', OS-scheduled' : `, ${pcpus} pCPUs`;
    o.progress(`Revoke, 8 frontend vCPUs halted (idle)${on}`);
    const idle = await revokeLoad({ fe_vcpus: 8, mode: 'halt', pages: 1, duration_ms, seed, pcpus });
    o.progress(`Revoke, 8 frontend vCPUs hammering (hostile)${on}`);
    const hostile = await revokeLoad({ fe_vcpus: 8, mode: 'hammer', pages: 1, duration_ms, seed, pcpus });
    floors[pcpus === 0 ? 'revoke_idle_os_p50_us' : 'revoke_idle_p50_us'] = idle.lat.p50;
    const problems = [...idle.problems, ...hostile.problems];
    add({ figure: `Revoke p99, 8 vCPUs hammering (1 page)${on}`, value: hostile.lat.p99, unit: 'µs', floor: 'idle Revoke p50', floor_value: idle.lat.p50, ratio: hostile.lat.p99 / idle.lat.p50, goal: '≤ 20×', ok: (r) => r <= 20, problems });
    add({ figure: `Revoke p50, 8 vCPUs hammering (1 page)${on}`, value: hostile.lat.p50, unit: 'µs', floor: 'idle Revoke p50', floor_value: idle.lat.p50, ratio: hostile.lat.p50 / idle.lat.p50, goal: '—', problems });
  }

  o.progress('Revoke of 1 page with 16k and 1M frames of RAM');
  const n = q ? 300 : 3000;
  revokeOnePageUs(16 * 1024, n); // warm-up: the first machine pays for the JIT
  // Alternated, so a burst of other load on the machine hits both sizes alike.
  const smalls: number[] = [];
  const bigs: number[] = [];
  for (let r = 0; r < (q ? 1 : 3); r++) {
    smalls.push(revokeOnePageUs(16 * 1024, n));
    bigs.push(revokeOnePageUs(1024 * 1024, n));
  }
  const small = median(smalls);
  const big = median(bigs);
  floors['revoke_16k_frames_p50_us'] = small;
  add({ figure: 'Revoke of 1 page, 1M frames of RAM (p50)', value: big, unit: 'µs', floor: 'same, 16k frames', floor_value: small, ratio: big / small, goal: '≤ 1.2×', ok: (r) => r <= 1.2 });

  o.progress('Revoke of 1 and of 512 pages, 2 frontend vCPUs hammering');
  const one = await revokeLoad({ fe_vcpus: 2, mode: 'hammer', pages: 1, duration_ms, seed, pcpus: hostPcpus() });
  const many = await revokeLoad({ fe_vcpus: 2, mode: 'hammer', pages: 512, duration_ms, seed, pcpus: hostPcpus() });
  floors['revoke_1_page_busy_p50_us'] = one.lat.p50;
  add({ figure: 'Revoke of 512 pages (p50)', value: many.lat.p50, unit: 'µs', floor: '512 × Revoke of 1 page', floor_value: 512 * one.lat.p50, ratio: many.lat.p50 / (512 * one.lat.p50), goal: '≤ 0.5×', ok: (r) => r <= 0.5, problems: [...one.problems, ...many.problems] });
}

/** `xgsim sim` on the default topology: decisions per second, seeds per hour, simulated over real time. */
async function simRows({ o, q, floors, add }: Ctx): Promise<void> {
  o.progress('floor: bare scheduling decisions');
  bareDecisionRate(200_000); // warm-up (JIT)
  const floor = median(timeIt(q ? 3 : 7, () => bareDecisionRate(q ? 200_000 : 2_000_000)));
  floors['bare_decisions_per_s'] = floor;
  const seeds = q ? 2 : 8;
  const steps = q ? 2000 : 20_000;
  o.progress(`sim: ${seeds} seeds of ${steps} decisions, default topology`);
  const r = await simThroughput(seeds, steps);
  const detail = `${seeds} seeds of ${steps} decisions (and the quiet tail), mixed strategy, nemeses and swarm drawn per seed`;
  add({ figure: 'sim decisions/s, default topology', value: r.decisions_per_s / 1000, unit: 'k/s', floor: 'bare scheduling decision', floor_value: floor / 1000, ratio: r.decisions_per_s / floor, goal: '≥ 150 k/s', ok: (_r, x) => x >= 150, problems: r.problems, detail });
  add({ figure: `sim seeds/hour (${steps} decisions), one core`, value: r.seeds_per_hour, unit: 'seeds/h', floor: 'bare scheduling decision', floor_value: (floor * 3600) / steps, ratio: r.seeds_per_hour / ((floor * 3600) / steps), goal: '—', problems: r.problems });
  add({ figure: 'sim simulated time / real time', value: r.sim_ratio, unit: '×', floor: 'real time', floor_value: 1, ratio: r.sim_ratio, goal: '≥ 100×', ok: (_r, x) => x >= 100, problems: r.problems });
}

/**
 * Campaign throughput: the same sim jobs on one host with one core for
 * jobs (the floor), on one host with every core, and on two hosts sharing
 * the cores (scale-out on one machine: what a second host costs).
 */
async function campaignRows({ o, q, floors, add, seed }: Ctx): Promise<void> {
  const url = redisUrlOf(o.redisUrl);
  const cores = cpus().length;
  if (!(await RedisIoreqBus.reachable(url, 1000))) {
    o.progress('campaign: no Redis, rows skipped');
    return;
  }
  // Jobs long enough (~2–4 s each) that the figure is the jobs, not the hosts' and job processes'
  // start-up: with 16 jobs of 20 000 decisions (0.5 s each) it was mostly start-up (BENCHMARKS.md).
  // Quick: a smoke test of the section (its figure is mostly the start-up then).
  const runs = q ? 2 : 8;
  const steps = q ? 1000 : 100_000;
  const run = (hosts: number, hostJobs: number): ReturnType<typeof campaignThroughput> => {
    o.progress(`campaign: ${runs} sim jobs, ${hosts} host${hosts === 1 ? '' : 's'} × ${hostJobs} core${hostJobs === 1 ? '' : 's'}`);
    return campaignThroughput({ runs, steps, hosts, hostJobs, seed, redisUrl: url });
  };
  o.progress(`floor: the machine's own parallel speed-up, ${cores} CPU-bound processes vs 1`);
  const par = await parallelSpeedup(cores, q ? 1e7 : 1e8);
  floors['parallel_speedup'] = par.speedup;
  const one = await run(1, 1);
  floors['campaign_1_host_1_core_jobs_per_min'] = one.jobs_per_min;
  const all = await run(1, cores);
  const two = await run(2, Math.max(1, Math.floor(cores / 2)));
  const detail = `${runs} sim jobs of ${steps} decisions, hosts' start-up included`;
  // The same speed-up against what the machine itself gives n processes of a bare loop (no goal: how much of it
  // the campaign takes; the issue's goal stays judged on the rows below).
  const speedup = all.jobs_per_min / Math.max(one.jobs_per_min, 1e-9);
  add({ figure: `campaign speed-up, 1 host × ${cores} cores, vs the machine's own`, value: speedup, unit: '×', floor: `${cores} bare CPU loops vs 1`, floor_value: par.speedup, ratio: speedup / par.speedup, goal: '—', detail: `bare loop: 1 process ${par.one_ms.toFixed(0)} ms, ${cores} at once ${par.n_ms.toFixed(0)} ms` });
  add({ figure: `campaign throughput, 1 host × ${cores} cores`, value: all.jobs_per_min, unit: 'jobs/min', floor: '1 host × 1 core', floor_value: one.jobs_per_min, ratio: all.jobs_per_min / Math.max(one.jobs_per_min, 1e-9), goal: `≥ ${Math.min(cores, 2) * 0.9}×`, ok: (r) => r >= Math.min(cores, 2) * 0.9, problems: [...one.problems, ...all.problems], detail });
  add({ figure: `campaign throughput, 2 hosts × ${Math.max(1, Math.floor(cores / 2))} core${cores >= 4 ? 's' : ''}`, value: two.jobs_per_min, unit: 'jobs/min', floor: '1 host × 1 core', floor_value: one.jobs_per_min, ratio: two.jobs_per_min / Math.max(one.jobs_per_min, 1e-9), goal: `≥ ${Math.min(cores, 2) * 0.9}×`, ok: (r) => r >= Math.min(cores, 2) * 0.9, problems: [...one.problems, ...two.problems], detail });
}

function stealRows({ o, q, floors, add }: Ctx): void {
  o.progress('Steal + Return, 512 pages per call, 1024 other Maps live');
  const reps = q ? 3 : 7;
  rawPageMoveRate(512, 200); // warm-up (JIT)
  const floor = median(timeIt(reps, () => rawPageMoveRate(512, q ? 200 : 2000)));
  floors['raw_page_move_per_s'] = floor;
  stealReturnRate(512, 20, BACKGROUND_MAPS); // warm-up (JIT)
  const v = median(timeIt(reps, () => stealReturnRate(512, q ? 20 : 200, BACKGROUND_MAPS)));
  add({ figure: 'Steal + Return, 512 pages per call', value: v / 1000, unit: 'k pages/s', floor: 'raw per-page atomics', floor_value: floor / 1000, ratio: v / floor, goal: '≥ 200k pages/s', ok: (_r, x) => x >= 200 });
}

/** Live Maps beside the Steal + Return figure: half the registry. */
const BACKGROUND_MAPS = 1024;

async function topologyRows({ o, q, floors, add, seed }: Ctx): Promise<void> {
  // --quick boots a small topology: the smoke test checks the report, not the figure.
  const t = q ? { domains: 8, vcpus: 2, ram_mib: 128 } : { domains: 64, vcpus: 2, ram_mib: 1024 };
  const name = `${t.domains} domains × ${t.vcpus} vCPUs, ${t.ram_mib >= 1024 ? `${t.ram_mib / 1024} GiB` : `${t.ram_mib} MiB`}`;
  const threads = t.domains * t.vcpus;
  o.progress(`floor: ${threads} bare worker threads`);
  const bare = await bareWorkers(threads);
  floors['bare_workers_boot_ms'] = bare.boot_ms;
  floors['bare_workers_cpu_ms'] = bare.cpu_ms;
  floors['bare_workers_rss_mib'] = bare.rss_bytes / 2 ** 20;
  o.progress(`topology ${name}: boot`);
  const top = await topologyBoot({ ...t, seed });
  add({ figure: `boot, ${name}`, value: top.boot_ms / 1000, unit: 's', floor: `${threads} bare threads`, floor_value: bare.boot_ms / 1000, ratio: top.boot_ms / bare.boot_ms, goal: '≤ 3 s', ok: (_r, x) => x <= 3, problems: top.problems });
  // The CPU the boot took, all threads: what the wall time is made of on a machine that is not otherwise busy.
  add({ figure: `boot CPU time, ${name}`, value: top.boot_cpu_ms / 1000, unit: 's', floor: `${threads} bare threads, CPU`, floor_value: bare.cpu_ms / 1000, ratio: top.boot_cpu_ms / bare.cpu_ms, goal: '—', problems: top.problems });
  const gib = 1024 ** 3;
  add({ figure: `RSS, ${name}`, value: top.rss_bytes / gib, unit: 'GiB', floor: 'simulated RAM', floor_value: top.ram_bytes / gib, ratio: top.rss_bytes / top.ram_bytes, goal: '≤ 1.3×', ok: (r) => r <= 1.3, problems: top.problems });
}

function reportHead(quick: boolean): Pick<BenchReport, 'date' | 'machine' | 'quick' | 'load'> {
  return { date: new Date().toISOString(), machine: { cores: cpus().length, node: process.version, cpu: cpus()[0]?.model ?? 'unknown' }, quick, load: loadavg().map((x) => round(x)) };
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** The unit of a floor, from its name's suffix (raw_access_per_s → /s). */
export function floorUnit(name: string): { label: string; unit: string } {
  const units: Array<[RegExp, string]> = [
    [/_per_s$/, '/s'],
    [/_ns$/, 'ns'],
    [/_us$/, 'µs'],
    [/_ms$/, 'ms'],
    [/_mib$/, 'MiB'],
  ];
  for (const [re, unit] of units) if (re.test(name)) return { label: name.replace(re, ''), unit };
  return { label: name, unit: '' };
}

export function formatBench(r: BenchReport): string {
  const lines = [`xgsim bench — ${r.date}, ${r.machine.cores} cores, Node ${r.machine.node}, load ${r.load.join(' ')}${r.quick ? ' (quick)' : ''}`];
  const floors = Object.entries(r.floors).map(([k, v]) => {
    const f = floorUnit(k);
    // Rates in the millions read better as M/s, three significant digits (the floors vary far more than that run to run).
    if (f.unit === '/s' && v >= 1e6) return [f.label, `${+(v / 1e6).toPrecision(3)} M/s`];
    if (f.unit === '/s' && v >= 1e4) return [f.label, `${+(v / 1e3).toPrecision(3)} k/s`];
    return [f.label, withUnit(v, f.unit)];
  });
  if (floors.length > 0) lines.push('floors:', ...table([{ head: 'floor' }, { head: 'value', right: true }], floors, '  '));
  if (r.rows.length > 0) {
    // Every figure with its unit: the floor's value is in the figure's unit, the ratio is figure ÷ floor.
    const rows = r.rows.map((x) => [x.figure, `${x.value} ${x.unit}`, x.floor, `${x.floor_value} ${x.unit}`, `${x.ratio}×`, x.goal, `${x.pass === null ? '' : x.pass ? 'pass' : 'MISS'}${x.note !== undefined ? ` (${x.note})` : ''}`]);
    const t = table([{ head: 'figure' }, { head: 'value', right: true }, { head: 'floor' }, { head: 'floor value', right: true }, { head: 'ratio', right: true }, { head: 'goal' }, { head: 'result' }], rows);
    lines.push('', t[0]!);
    r.rows.forEach((x, i) => {
      lines.push(t[i + 1]!);
      if (x.detail !== undefined) lines.push(`  ${x.detail}`);
    });
  }
  for (const c of r.curves ?? []) lines.push('', formatCurve(c));
  return lines.join('\n');
}
