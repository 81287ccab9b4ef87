/** What a host process boots: the machine, its domains, and what to inject (the orchestrator builds it from a topology). */
import { availableParallelism } from 'node:os';
import { MAX_PCPUS } from '../layout/constants.js';
import type { PassthroughMode } from '../layout/domains.js';
import type { WorkloadSpec } from '../../domains/index.js';
import type { MissingPage } from '../../domains/gpu/protocol.js';
import type { NemesisAction } from './nemesis.js';
import type { TransportChoice } from './vcpu-worker.js';
import { type BugSet } from '../xen/buggify.js';
import type { Death } from './death.js';

export interface HostDomainSpec {
  name: string;
  domid: number;
  role: 'backend' | 'frontend';
  memory_pages: number;
  max_pages: number;
  vcpus: number;
  privileged: boolean;
  devices: Array<{ name: string; bar_pages: number; evictions_per_s?: number; missing_page?: MissingPage }>;
  workload: WorkloadSpec;
  /** Domids this domain exchanges grants with (symmetric). */
  peers: number[];
  /** Domid of the domain serving this one (its IOREQ server), if any. */
  backend?: number;
  /** Guest physical address width in bits (default P2M_DEFAULT_PADDR_BITS, 36). */
  paddr_bits?: number;
  /** Grant and maptrack frame limits (default Xen's, 64 and 1024). */
  max_grant_frames?: number;
  max_maptrack_frames?: number;
  /** A device passed through to it, and how its IOMMU translates (xen/iommu.ts); absent: none. */
  passthrough?: PassthroughMode;
}

export interface HostSpec {
  nr_frames: number;
  page_size_bytes: number;
  domains: HostDomainSpec[];
  seed: number;
  checking: boolean;
  buggify: BugSet;
  check_interval_ms: number;
  /** The memory-sharing design the machine runs (xen/design.ts); absent: DEFAULT_DESIGN. */
  design?: string;
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
   * Why the Redis nemeses (`redis-pause`, `redis-kill`) may not act in this
   * run, if they may not: the transport's Redis is not one xgsim started for
   * it, and pausing it would pause everyone's clients (orchestrator/up/chaos.ts).
   */
  redis_nemeses_refused?: string;
  /**
   * pCPUs the vCPUs are scheduled on (hypervisor/xen/schedule.ts): at most
   * this many in guest or hypervisor mode at once. Absent: one per core of
   * this host (host.ts hostPcpus). 0: none, every vCPU thread runs whenever
   * the OS runs it (OS scheduling).
   */
  pcpus?: number;
  /** A swarm seed's death stage (hypervisor/host/death.ts): where a domain dies in the middle of what it does. */
  death?: Death;
}

/** pCPUs of a host whose spec does not say: one per core of this machine, as Xen brings up every CPU it finds. */
export function hostPcpus(): number {
  return Math.min(availableParallelism(), MAX_PCPUS);
}
