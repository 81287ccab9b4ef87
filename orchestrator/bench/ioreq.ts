/**
 * IOREQ throughput on a machine of its own (the Redis throughput figure of
 * `xgsim bench`, and the `ioreq-servers` curve).
 */
// Registers the memory-sharing designs with the Xen core before any Machine is built (xen/design.ts).
import '../../hypervisor/designs/index.js';
import { Piscina } from 'piscina';
import type { BenchTask } from './bench-worker.js';
import { domainCreate, populateRange } from '../../hypervisor/xen/domain.js';
import { ioreqServerCreate } from '../../hypervisor/xen/ioreq.js';
import { DOM } from '../../hypervisor/layout/domains.js';
import { STAT } from '../../hypervisor/layout/vcpus.js';
import { createMachineSabs, Machine } from '../../hypervisor/xen/machine.js';
import { RedisDispatcher } from '../../hypervisor/host/redis-dispatcher.js';
import { keysToWire, newRunKey, serverKey } from '../../transport/auth.js';
import { serverId } from '../../transport/redis-end.js';
import type { TransportChoice } from '../../hypervisor/host/vcpu-worker.js';

/**
 * The transport a bench device model gets, with the keys of its servers
 * (transport/auth.ts), and the run key for the dispatcher: the figures
 * include the MACs, as a run's ioreqs do.
 */
export function signedTransport(choice: TransportChoice, servers: ReadonlyArray<{ target: number; index: number }>): { choice: TransportChoice; runKey: Buffer } {
  const runKey = newRunKey();
  if (choice.kind !== 'redis') return { choice, runKey };
  const keys = new Map(servers.map((s) => [serverId(s.target, s.index), serverKey(runKey, serverId(s.target, s.index))]));
  return { choice: { ...choice, keys: keysToWire(keys) }, runKey };
}
import { distModule } from '../../hypervisor/host/worker-path.js';
import { chooseTransport } from '../up/up.js';
import { NO_BUGS } from '../../hypervisor/xen/buggify.js';

/**
 * IOREQ throughput: `dms` device-model domains (an echo-dm thread each),
 * each the backend of one frontend of `fe_vcpus` vCPU threads accessing its
 * emulated register back to back for `duration_ms` (orchestrator/bench/bench-worker.ts
 * `ioreq-burst`: every client warms up, then all start at once). Reads are
 * synchronous ioreqs, one in flight per vCPU. With `posted`, the clients
 * write instead, the register's range is posted and its server has a
 * buffered ring: the writes are buffered ioreqs, many in flight (a full ring
 * sends one the synchronous way), and the figure counts until the device
 * models have applied the last. Returns ioreqs per second over all clients,
 * how many of them were posted, and — under Redis — how many requests the
 * dispatcher put in one pipeline on average. With `check` (and `posted`),
 * each client follows every posted write (of `check` + k) with a read, which
 * the device model answers with the last value that vCPU wrote: `mismatches`
 * counts reads that overtook their vCPU's write (docs/ioreq.md §13).
 */
export async function ioreqThroughput(o: { transport: 'ring' | 'redis'; dms: number; fe_vcpus: number; duration_ms: number; warmup: number; redisUrl?: string | undefined; posted?: boolean; check?: number }): Promise<{ ioreqs_per_s: number; ioreqs: number; posted: number; per_pipeline: number; mismatches: number }> {
  const nd = 2 * o.dms;
  const posted = o.posted === true;
  const m = new Machine(createMachineSabs({ nr_frames: 4096, page_size_bytes: 4096, p2m_pool_pages: 64 * nd, bars: [], checking: false, buggify: NO_BUGS, seed: 1, max_domains: nd }));
  for (let d = 0; d < nd; d++) {
    const dm = d < o.dms;
    domainCreate(m, { domid: d, max_pages: 64, nr_vcpus: dm ? 1 : o.fe_vcpus, p2m_pages: 64, privileged: d === 0, ...(d > 0 ? { backend: dm ? 0 : d - o.dms } : {}) });
    populateRange(m, d, 0, 64);
  }
  const fes = Array.from({ length: o.dms }, (_, i) => o.dms + i);
  const servers = fes.map((fe, i) => ({ dm: i, target: fe, index: ioreqServerCreate(m, i, fe, [{ start: 600, count: 1, posted }], 'none', { bufioreq: posted }) }));
  const tr = await chooseTransport(o.transport, o.redisUrl, 1);
  const pool = new Piscina({ filename: distModule('orchestrator/bench/bench-worker'), minThreads: o.dms * (1 + o.fe_vcpus), maxThreads: o.dms * (1 + o.fe_vcpus), idleTimeout: Infinity, concurrentTasksPerWorker: 1 });
  const signed = signedTransport(tr.choice, servers);
  const dispatcher = tr.choice.kind === 'redis' ? await RedisDispatcher.start(m, tr.choice.url, tr.choice.namespace, fes, { runKey: signed.runKey }) : undefined;
  const stop = new SharedArrayBuffer(4);
  try {
    const dmDone = servers.map((s) => pool.run({ role: 'echo-dm', sabs: m.sabs, domid: s.dm, slot: m.dom.at(s.dm, DOM.VCPU_BASE), transport: signed.choice, servers: [{ target: s.target, index: s.index }], stop, ...(o.check !== undefined ? { lastWrite: true } : {}) } satisfies BenchTask));
    for (const s of servers) while (m.ioreq.state(s.target, s.index) !== 2) await new Promise((r) => setTimeout(r, 5));
    const gate = new SharedArrayBuffer(8);
    const g = new Int32Array(gate);
    const clients: Array<Promise<number[]>> = [];
    for (const fe of fes)
      for (let v = 0; v < o.fe_vcpus; v++) clients.push(pool.run({ role: 'ioreq-burst', sabs: m.sabs, domid: fe, vcpu: v, slot: m.dom.at(fe, DOM.VCPU_BASE) + v, gfn: 600, warmup: o.warmup, duration_ms: o.duration_ms, gate, write: posted, ...(o.check !== undefined ? { check: o.check } : {}) } satisfies BenchTask) as Promise<number[]>);
    while (Atomics.load(g, 0) < clients.length) await new Promise((r) => setTimeout(r, 2));
    // The warm-up's posted writes applied before the start.
    await applied(m, servers, dispatcher);
    const postedSoFar = (): number => {
      let n = 0;
      for (const fe of fes) for (let v = 0; v < o.fe_vcpus; v++) n += m.vcpus.stat(m.dom.at(fe, DOM.VCPU_BASE) + v, STAT.BUFIOREQS);
      return n;
    };
    const before = { published: dispatcher?.stats.published ?? 0, pipelines: dispatcher?.stats.pipelines ?? 0, posted: postedSoFar() };
    const t0 = performance.now();
    Atomics.store(g, 1, 1);
    Atomics.notify(g, 1);
    const res = await Promise.all(clients);
    await applied(m, servers, dispatcher);
    const span_ms = posted ? performance.now() - t0 : Math.max(...res.map((r) => r[1]!));
    Atomics.store(new Int32Array(stop), 0, 1);
    await Promise.all(dmDone);
    const ioreqs = res.reduce((a, r) => a + r[0]!, 0);
    const pipelines = (dispatcher?.stats.pipelines ?? 0) - before.pipelines;
    const per_pipeline = pipelines > 0 ? ((dispatcher?.stats.published ?? 0) - before.published) / pipelines : 0;
    return { ioreqs, ioreqs_per_s: ioreqs / (span_ms / 1000), posted: postedSoFar() - before.posted, per_pipeline, mismatches: res.reduce((a, r) => a + (r[2] ?? 0), 0) };
  } finally {
    Atomics.store(new Int32Array(stop), 0, 1);
    await dispatcher?.stop();
    await pool.destroy();
  }
}

/** Until every buffered ioreq posted so far was applied: none left in a ring, none on the way over Redis. */
async function applied(m: Machine, servers: ReadonlyArray<{ target: number; index: number }>, dispatcher: RedisDispatcher | undefined): Promise<void> {
  const left = (): boolean => servers.some((s) => m.ioreq.bufPending(s.target, s.index)) || (dispatcher?.bufInFlight() ?? 0) > 0;
  while (left()) await new Promise((r) => setTimeout(r, 1));
}
