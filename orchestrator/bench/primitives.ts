/**
 * The benchmark's figures of the primitives measured in place, on a machine
 * built in this process with no vCPU threads (so every frontend vCPU is
 * offline and a shootdown has nobody to wait for): what a Revoke costs by
 * itself as RAM grows, and how many pages per second Steal + Return move.
 * Checks off, like the other in-place figures.
 */
// Registers the memory-sharing designs with the Xen core before any Machine is built (xen/design.ts).
import '../../hypervisor/designs/index.js';
import { domainCreate, populateRange } from '../../hypervisor/xen/domain.js';
import { VcpuContext } from '../../hypervisor/xen/guest-cpu.js';
import { DOM } from '../../hypervisor/layout/domains.js';
import { P2M_DEFAULT_PADDR_BITS } from '../../hypervisor/layout/constants.js';
import { p2mPoolPagesFor } from '../../hypervisor/layout/p2m.js';
import { createMachineSabs, Machine } from '../../hypervisor/xen/machine.js';
import { domid, gfn } from '../../hypervisor/public/types.js';
import { percentiles } from '../stats.js';
import { NO_BUGS } from '../../hypervisor/xen/buggify.js';

/** dom0 (privileged backend) and d1 (its frontend), `be_pages` and `fe_pages` of RAM; `window` gfns above the frontend's RAM. */
function pairMachine(o: { nr_frames: number; be_pages: number; be_room: number; fe_pages: number; window: number }): { m: Machine; cpu: VcpuContext } {
  const m = new Machine(createMachineSabs({ nr_frames: o.nr_frames, page_size_bytes: 4096, p2m_pool_pages: p2mPoolPagesFor(P2M_DEFAULT_PADDR_BITS, [[0, o.be_pages + o.be_room]]) + p2mPoolPagesFor(P2M_DEFAULT_PADDR_BITS, [[0, o.fe_pages + o.window]]), bars: [], checking: false, buggify: NO_BUGS, seed: 1, max_domains: 2 }));
  const be = domainCreate(m, { domid: 0, max_pages: o.be_pages + o.be_room, nr_vcpus: 1, p2m_pages: p2mPoolPagesFor(P2M_DEFAULT_PADDR_BITS, [[0, o.be_pages + o.be_room]]), privileged: true });
  const fe = domainCreate(m, { domid: 1, max_pages: o.fe_pages, nr_vcpus: 2, p2m_pages: p2mPoolPagesFor(P2M_DEFAULT_PADDR_BITS, [[0, o.fe_pages + o.window]]), privileged: false, backend: 0 });
  if (be !== 0 || fe !== 1) throw new Error(`bench: domain create ${be}, ${fe}`);
  if (populateRange(m, 0, 0, o.be_pages) !== 0 || populateRange(m, 1, 0, o.fe_pages) !== 0) throw new Error('bench: populate failed');
  const cpu = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: o.be_pages, seed: 1 });
  cpu.start();
  return { m, cpu };
}

/**
 * p50 of Revoke of one page, µs, on a host of `nr_frames` frames nearly all
 * of which the two domains own (each Map'd again before it is revoked).
 */
export function revokeOnePageUs(nr_frames: number, n: number): number {
  const half = Math.floor(nr_frames * 0.45);
  const { cpu } = pairMachine({ nr_frames, be_pages: half, be_room: 0, fe_pages: half, window: 64 });
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    // A different source page each time, spread over the backend's RAM.
    const src = gfn((i * 7919) % half);
    const r = cpu.hc.dm_map(domid(1), { kind: 'ram', gfn: src }, 1, gfn(half + (i & 63)));
    if (r.rc !== 0) throw new Error(`bench: map rc ${r.rc}`);
    const t0 = performance.now();
    const rc = cpu.hc.dm_revoke({ id: r.id });
    out.push((performance.now() - t0) * 1000);
    if (rc !== 0) throw new Error(`bench: revoke rc ${rc}`);
  }
  cpu.stop();
  return percentiles(out).p50;
}

/**
 * Pages per second one thread moves with Steal then Return, `batch` pages
 * per call, while `background` other single-page Maps are live — a backend
 * with many buffers mapped, so the registry is not empty and the records
 * of each Steal land behind the others.
 */
export function stealReturnRate(batch: number, iterations: number, background = 0): number {
  const { cpu } = pairMachine({ nr_frames: 4 * batch + background + 1024, be_pages: 64 + background, be_room: batch, fe_pages: batch + 64, window: background });
  for (let i = 0; i < background; i++) {
    const r = cpu.hc.dm_map(domid(1), { kind: 'ram', gfn: gfn(64 + i) }, 1, gfn(batch + 64 + i));
    if (r.rc !== 0) throw new Error(`bench: background map rc ${r.rc}`);
  }
  const into = gfn(64 + background);
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) {
    const s = cpu.hc.dm_steal(domid(1), gfn(0), batch, into);
    if (s.rc !== 0) throw new Error(`bench: steal rc ${s.rc} at ${s.index}`);
    const r = cpu.hc.dm_return(domid(1), into, batch);
    if (r.rc !== 0) throw new Error(`bench: return rc ${r.rc} at ${r.index}`);
  }
  const dt_s = (performance.now() - t0) / 1000;
  cpu.stop();
  return (iterations * batch) / dt_s;
}

/**
 * The floor of Steal + Return: the shared-memory writes one page needs at
 * the least — per direction a compareExchange freezing its count, the
 * owner and count stores, and the two p2m entries — with no locks, checks
 * or bookkeeping.
 */
export function rawPageMoveRate(pages: number, iterations: number): number {
  const ft = new Int32Array(new SharedArrayBuffer(pages * 4 * 4));
  const feP2m = new Int32Array(new SharedArrayBuffer(pages * 4));
  const beP2m = new Int32Array(new SharedArrayBuffer(pages * 4));
  for (let p = 0; p < pages; p++) {
    ft[p * 4 + 1] = 1;
    feP2m[p] = ((p + 1) << 5) | 0;
  }
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) {
    for (let p = 0; p < pages; p++) {
      // Steal
      if (Atomics.compareExchange(ft, p * 4 + 1, 1, 0) !== 1) throw new Error('bench: floor');
      Atomics.store(feP2m, p, ((p + 1) << 5) | 5);
      Atomics.store(ft, p * 4, 0);
      Atomics.store(ft, p * 4 + 1, 2);
      Atomics.store(beP2m, p, (p + 1) << 5);
      // Return
      if (Atomics.compareExchange(ft, p * 4 + 1, 2, 0) !== 2) throw new Error('bench: floor');
      Atomics.exchange(beP2m, p, 0);
      Atomics.store(ft, p * 4, 1);
      Atomics.store(ft, p * 4 + 1, 1);
      Atomics.store(feP2m, p, (p + 1) << 5);
    }
  }
  return (iterations * pages) / ((performance.now() - t0) / 1000);
}
