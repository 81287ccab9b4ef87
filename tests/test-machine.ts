/** A small machine for unit tests: domains created and populated, no vCPU threads. */
// Registers the memory-sharing designs with the Xen core before any Machine is built (xen/design.ts).
import '../hypervisor/designs/index.js';
// Installs the ioreq transport ends the device models of a test machine use (xen/ioreq.ts openServerEnd).
import '../hypervisor/host/transport-ends.js';
import { domainCreate, populateRange } from '../hypervisor/xen/domain.js';
import { createMachineSabs, Machine } from '../hypervisor/xen/machine.js';
import { parseBuggify } from '../hypervisor/xen/buggify.js';
import { iomemAdd } from '../hypervisor/xen/iomem.js';
import { VcpuContext } from '../hypervisor/xen/guest-cpu.js';
import { DOM, type PassthroughMode } from '../hypervisor/layout/domains.js';
import { P2M_DEFAULT_PADDR_BITS } from '../hypervisor/layout/constants.js';
import { p2mPoolPagesFor } from '../hypervisor/layout/p2m.js';
import { IOS } from '../hypervisor/layout/ioreq-slots.js';
import { IOREQ_STATE, IOREQ_TYPE } from '../hypervisor/public/ioreq.js';

export interface TestMachineOptions {
  nr_frames?: number;
  domains?: Array<{ memory_pages: number; max_pages?: number; privileged?: boolean; p2m_size?: number; vcpus?: number; backend?: number; passthrough?: PassthroughMode }>;
  transitive_revoke?: boolean;
  bugs?: string;
  /** The memory-sharing design the machine runs (MachineConfig.design; default primitives). */
  design?: string;
  bars?: Array<{ name: string; owner: number; nr_pages: number }>;
  /** The invariant checks (on by default); off, the MMU's hit path is the one the benchmarks time. */
  checking?: boolean;
  /** Timeline rings (layout/trace.ts) and their size; none by default. */
  trace?: { rings: number; ring_events: number };
}

/** A test domain's share of the p2m pool: tables for gfns 0 … p2m_size − 1 (default: its RAM + 256). */
function p2mShare(d: { memory_pages: number; p2m_size?: number }): number {
  return p2mPoolPagesFor(P2M_DEFAULT_PADDR_BITS, [[0, d.p2m_size ?? d.memory_pages + 256]]);
}

export function testMachine(o: TestMachineOptions = {}): Machine {
  // dom0 has headroom above its RAM: a backend can only steal what its max_pages leaves room for.
  const domains = o.domains ?? [{ memory_pages: 64, max_pages: 128, privileged: true }, { memory_pages: 64, backend: 0 }, { memory_pages: 64, backend: 0 }];
  const m = new Machine(
    createMachineSabs({
      nr_frames: o.nr_frames ?? 1024,
      page_size_bytes: 4096,
      // Each domain's share of the pool, and room for the domains a test creates later.
      p2m_pool_pages: domains.reduce((a, d) => a + p2mShare(d), 0) + 256,
      ...(o.transitive_revoke !== undefined ? { transitive_revoke: o.transitive_revoke } : {}),
      bars: o.bars ?? [],
      checking: o.checking ?? true,
      buggify: parseBuggify(o.bugs),
      seed: 1,
      ...(o.design !== undefined ? { design: o.design } : {}),
      ...(o.trace !== undefined ? { trace_rings: o.trace.rings, trace_ring_events: o.trace.ring_events } : {}),
    }),
  );
  domains.forEach((d, i) => {
    const id = domainCreate(m, { domid: i, max_pages: d.max_pages ?? d.memory_pages, nr_vcpus: d.vcpus ?? 1, p2m_pages: p2mShare(d), privileged: d.privileged ?? i === 0, ...(d.backend !== undefined ? { backend: d.backend } : {}), ...(d.passthrough !== undefined ? { passthrough: d.passthrough } : {}) });
    if (id !== i) throw new Error(`testMachine: create d${i} → ${id}`);
    if (populateRange(m, i, 0, d.memory_pages) !== 0) throw new Error(`testMachine: populate d${i}`);
  });
  for (const b of m.sabs.bars) iomemAdd(m, b.owner, b.base_mfn, b.nr_pages);
  return m;
}

/**
 * A device model and a frontend vCPU on this thread, for IOREQ tests: dom0's
 * vCPU 0 (started, the server enabled) and d`fe`'s vCPU 0 (started).
 */
export function dmAndFrontend(m: Machine, fe: number, server: number): { dm: VcpuContext; fe: VcpuContext } {
  const dm = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
  dm.start();
  const rc = dm.hc.dm_set_ioreq_server_state(fe as never, server, true);
  if (rc !== 0) throw new Error(`dmAndFrontend: set_ioreq_server_state → ${rc}`);
  const f = new VcpuContext(m, { domid: fe, vcpu: 0, slot: m.dom.at(fe, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
  f.start();
  return { dm, fe: f };
}

/**
 * sendIoreq's step 1 by hand (a vCPU would block right after it): a COPY
 * ioreq of vCPU slot `slot` of d`fe` to `server`, READY, its owner kicked.
 */
export function publishIoreq(m: Machine, o: { slot: number; fe: number; vcpu: number; server: number; owner: number; seq: number; gfn: number; dir: number }): void {
  const s = m.ios.slots;
  const i = m.ios.idx(o.slot);
  s[i + IOS.TYPE] = IOREQ_TYPE.COPY;
  s[i + IOS.DIR] = o.dir;
  s[i + IOS.SIZE] = 4;
  s[i + IOS.GFN] = o.gfn;
  s[i + IOS.OFFSET] = 0;
  s[i + IOS.DATA] = 0;
  s[i + IOS.TARGET] = o.fe;
  s[i + IOS.SERVER] = o.server;
  s[i + IOS.FAULT] = 0;
  s[i + IOS.DOMID] = o.fe;
  s[i + IOS.VCPU] = o.vcpu;
  Atomics.store(s, i + IOS.SEQ, o.seq);
  Atomics.store(s, i + IOS.STATE, IOREQ_STATE.READY);
  m.ios.kick(o.owner, o.slot);
}
