/** Workload registry: the workload kinds guests can run. */
import type { GuestCpu } from '../hypervisor/public/guest.js';
import { grantPingWorkload } from './grant-ping.js';
import { idleWorkload } from './idle.js';
import { makeRaceWorkload } from './race.js';
import { makeStressWorkload } from './stress.js';
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
