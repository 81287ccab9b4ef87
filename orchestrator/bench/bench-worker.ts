/**
 * The other side of the benchmark's measurements: ping-pong partners and
 * the two ends of an IOREQ round trip (a guest vCPU reading an emulated
 * register, a device model answering at once, through the device model's
 * own loop), each on its own thread.
 */
// Registers the memory-sharing designs with the Xen core before any Machine is built (xen/design.ts).
import '../../hypervisor/designs/index.js';
import { threadId } from 'node:worker_threads';
import { attachMachine, type MachineSabs } from '../../hypervisor/xen/machine.js';
import { VcpuContext } from '../../hypervisor/xen/guest-cpu.js';
import { setServerEndFactory } from '../../hypervisor/host/transport-ends.js';
import { gfn } from '../../hypervisor/public/types.js';
import { IOREQ_DIR, type IoreqAnswer, type IoreqRequest } from '../../hypervisor/public/ioreq.js';
import type { TransportChoice } from '../../hypervisor/host/vcpu-worker.js';
import { VC } from '../../hypervisor/layout/vcpus.js';
import { ioreqLoop } from '../../domains/ioreq-loop.js';
import { setVcpuTracer } from '../../hypervisor/xen/trace.js';

export type BenchTask =
  | { role: 'pong-spin' | 'pong-wait'; cell: SharedArrayBuffer; n: number }
  | { role: 'ioreq-client'; sabs: MachineSabs; domid: number; slot: number; gfn: number; n: number; warmup: number; idle_ms: number; server_owner: number }
  | { role: 'ioreq-burst'; sabs: MachineSabs; domid: number; vcpu: number; slot: number; gfn: number; warmup: number; duration_ms: number; gate: SharedArrayBuffer; write?: boolean; check?: number }
  | { role: 'echo-dm'; sabs: MachineSabs; domid: number; slot: number; transport: TransportChoice; servers: Array<{ target: number; index: number }>; stop: SharedArrayBuffer; lastWrite?: boolean };

type Pong = Extract<BenchTask, { role: 'pong-spin' | 'pong-wait' }>;
type Client = Extract<BenchTask, { role: 'ioreq-client' }>;
type Burst = Extract<BenchTask, { role: 'ioreq-burst' }>;
type Echo = Extract<BenchTask, { role: 'echo-dm' }>;

export default async function bench(t: BenchTask): Promise<number[]> {
  switch (t.role) {
    case 'pong-spin':
    case 'pong-wait':
      return pong(t);
    case 'ioreq-client':
      return client(t);
    case 'ioreq-burst':
      return burst(t);
    case 'echo-dm':
      return echo(t);
  }
}

/** Answer every ping (odd) with a pong (even). */
function pong(t: Pong): number[] {
  const c = new Int32Array(t.cell);
  const wait = t.role === 'pong-wait';
  for (let i = 0; i < t.n; i++) {
    for (;;) {
      const v = Atomics.load(c, 0);
      if (v === 2 * i + 1) break;
      if (wait) Atomics.wait(c, 0, v, 100);
    }
    Atomics.store(c, 0, 2 * i + 2);
    if (wait) Atomics.notify(c, 0);
  }
  return [];
}

function client(t: Client): number[] {
  const m = attachMachine(t.sabs);
  // A traced bench machine (the Redis round trip by stage): this thread stamps its ioreqs; else no tracer.
  setVcpuTracer(m.trace, t.slot);
  {
    const cpu = new VcpuContext(m, { domid: t.domid, vcpu: 0, slot: t.slot, memory_pages: 0, seed: 1 });
    cpu.start();
    const out: number[] = [];
    for (let i = 0; i < t.warmup + t.n; i++) {
      if (t.idle_ms > 0) {
        // Let the server go idle before each, and make sure it is: parked on its event word.
        cpu.sleep(t.idle_ms);
        while (Atomics.load(m.ios.parked, t.server_owner) === 0) cpu.sleep(1);
      }
      const t0 = performance.now();
      cpu.read32(gfn(t.gfn), 0);
      const dt = (performance.now() - t0) * 1000;
      if (i >= t.warmup) out.push(dt);
    }
    cpu.stop();
    return out;
  }
}

/**
 * Throughput: `warmup` reads (writes with `write`), then check in at the
 * gate (word 0 counts the clients ready) and wait for word 1 (go); then
 * back-to-back accesses of the emulated register for `duration_ms`.
 * Returns [accesses, elapsed ms].
 */
function burst(t: Burst): number[] {
  const m = attachMachine(t.sabs);
  setVcpuTracer(m.trace, t.slot);
  const cpu = new VcpuContext(m, { domid: t.domid, vcpu: t.vcpu, slot: t.slot, memory_pages: 0, seed: 1 });
  cpu.start();
  const g = new Int32Array(t.gate);
  const at = gfn(t.gfn);
  // Writes: posted when the range is (buffered ioreqs), else each a round trip as a read is.
  let mismatches = 0;
  const check = t.check;
  const io =
    check !== undefined
      ? (k: number): void => {
          // A posted write, then the flushing read: the device model must have applied the write before it answers.
          const v = (check + k) | 0;
          cpu.write32(at, 0, v);
          if ((cpu.read32(at, 0) | 0) !== v) mismatches++;
        }
      : t.write === true
        ? (k: number): void => cpu.write32(at, 0, k)
        : (): void => void cpu.read32(at, 0);
  for (let i = 0; i < t.warmup; i++) io(i);
  Atomics.add(g, 0, 1);
  Atomics.notify(g, 0);
  while (Atomics.load(g, 1) === 0) Atomics.wait(g, 1, 0, 100);
  const t0 = performance.now();
  const end = t0 + t.duration_ms;
  let n = 0;
  for (;;) {
    for (let k = 0; k < 16; k++) io(n + k);
    n += 16;
    if (performance.now() >= end) break;
  }
  const dt = performance.now() - t0;
  cpu.stop();
  return [n, dt, mismatches];
}

async function echo(t: Echo): Promise<number[]> {
  const m = attachMachine(t.sabs);
  setVcpuTracer(m.trace, t.slot);
  const tr = t.transport;
  if (tr.kind === 'redis') {
    const { RedisServerEnd } = await import('../../transport/redis-end.js');
    const { keysFromWire } = await import('../../transport/auth.js');
    const keys = tr.keys !== undefined ? keysFromWire(tr.keys) : undefined;
    setServerEndFactory((_m, owner) => new RedisServerEnd({ url: tr.url, namespace: tr.namespace, servers: t.servers, page_size_bytes: m.config.page_size_bytes, consumer: `bench-dm-${owner}-${threadId}`, ...(keys !== undefined ? { keys } : {}) }));
  }
  const cpu = new VcpuContext(m, { domid: t.domid, vcpu: 0, slot: t.slot, memory_pages: 0, seed: 1 });
  cpu.start();
  const end = cpu.ioreqServerEnd();
  for (const s of t.servers) cpu.hc.dm_set_ioreq_server_state(s.target as never, s.index, true);
  const stop = new Int32Array(t.stop);
  // The device model's own loop (domains/ioreq-loop.ts), stepped as the vCPU worker steps a workload.
  // `lastWrite`: a read answers the last value written by the same vCPU (the flushing-read check); else a constant.
  const last = new Map<string, number>();
  const apply = t.lastWrite === true ? (r: IoreqRequest): IoreqAnswer => (r.dir === IOREQ_DIR.WRITE ? (last.set(`${r.domid}:${r.vcpu}`, r.data), { data: 0, fault: 0 }) : { data: last.get(`${r.domid}:${r.vcpu}`) ?? 0, fault: 0 }) : (): IoreqAnswer => ({ data: 0x1234, fault: 0 });
  const step = ioreqLoop(cpu, end, { apply });
  const hangIdx = m.vcpus.idx(t.slot, VC.HANG_MS);
  while (Atomics.load(stop, 0) === 0) {
    const r = step();
    if (r !== undefined) await r;
    cpu.endOfStep(hangIdx);
  }
  await end.close();
  cpu.stop();
  return [];
}
