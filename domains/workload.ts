/**
 * The guest side: a workload is guest code run by one vCPU, one bounded
 * step at a time (each step a few accesses and hypercalls). It sees the
 * machine only through the GuestCpu of hypervisor/public/.
 */
import type { GuestCpu } from '../hypervisor/public/guest.js';
import type { ShareEnv } from './gpu/share.js';
import type { MissingPage } from './gpu/protocol.js';

export interface Workload {
  /** One bounded slice of guest work (a device model's may await its transport, idle). */
  step(): void | Promise<void>;
  /**
   * The end of the run (the host's drain, before it stops the vCPUs): one
   * step of serving others only, and no new work of its own — a device
   * model answers the ioreqs of frontends still finishing their step, a
   * GPU engine runs the jobs its device model waits for. A workload
   * without it idles then.
   */
  serve?(): void | Promise<void>;
  /** Called once when the vCPU is asked to stop (release what can be released). */
  finish?(): void;
  /** Release outside resources (transport connections); also after a crash. */
  close?(): Promise<void>;
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
  /** The virtio-GPU device, for a GPU frontend (its driver) or its backend (the device model). */
  gpu?: GpuEnv;
  /** A `render` frontend with `share_with`: the viewer it serves and its share window there (docs/gpu.md §12). */
  share?: ShareEnv;
  /** A `viewer`: the compositor (its backend) whose shares it reads. */
  viewing?: { compositor: number };
}

export interface GpuFrontendEnv {
  domid: number;
  /** The device's MMIO register page (claimed by the IOREQ server). */
  mmio_gfn: number;
  /** First gfn where blobs are mapped; BLOB window of RES_PER_FE × MAX_BLOB_PAGES gfns. */
  window_gfn: number;
  /** Index of the IOREQ server serving it. */
  server: number;
  fault_policy: 'remap' | 'fail' | 'none';
  /** The device model's answer to a FAULT it has no page for (gpu/protocol.ts MISSING_PAGE). */
  missing_page: MissingPage;
}

export interface GpuEnv {
  /** The memory-sharing design the machine runs (docs/designs.md): how buffers are shared (gpu/sharing.ts). */
  design: string;
  backend: number;
  frontends: GpuFrontendEnv[];
  /** The backend's RAM and max pages: blob backing lives in its RAM, stolen pages above it. */
  backend_memory_pages: number;
  backend_max_pages: number;
  bar?: { base_mfn: number; nr_pages: number };
  /** MMU-notifier evictions per second (memory pressure), 0 for none. */
  evictions_per_s: number;
}

export type WorkloadSpec =
  | { kind: 'idle' }
  | { kind: 'grant-ping'; peer?: string; pages?: number }
  | { kind: string; [k: string]: unknown };

export type WorkloadFactory = (cpu: GuestCpu, spec: WorkloadSpec, env: GuestEnv) => Workload;
