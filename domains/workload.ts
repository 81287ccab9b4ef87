/**
 * The guest side: a workload is guest code run by one vCPU, one bounded
 * step at a time (each step a few accesses and hypercalls). It sees the
 * machine only through the GuestCpu of hypervisor/public/.
 */
import type { GuestCpu } from '../hypervisor/public/guest.js';

export interface Workload {
  /** One bounded slice of guest work. */
  step(): void;
  /** Called once when the vCPU is asked to stop (release what can be released). */
  finish?(): void;
}

/** What the toolstack told the guest about its world (xenstore, in Xen). */
export interface GuestEnv {
  /** Domids of the peers this guest exchanges grants with. */
  peers: number[];
  /** Domids of all frontends (for a backend's foreign mapping). */
  frontends: number[];
  /** Pages of each domain's RAM, by domid. */
  memory_pages: Record<number, number>;
  /** First gfn above RAM this vCPU may use for mappings. */
  map_window_gfn: number;
  /** Gfns in the window per vCPU. */
  map_window_pages: number;
}

export type WorkloadSpec =
  | { kind: 'idle' }
  | { kind: 'grant-ping'; peer?: string; pages?: number }
  | { kind: string; [k: string]: unknown };

export type WorkloadFactory = (cpu: GuestCpu, spec: WorkloadSpec, env: GuestEnv) => Workload;
