/** Workload registry: the workload kinds guests can run. */
import type { GuestCpu } from '../hypervisor/public/guest.js';
import { grantPingWorkload } from './grant-ping.js';
import { idleWorkload } from './idle.js';
import { makeRaceWorkload } from './race.js';
import { makeStressWorkload } from './stress.js';
import { deviceModel, gpuKernel } from './gpu/device-model.js';
import { adversaryWorkload, computeSvmWorkload, renderWorkload } from './gpu/driver.js';
import { viewerWorkload } from './gpu/viewer.js';
import { PASS_PAGES } from './gpu/toolstack.js';
import type { GuestEnv, Workload, WorkloadSpec } from './workload.js';

export type { GuestEnv, Workload, WorkloadSpec } from './workload.js';

export interface WorkloadReport {
  fails: number;
  ops: number;
  /** Outcome counters of the race and stress programs. */
  out: Record<string, number>;
  /** Measured series (e.g. `revoke_us`), kept by the stress programs. */
  samples: Record<string, number[]>;
}

const num = (x: unknown, dflt: number): number => (typeof x === 'number' && Number.isInteger(x) && x > 0 ? x : dflt);

export function makeWorkload(cpu: GuestCpu, spec: WorkloadSpec, env: GuestEnv, report: WorkloadReport): Workload {
  const sink = (fails: number, ops: number): void => {
    report.fails = fails;
    report.ops = ops;
  };
  switch (spec.kind) {
    case 'idle':
      return idleWorkload(cpu);
    case 'grant-ping':
      return grantPingWorkload(cpu, env, sink);
    case 'gpu-backend': {
      // dom0: vCPU 0 is the device model (userspace), vCPU 1 the kernel (GPU engine, MMU notifier).
      if (env.gpu === undefined) return idleWorkload(cpu);
      const v = cpu.vcpu as number;
      const off = Array.isArray(spec['swarm_off']) ? (spec['swarm_off'] as string[]) : [];
      if (v === 0) return deviceModel(cpu, env.gpu, report, off);
      if (v === 1) return gpuKernel(cpu, env.gpu, report, env.map_window_gfn, off);
      return idleWorkload(cpu);
    }
    case 'render':
    case 'compute-svm':
    case 'adversary': {
      const fe = env.gpu?.frontends.find((f) => f.domid === (cpu.domid as number));
      if (env.gpu === undefined || fe === undefined) return idleWorkload(cpu);
      const sizes = { buffers: num(spec['buffers'], 16), buffer_pages: num(spec['buffer_pages'], 8), resident: spec['resident'] === true };
      const design = env.gpu.design;
      // A compositor knows its backend's BAR (it probes a Map of it: share.ts probeBar) — its last page,
      // which dom0's toolstack never passes through to a frontend (the first PASS_PAGES, toolstack.ts):
      // the base page may be this compositor's own for a round, and a Map of it then rightly succeeds.
      const bar = env.gpu.bar;
      const share = env.share !== undefined && bar !== undefined && bar.nr_pages > PASS_PAGES ? { ...env.share, bar_mfn: bar.base_mfn + bar.nr_pages - 1 } : env.share;
      if (spec.kind === 'render') return renderWorkload(cpu, fe, env.gpu.backend, env.gpu.bar !== undefined, report, sizes, share, design);
      if (spec.kind === 'compute-svm') return computeSvmWorkload(cpu, fe, env.gpu.backend, report, sizes, design);
      const attacks = Array.isArray(spec['attacks']) ? (spec['attacks'] as string[]) : [];
      return adversaryWorkload(cpu, fe, env.gpu.backend, attacks, report, spec['dormant'] === true, design);
    }
    case 'viewer':
      return env.viewing === undefined ? idleWorkload(cpu) : viewerWorkload(cpu, env.viewing.compositor, report);
    default:
      // GPU workloads (render, compute-svm, adversary) arrive with the
      // primitives and the IOREQ path; until then they idle.
      return (
        makeStressWorkload(cpu, spec as Record<string, unknown> & { kind: string }, env, report) ??
        makeRaceWorkload(cpu, spec as Record<string, unknown> & { kind: string }, env, report.out) ??
        idleWorkload(cpu)
      );
  }
}
