/** A small machine for unit tests: domains created and populated, no vCPU threads. */
import { domainCreate, populateRange } from './domain.js';
import { createMachineSabs, Machine } from './machine.js';
import { parseBuggify } from './buggify.js';
import { iomemAdd } from './iomem.js';

export interface TestMachineOptions {
  nr_frames?: number;
  domains?: Array<{ memory_pages: number; max_pages?: number; privileged?: boolean; p2m_size?: number; vcpus?: number; backend?: number }>;
  transitive_revoke?: boolean;
  bugs?: string;
  bars?: Array<{ name: string; owner: number; nr_pages: number }>;
  /** The invariant checks (on by default); off, the MMU's hit path is the one the benchmarks time. */
  checking?: boolean;
  /** Timeline rings (layout/trace.ts) and their size; none by default. */
  trace?: { rings: number; ring_events: number };
}

export function testMachine(o: TestMachineOptions = {}): Machine {
  // dom0 has headroom above its RAM: a backend can only steal what its max_pages leaves room for.
  const domains = o.domains ?? [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 0 }];
  const m = new Machine(
    createMachineSabs({
      nr_frames: o.nr_frames ?? 1024,
      page_size_bytes: 4096,
      p2m_entries: 16384,
      ...(o.transitive_revoke !== undefined ? { transitive_revoke: o.transitive_revoke } : {}),
      bars: o.bars ?? [],
      checking: o.checking ?? true,
      buggify: parseBuggify(o.bugs),
      seed: 1,
      ...(o.trace !== undefined ? { trace_rings: o.trace.rings, trace_ring_events: o.trace.ring_events } : {}),
    }),
  );
  domains.forEach((d, i) => {
    const id = domainCreate(m, { domid: i, max_pages: d.max_pages ?? d.memory_pages, nr_vcpus: d.vcpus ?? 1, p2m_size: d.p2m_size ?? d.memory_pages + 256, privileged: d.privileged ?? i === 0, ...(d.backend !== undefined ? { backend: d.backend } : {}) });
    if (id !== i) throw new Error(`testMachine: create d${i} → ${id}`);
    if (populateRange(m, i, 0, d.memory_pages) !== 0) throw new Error(`testMachine: populate d${i}`);
  });
  for (const b of m.sabs.bars) iomemAdd(m, b.owner, b.base_mfn, b.nr_pages);
  return m;
}
