/**
 * The "raw Redis stream round trip" floor of docs/semantics.md §9: what one IOREQ costs
 * over Redis with nothing of the bus around it — XADD a request, a server
 * already blocked in XREADGROUP receives it and XADDs a response, a
 * dispatcher already blocked in XREAD receives that. Payloads are the real
 * msgpackr messages (encode/decode included, a few µs). Four connections, as
 * the bus would use: a writer and a blocking reader on each side. The server
 * runs in the caller's event loop, or (`across`) on a thread of its own.
 *
 * Used by the benchmark to tell the bus's overhead from Redis's own.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { decodeReq, decodeResp, encode, isWireError, type IoreqMsg } from './messages.js';
import { ENTRY_FIELD, REQUEST_GROUP } from './redis-bus.js';
import { Worker } from 'node:worker_threads';
import { distModule } from '../hypervisor/host/worker-path.js';

/** Round trips run first and not reported (connection set-up, JIT). */
const WARMUP_ROUND_TRIPS = 50;
const MAX_ROUND_TRIPS = 1_000_000;
const BLOCK_MS = 1000;

/**
 * Microseconds of each of `n` sequential round trips (after a warm-up). Keys live under a fresh namespace and are deleted at the end.
 * With `across`, the server runs on a worker thread of its own (its own event loop, as the device model's is in an
 * IOREQ): each leg then pays a blocked reader on another thread being woken, which one event loop does not.
 */
export async function rawStreamRoundTrip(url: string, n: number, across = false): Promise<number[]> {
  if (!Number.isInteger(n) || n < 1 || n > MAX_ROUND_TRIPS) throw new RangeError(`rawStreamRoundTrip: n must be an integer in [1, ${MAX_ROUND_TRIPS}], got ${n}`);
  const ns = `xgsim:rawfloor:${process.pid}:${randomBytes(4).toString('hex')}`;
  const keys: FloorKeys = { req: `${ns}:req`, resp: `${ns}:resp` };
  const hv = openFloorConn(url, 'hv');
  const hvRead = openFloorConn(url, 'hv-read');
  const stop = new Int32Array(new SharedArrayBuffer(4));
  let thread: Worker | undefined;
  let server: Promise<unknown>;
  try {
    await hv.call('XGROUP', 'CREATE', keys.req, REQUEST_GROUP, '0', 'MKSTREAM');
    if (across) {
      const w = new Worker(new URL(distModule('transport/raw-floor-server')), { workerData: { url, keys, stop } satisfies FloorServerData });
      thread = w;
      server = new Promise((res, rej) => {
        w.once('error', rej);
        w.once('exit', (code) => (Atomics.load(stop, 0) !== 0 ? res(undefined) : rej(new Error(`rawStreamRoundTrip: the server thread exited (${code})`))));
      });
      await new Promise<void>((res, rej) => {
        w.once('message', () => res());
        w.once('error', rej);
      });
    } else {
      server = serveFloor(url, keys, stop).catch((e: unknown) => (Atomics.load(stop, 0) !== 0 ? undefined : Promise.reject(e)));
    }
    const out: number[] = [];
    let cursor = '0-0';
    for (let i = 0; i < WARMUP_ROUND_TRIPS + n; i++) {
      const req: IoreqMsg = { host: 'rawfloor', domid: 1, vcpu: 0, seq: i, server: 8, type: 1, dir: 1, addr: 0x1000_0000 + 8 * i, size: 4, data: 0, count: 1, df: 0, data_is_ptr: 0, state: 1, buf: 0, after: 0 };
      const t0 = process.hrtime.bigint();
      await hv.callBuffer('XADD', keys.req, '*', ENTRY_FIELD, encode(req));
      for (;;) {
        const reply = await Promise.race([hvRead.callBuffer('XREAD', 'COUNT', 1, 'BLOCK', BLOCK_MS, 'STREAMS', keys.resp, cursor), server]);
        if (reply === null || reply === undefined) continue;
        const { id, payload } = firstPayload(reply);
        cursor = id;
        const r = decodeResp(payload);
        if (isWireError(r) || r.seq !== i) throw new Error(`rawStreamRoundTrip: unexpected response ${JSON.stringify(r)}`);
        break;
      }
      const t1 = process.hrtime.bigint();
      if (i >= WARMUP_ROUND_TRIPS) out.push(Number(t1 - t0) / 1000);
    }
    return out;
  } finally {
    Atomics.store(stop, 0, 1);
    // The server's blocked XREADGROUP ends within BLOCK_MS; a thread is not waited for.
    if (thread !== undefined) await thread.terminate();
    hvRead.disconnect();
    await hv.del(keys.req, keys.resp).catch(() => undefined);
    hv.disconnect();
  }
}

/** The floor's two streams. */
export interface FloorKeys {
  req: string;
  resp: string;
}

/** What a server thread is given (transport/raw-floor-server.ts). */
export interface FloorServerData {
  url: string;
  keys: FloorKeys;
  /** Non-zero: the round trips are over. */
  stop: Int32Array;
}

function openFloorConn(url: string, role: string): Redis {
  const r = new Redis(url, { connectionName: `xgsim-rawfloor:${role}`, maxRetriesPerRequest: 1 });
  r.on('error', () => undefined); // failures surface as rejected commands
  return r;
}

/**
 * The floor's server: blocked in XREADGROUP, it answers each request with an
 * XADD of the response, over two connections of its own (a writer and a
 * blocking reader), until `stop` is set. `ready` is called once its group
 * read is about to block.
 */
export async function serveFloor(url: string, keys: FloorKeys, stop: Int32Array, ready?: () => void): Promise<void> {
  const dm = openFloorConn(url, 'dm');
  const dmRead = openFloorConn(url, 'dm-read');
  try {
    await dm.ping();
    ready?.();
    while (Atomics.load(stop, 0) === 0) {
      const reply = await dmRead.callBuffer('XREADGROUP', 'GROUP', REQUEST_GROUP, 'c0', 'COUNT', 1, 'BLOCK', BLOCK_MS, 'STREAMS', keys.req, '>');
      if (reply === null) continue;
      const m = decodeReq(firstPayload(reply).payload);
      if (isWireError(m)) throw new Error(`rawStreamRoundTrip: ${m.error}`);
      const resp = encode({ host: m.host, domid: m.domid, vcpu: m.vcpu, seq: m.seq, data: 0xffff_ffff, state: 3, error: 0, buf: 0 });
      await dm.callBuffer('XADD', keys.resp, '*', ENTRY_FIELD, resp);
    }
  } finally {
    dmRead.disconnect();
    dm.disconnect();
  }
}

function firstPayload(reply: unknown): { id: string; payload: Buffer } {
  // [[key, [[id, [field, value]]]]]
  const entry = (reply as [[Buffer, [[Buffer, Buffer[]]]]])[0][1][0];
  const payload = entry[1][1];
  if (!Buffer.isBuffer(payload)) throw new Error('rawStreamRoundTrip: entry without payload');
  return { id: entry[0].toString(), payload };
}

/**
 * The floor of pipelined IOREQ throughput over Redis: one client XADDing the
 * real msgpackr request payloads (encoded each time) in pipelines of `batch`
 * entries, one pipeline in flight, for `duration_ms`. Nothing reads them;
 * the stream is deleted at the end. Returns entries per second.
 */
export async function rawPipelinedXadd(url: string, duration_ms: number, batch = 64): Promise<{ entries: number; entries_per_s: number }> {
  if (!Number.isInteger(batch) || batch < 1 || batch > 10_000) throw new RangeError(`rawPipelinedXadd: batch must be an integer in [1, 10000], got ${batch}`);
  const key = `xgsim:rawxadd:${process.pid}:${randomBytes(4).toString('hex')}`;
  const r = new Redis(url, { connectionName: 'xgsim-rawfloor:xadd', maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  try {
    let seq = 0;
    const round = async (): Promise<void> => {
      const p = r.pipeline();
      for (let k = 0; k < batch; k++, seq++) {
        const req: IoreqMsg = { host: 'rawfloor', domid: 1, vcpu: seq & 7, seq, server: 8, type: 1, dir: 1, addr: 0x1000_0000 + 8 * (seq & 0xffff), size: 4, data: 0, count: 1, df: 0, data_is_ptr: 0, state: 1, buf: 0, after: 0 };
        p.xadd(key, '*', ENTRY_FIELD, encode(req));
      }
      const res = await p.exec();
      const bad = res?.find(([e]) => e !== null);
      if (res === null || bad !== undefined) throw new Error(`rawPipelinedXadd: ${String(bad?.[0] ?? 'pipeline aborted')}`);
    };
    for (let w = 0; w < 5; w++) await round(); // warm-up
    let entries = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < duration_ms) {
      await round();
      entries += batch;
    }
    const dt = performance.now() - t0;
    return { entries, entries_per_s: entries / (dt / 1000) };
  } finally {
    await r.del(key).catch(() => undefined);
    r.disconnect();
  }
}
