/** From a validated topology to what the host process boots. */
import { toolstackSpec, type HostDomainSpec, type HostSpec } from '../../hypervisor/host/host.js';
import type { Topology } from '../config/topology.js';
import { pcpusOf } from './run-flags.js';
import { type BugSet } from '../../hypervisor/xen/buggify.js';

export interface RunOptions {
  seed: number;
  checking: boolean;
  buggify: BugSet;
  check_interval_ms: number;
  /** pCPUs the vCPUs are scheduled on (0: none, the OS schedules them); absent: the topology's `host.pcpus`. */
  pcpus?: number;
}

export function hostSpecOf(t: Topology, o: RunOptions): HostSpec {
  const byName = new Map(t.domains.map((d) => [d.name, d.domid]));
  const peers = new Map<number, Set<number>>(t.domains.map((d) => [d.domid, new Set<number>()]));
  for (const d of t.domains) {
    if (d.workload.kind !== 'grant-ping') continue;
    const p = byName.get(d.workload.peer);
    if (p === undefined || p === d.domid) continue;
    peers.get(d.domid)?.add(p);
    peers.get(p)?.add(d.domid);
  }
  const domains: HostDomainSpec[] = t.domains.map((d) => ({
    name: d.name,
    domid: d.domid,
    role: d.role,
    memory_pages: d.memory_pages,
    max_pages: d.max_pages,
    vcpus: d.vcpus,
    paddr_bits: d.paddr_bits,
    ...toolstackSpec(d),
    privileged: d.privileged,
    devices: d.devices.map((x) => ({ name: x.name, bar_pages: x.bar_pages, evictions_per_s: x.evictions_per_s, ...(x.missing_page !== undefined ? { missing_page: x.missing_page } : {}) })),
    workload: { ...d.workload },
    peers: [...(peers.get(d.domid) ?? [])],
    ...(d.backend !== undefined && byName.has(d.backend) ? { backend: byName.get(d.backend)! } : {}),
  }));
  return {
    nr_frames: t.host.frames,
    page_size_bytes: t.host.page_size_bytes,
    domains,
    seed: o.seed,
    checking: o.checking,
    buggify: o.buggify,
    check_interval_ms: o.check_interval_ms,
    pcpus: o.pcpus ?? pcpusOf(t.host.pcpus),
    ...(t.transitive_revoke ? {} : { transitive_revoke: false }),
    ...(t.design !== undefined ? { design: t.design } : {}),
  };
}
