/**
 * The benchmark's figures that need a whole machine of vCPU threads: Revoke
 * latency while frontend vCPUs (real threads, `stress-frontend`) hammer the
 * pages or sit halted, and the boot time and memory of a large topology.
 * The Host runs in this process (no fork), with the checks on — the
 * default of `xgsim up` and `xgsim stress` — so a hostile run also proves
 * that no access got through after a Revoke returned.
 */
import { Worker } from 'node:worker_threads';
import { Host, type HostDomainSpec, type HostReport, type HostSpec } from '../../hypervisor/host/host.js';
import { DOM } from '../../hypervisor/layout/domains.js';
import { STAT } from '../../hypervisor/layout/vcpus.js';
import { percentiles, type Percentiles } from '../stats.js';
import { STRESS_FE_PAGES, STRESS_WINDOW_GFN, stressMachineSpec, type FrontendMode, type StressFrontend } from '../up/stress-spec.js';
import { NO_BUGS } from '../../hypervisor/xen/buggify.js';

export interface RevokeLoad {
  /** Frontend vCPU threads, all playing `mode`. */
  fe_vcpus: number;
  mode: FrontendMode;
  /** Pages per Map, and so per Revoke. */
  pages: number;
  duration_ms: number;
  seed: number;
  /** pCPUs the vCPUs are scheduled on (hypervisor/xen/schedule.ts); 0: the OS schedules every vCPU thread. */
  pcpus: number;
}

export interface RevokeLoadResult {
  /** Latency of the whole dm_revoke hypercall as the backend vCPU sees it, µs. */
  lat: Percentiles;
  revokes_per_s: number;
  /** Violations, poison reads and errors of the run: a fast Revoke that let an access through is no result. */
  problems: string[];
}

/** dom0 (one vCPU: Map → hold → Revoke → poison, timed) and one frontend of `fe_vcpus` threads. */
export function revokeLoadSpec(o: RevokeLoad): HostSpec {
  const frontend: StressFrontend = {
    vcpus: Math.max(1, o.fe_vcpus),
    mode: o.fe_vcpus === 0 ? 'halt' : o.mode,
    // Room in the guest physical space for a window of up to 512 pages above RAM.
    max_pages: Math.max(STRESS_FE_PAGES, STRESS_WINDOW_GFN + o.pages),
  };
  return stressMachineSpec({ frontends: [frontend], backend_vcpus: 1, pages: o.pages, hold_steps: 8, seed: o.seed, buggify: NO_BUGS, check_interval_ms: 0, pcpus: o.pcpus });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function problemsOf(r: HostReport): string[] {
  const out = [...r.errors];
  for (const [k, v] of Object.entries(r.invariants)) if (v.violations > 0) out.push(`${k}: ${v.violations} violations`);
  const poison = r.vcpu_results.reduce((a, v) => a + (v.out['poison_seen'] ?? 0), 0);
  if (poison > 0) out.push(`poison read ${poison} times after Revoke returned`);
  const failed = r.vcpu_results.reduce((a, v) => a + (v.out['revoke_fail'] ?? 0) + (v.out['map_fail'] ?? 0), 0);
  if (failed > 0) out.push(`${failed} Map/Revoke failures`);
  return out;
}

/**
 * Run the load for `duration_ms` once every vCPU thread is up; Revokes the
 * backend made before that (while frontend threads were still starting) are
 * left out.
 */
export async function revokeLoad(o: RevokeLoad): Promise<RevokeLoadResult> {
  const host = new Host(revokeLoadSpec(o));
  host.boot();
  host.start();
  const beSlot = host.m.dom.at(0, DOM.VCPU_BASE);
  const up = await host.allVcpusRunning(60_000);
  const skip = host.m.vcpus.stat(beSlot, STAT.REVOKES);
  const t0 = performance.now();
  await sleep(o.duration_ms);
  const r = await host.shutdown();
  const dt_s = (performance.now() - t0) / 1000;
  const all = r.vcpu_results.filter((v) => v.domid === 0).flatMap((v) => v.samples['revoke_us'] ?? []);
  const samples = all.slice(Math.min(skip, all.length));
  const problems = problemsOf(r);
  if (!up) problems.push('the vCPU threads did not all start within 60 s');
  if (samples.length === 0) problems.push('no Revoke completed');
  return { lat: percentiles(samples), revokes_per_s: samples.length / dt_s, problems };
}

export interface TopologyResult {
  /** From `new Host` to every vCPU thread past its first boundary. */
  boot_ms: number;
  /** CPU time of the whole process (every thread) over the same span: less skewed by other work on the machine than boot_ms. */
  boot_cpu_ms: number;
  /** The process's resident set once booted (RAM populated: with the checks on, every frame has been read). */
  rss_bytes: number;
  /** The same process before the host was made. */
  rss_before_bytes: number;
  ram_bytes: number;
  problems: string[];
}

/**
 * `domains` domains × `vcpus` vCPUs sharing `ram_mib` of RAM, each
 * populated with its share and halted: how long the machine takes to come
 * up and how much memory it holds.
 */
export async function topologyBoot(o: { domains: number; vcpus: number; ram_mib: number; seed: number }): Promise<TopologyResult> {
  const nr_frames = (o.ram_mib * 1024 * 1024) / 4096;
  // Nearly all of RAM goes to the domains; a little stays free, as on a real host.
  const per = Math.floor((nr_frames * 0.97) / o.domains);
  const domains: HostDomainSpec[] = Array.from({ length: o.domains }, (_, d) => ({
    name: d === 0 ? 'dom0' : `guest${d}`,
    domid: d,
    role: d === 0 ? 'backend' : 'frontend',
    memory_pages: per,
    max_pages: per,
    vcpus: o.vcpus,
    privileged: d === 0,
    devices: [],
    workload: { kind: 'stress-frontend', mode: 'halt' },
    peers: [],
    ...(d > 0 ? { backend: 0 } : {}),
  }));
  const rss_before_bytes = process.memoryUsage().rss;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const host = new Host({ nr_frames, page_size_bytes: 4096, domains, seed: o.seed, checking: true, buggify: NO_BUGS, check_interval_ms: 0 });
  host.boot();
  host.start();
  const up = await host.allVcpusRunning(120_000);
  const boot_ms = performance.now() - t0;
  const boot_cpu_ms = cpuMs(process.cpuUsage(cpu0));
  const rss_bytes = process.memoryUsage().rss;
  const r = await host.shutdown();
  const problems = problemsOf(r);
  if (!up) problems.push('the vCPU threads did not all start within 120 s');
  return { boot_ms, boot_cpu_ms, rss_bytes, rss_before_bytes, ram_bytes: nr_frames * 4096, problems };
}

const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;

/**
 * The floor of a thread-per-vCPU machine: `n` bare worker threads (an empty
 * module each), started at once; their start-up time, and the resident set
 * they add.
 */
export async function bareWorkers(n: number): Promise<{ boot_ms: number; cpu_ms: number; rss_bytes: number }> {
  const before = process.memoryUsage().rss;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const ws: Worker[] = [];
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((res, rej) => {
          const w = new Worker('setInterval(() => {}, 1 << 30)', { eval: true });
          ws.push(w);
          w.once('online', () => res());
          w.once('error', rej);
        }),
    ),
  );
  const boot_ms = performance.now() - t0;
  const cpu_ms = cpuMs(process.cpuUsage(cpu0));
  const rss_bytes = process.memoryUsage().rss - before;
  await Promise.all(ws.map((w) => w.terminate()));
  return { boot_ms, cpu_ms, rss_bytes };
}
