/**
 * The request half of the `redis` transport's dispatcher, on a thread of
 * its own (a hypervisor thread, like the pCPU threads of DESIGN §1): it
 * waits for a vCPU's kick on `CTL.DISPATCH` and `XADD`s every READY slot
 * it has not published yet to its server's request stream.
 *
 * Why a thread: on the host's main thread the kick was answered only once
 * the event loop got round to it, behind the answer of the previous ioreq
 * (the response loop, validating, waking the vCPU and sending its next
 * XREAD: 20–30 µs here) and the checker, the IPC and the chaos clock.
 * Here nothing else is on the event loop, and `Atomics.waitAsync` wakes it
 * within a futex wake-up (≈ 5 µs p50 on the project's VM, as `Atomics.wait`
 * does). It waits with waitAsync, not a plain futex wait, because ioredis
 * needs the event loop: replies, reconnects and the re-sending of commands
 * after a reconnect all run on it. Each XADD is written to the socket
 * before publishRequest first awaits (libuv tries the write at once), and
 * its reply is not awaited before the next slot or the next wait: several
 * vCPUs' requests go out back to back (pipelined).
 *
 * Protocol with RedisDispatcher (redis-dispatcher.ts): workerData is a
 * PublisherData; the thread posts `{ kind: 'ready' }` once its connection
 * is up, or `{ kind: 'failed', error }`; it stops when the dispatcher sets
 * `CTL.PUB_STOP` and kicks `CTL.DISPATCH`, once its in-flight XADDs have
 * settled, and posts `{ kind: 'stopped' }`. It counts the XADDs Redis
 * acknowledged in `CTL.PUB_PUBLISHED`, those that failed in `PUB_FAILED`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { MAX_VCPUS } from './constants.js';
import { CTL } from './layout/control.js';
import { IOS } from './layout/ioreq-slots.js';
import { attachMachine, type MachineSabs } from './machine.js';
import { IOREQ_STATE } from './public/ioreq.js';
import { RedisIoreqBus } from '../transport/redis-bus.js';
import { serverId } from '../transport/redis-end.js';

/** How long the publisher sleeps without a kick before it scans the slots again (a failed XADD is retried then). */
export const PUBLISH_RESCAN_MS = 20;

export interface PublisherData {
  kind: 'redis-publisher';
  sabs: MachineSabs;
  url: string;
  namespace: string;
  hostname: string;
}

export type PublisherMessage = { kind: 'ready' } | { kind: 'failed'; error: string } | { kind: 'stopped' };

function decodeData(x: unknown): PublisherData {
  const d = x as Partial<PublisherData> | null;
  if (d === null || typeof d !== 'object' || d.kind !== 'redis-publisher' || typeof d.url !== 'string' || typeof d.namespace !== 'string' || typeof d.hostname !== 'string' || d.sabs === undefined) {
    throw new TypeError('redis-publisher: workerData is not a PublisherData');
  }
  return d as PublisherData;
}

async function run(d: PublisherData): Promise<void> {
  const m = attachMachine(d.sabs);
  const w = m.control.w;
  let bus: RedisIoreqBus;
  try {
    bus = await RedisIoreqBus.connect({ url: d.url, namespace: d.namespace, clientName: `xgsim-hv:${d.namespace}:pub` });
  } catch (e) {
    parentPort?.postMessage({ kind: 'failed', error: e instanceof Error ? e.message : String(e) } satisfies PublisherMessage);
    return;
  }
  parentPort?.postMessage({ kind: 'ready' } satisfies PublisherMessage);
  const slots = m.ios.slots;
  const ps = m.config.page_size_bytes;
  const published = new Map<number, number>(); // slot → seq published (or being published)
  const inflight = new Set<Promise<void>>();
  while (Atomics.load(w, CTL.PUB_STOP) === 0) {
    const seen = Atomics.load(w, CTL.DISPATCH);
    for (let v = 0; v < MAX_VCPUS; v++) {
      const i = m.ios.idx(v);
      if (Atomics.load(slots, i + IOS.STATE) !== IOREQ_STATE.READY) continue;
      // READY was loaded atomically (the acquire of §5 step 1): the fields below are the vCPU's.
      const seq = slots[i + IOS.SEQ]!;
      if (published.get(v) === seq) continue;
      published.set(v, seq);
      const target = slots[i + IOS.TARGET]!;
      const server = serverId(target, slots[i + IOS.SERVER]!);
      const p = bus
        .publishRequest(server, {
          host: d.hostname,
          domid: slots[i + IOS.DOMID]!,
          vcpu: slots[i + IOS.VCPU]!,
          seq,
          server,
          type: slots[i + IOS.TYPE]!,
          dir: slots[i + IOS.DIR]! === 0 ? 0 : 1,
          addr: slots[i + IOS.GFN]! * ps + slots[i + IOS.OFFSET]!,
          size: slots[i + IOS.SIZE]! as 1 | 2 | 4 | 8,
          data: slots[i + IOS.DATA]! >>> 0,
          count: 1,
          df: 0,
          data_is_ptr: 0,
          state: IOREQ_STATE.READY,
        })
        .then(
          () => {
            Atomics.add(w, CTL.PUB_PUBLISHED, 1);
          },
          () => {
            // Try again on a later pass (unless the vCPU has moved on meanwhile).
            Atomics.add(w, CTL.PUB_FAILED, 1);
            if (published.get(v) === seq) published.delete(v);
          },
        )
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
    const r = Atomics.waitAsync(w, CTL.DISPATCH, seen, PUBLISH_RESCAN_MS);
    if (r.async) await r.value;
  }
  await Promise.allSettled([...inflight]);
  await bus.close();
  parentPort?.postMessage({ kind: 'stopped' } satisfies PublisherMessage);
}

await run(decodeData(workerData));
