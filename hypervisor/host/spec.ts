/** What a host process boots: the machine, its domains, and what to inject (the orchestrator builds it from a topology). */
import type { WorkloadSpec } from '../../domains/index.js';
import type { NemesisAction } from './nemesis.js';
import type { TransportChoice } from './vcpu-worker.js';

export interface HostDomainSpec {
  name: string;
  domid: number;
  role: 'backend' | 'frontend';
  memory_pages: number;
  max_pages: number;
  vcpus: number;
  privileged: boolean;
  devices: Array<{ name: string; bar_pages: number; evictions_per_s?: number }>;
  workload: WorkloadSpec;
  /** Domids this domain exchanges grants with (symmetric). */
  peers: number[];
  /** Domid of the domain serving this one (its IOREQ server), if any. */
  backend?: number;
}

export interface HostSpec {
  nr_frames: number;
  page_size_bytes: number;
  domains: HostDomainSpec[];
  seed: number;
  checking: boolean;
  buggify: number;
  check_interval_ms: number;
  /** IOREQ transport (default ring). */
  transport?: TransportChoice;
  /** Nested Map allowed and revoked transitively (default); false: re-Mapping a received range is -EPERM. */
  transitive_revoke?: boolean;
  /** Capture the timeline (`--trace`, `--report`): rings in shared memory, drained by the host. */
  trace?: boolean;
  /** Drained events kept for the trace file (default TRACE_MAX_EVENTS; 0: aggregates only). */
  trace_max_events?: number;
  /** Chaos: nemeses to inject, at ms after the vCPUs start (orchestrator/up/chaos.ts expands a plan into these). */
  chaos?: NemesisAction[];
  /**
   * pCPUs the vCPUs are scheduled on (hypervisor/xen/schedule.ts): at most this many
   * in guest or hypervisor mode at once. 0 or absent: none, every vCPU
   * thread runs whenever the OS runs it.
   */
  pcpus?: number;
}
