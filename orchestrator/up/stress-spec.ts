/**
 * The machine of a Revoke stress (domains/stress.ts): dom0 Maps buffers of
 * every frontend's RAM into a window above it, holds them and Revokes them
 * (stress-backend), while each frontend's vCPUs touch the window or play an
 * adversary (stress-frontend). `xgsim stress revoke` (stress.ts) and the
 * bench's Revoke figures (bench/host.ts) build it here and differ only in
 * the knobs of StressMachine.
 */
import type { HostDomainSpec, HostSpec } from '../../hypervisor/host/host.js';
import { type BugSet } from '../../hypervisor/xen/buggify.js';

/** RAM of each frontend. */
export const STRESS_FE_PAGES = 64;
/** Gfn of the window dom0 maps a frontend's buffer at: just above its RAM. */
export const STRESS_WINDOW_GFN = STRESS_FE_PAGES + 8;

export type FrontendMode = 'hammer' | 'halt' | 'spin' | 'fault-flood' | 'descheduled';

export interface StressFrontend {
  vcpus: number;
  mode: FrontendMode;
  /** Guest physical space: at least STRESS_FE_PAGES. */
  max_pages: number;
}

export interface StressMachine {
  /** guest1, guest2, … (domids 1, 2, …), in order. */
  frontends: readonly StressFrontend[];
  backend_vcpus: number;
  /** Pages per Map, and so per Revoke. */
  pages: number;
  /** Steps dom0 holds a mapping before it Revokes it (default: the workload's). */
  hold_steps?: number;
  seed: number;
  buggify: BugSet;
  check_interval_ms: number;
  /** pCPUs the vCPUs are scheduled on; absent: one per core (the host's default); 0: none, the OS schedules them. */
  pcpus?: number | undefined;
}

export function stressMachineSpec(o: StressMachine): HostSpec {
  const n = o.frontends.length;
  const bePages = 16 + n * o.pages + 64;
  const dom0: HostDomainSpec = {
    name: 'dom0',
    domid: 0,
    role: 'backend',
    memory_pages: bePages,
    max_pages: bePages,
    vcpus: o.backend_vcpus,
    privileged: true,
    devices: [],
    workload: {
      kind: 'stress-backend',
      frontends: o.frontends.map((_, i) => i + 1),
      pages: o.pages,
      window: STRESS_WINDOW_GFN,
      ...(o.hold_steps !== undefined ? { hold_steps: o.hold_steps } : {}),
    },
    peers: [],
  };
  const frontends = o.frontends.map(
    (f, i): HostDomainSpec => ({
      name: `guest${i + 1}`,
      domid: i + 1,
      role: 'frontend',
      memory_pages: STRESS_FE_PAGES,
      max_pages: f.max_pages,
      vcpus: f.vcpus,
      privileged: false,
      devices: [],
      workload: { kind: 'stress-frontend', pages: o.pages, window: STRESS_WINDOW_GFN, mode: f.mode },
      peers: [],
      backend: 0,
    }),
  );
  return {
    nr_frames: bePages + n * STRESS_FE_PAGES + 1024,
    page_size_bytes: 4096,
    domains: [dom0, ...frontends],
    seed: o.seed,
    checking: true,
    buggify: o.buggify,
    check_interval_ms: o.check_interval_ms,
    ...(o.pcpus !== undefined ? { pcpus: o.pcpus } : {}),
  };
}
