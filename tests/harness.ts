/**
 * Test harness: a host in this process (its vCPUs on real worker threads),
 * seeded from SEED or at random, the seed printed so any run can be
 * replayed with `SEED=<n> npx vitest run <file>`.
 */
import { Host, type HostDomainSpec, type HostReport } from '../hypervisor/host/host.js';
import { parseBuggify } from '../hypervisor/xen/buggify.js';
import type { WorkloadSpec } from '../domains/index.js';

export function testSeed(name: string): number {
  const env = process.env['SEED'];
  const seed = env !== undefined && /^\d+$/.test(env) ? Number(env) : Math.floor(Math.random() * 2 ** 31);
  console.log(`[${name}] seed ${seed} (replay: SEED=${seed} npx vitest run -t "${name}")`);
  return seed;
}

export interface DomSpec {
  name?: string;
  memory_pages?: number;
  vcpus?: number;
  privileged?: boolean;
  workload: WorkloadSpec;
  peers?: number[];
}

export function hostOf(doms: DomSpec[], o: { seed: number; bugs?: string; nr_frames?: number; check_interval_ms?: number }): Host {
  const domains: HostDomainSpec[] = doms.map((d, i) => ({
    name: d.name ?? `d${i}`,
    domid: i,
    role: i === 0 ? 'backend' : 'frontend',
    memory_pages: d.memory_pages ?? 256,
    max_pages: d.memory_pages ?? 256,
    vcpus: d.vcpus ?? 2,
    privileged: d.privileged ?? i === 0,
    devices: [],
    workload: d.workload,
    peers: d.peers ?? [],
  }));
  return new Host({
    nr_frames: o.nr_frames ?? 4096,
    page_size_bytes: 4096,
    domains,
    seed: o.seed,
    checking: true,
    buggify: parseBuggify(o.bugs),
    check_interval_ms: o.check_interval_ms ?? 100,
  });
}

/** Boot, run for `ms`, shut down; returns the report (violations included). */
export async function runFor(host: Host, ms: number, during?: (host: Host) => void | Promise<void>): Promise<HostReport> {
  host.boot();
  await host.startAsync();
  // Worker threads take a while to come up on two cores; time the run from
  // when every vCPU has made progress.
  await host.allVcpusRunning(30_000);
  await new Promise((r) => setTimeout(r, ms));
  await during?.(host);
  return host.shutdown();
}

/** Sum of one outcome counter over the vCPUs of a domain. */
export function outOf(r: HostReport, domid: number, key: string): number {
  return r.vcpu_results.filter((v) => v.domid === domid).reduce((a, v) => a + (v.out[key] ?? 0), 0);
}

export function totalViolations(r: HostReport): number {
  return Object.values(r.invariants).reduce((a, v) => a + v.violations, 0);
}

export function explain(r: HostReport): string {
  return JSON.stringify({ invariants: r.invariants, violations: r.violations.slice(0, 5), errors: r.errors, out: r.vcpu_results.map((v) => [v.domid, v.vcpu, v.out]) });
}

/** Until a workload check failed (they are published as they come) or an invariant was violated, at most `ms`. */
export async function untilCaught(h: Host, ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 50) {
    if ((h.stats()['check_fails'] ?? 0) > 0 || h.m.log.totalViolations() > 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every failed check, attack that worked and violated invariant of a run, by name. */
export function signatures(r: HostReport): string[] {
  const out = r.vcpu_results.flatMap((v) => Object.keys(v.out).filter((k) => k.startsWith('failed_') || k.startsWith('succeeded_')));
  return [...new Set([...out, ...r.violations.map((v) => v.invariant)])];
}
