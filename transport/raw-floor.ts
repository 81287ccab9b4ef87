/**
 * The "raw Redis stream round trip" floor of docs/semantics.md §9: what one IOREQ costs
 * over Redis with nothing of the bus around it — XADD a request, a server
 * already blocked in XREADGROUP receives it and XADDs a response, a
 * dispatcher already blocked in XREAD receives that. Payloads are the real
 * msgpackr messages (encode/decode included, a few µs). Four connections, as
 * the bus would use: a writer and a blocking reader on each side.
 *
 * Used by the benchmark to tell the bus's overhead from Redis's own.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { decodeReq, decodeResp, encode, isWireError, type IoreqMsg } from './messages.js';
import { ENTRY_FIELD, REQUEST_GROUP } from './redis-bus.js';

/** Round trips run first and not reported (connection set-up, JIT). */
const WARMUP_ROUND_TRIPS = 50;
const MAX_ROUND_TRIPS = 1_000_000;
const BLOCK_MS = 1000;

/** Microseconds of each of `n` sequential round trips (after a warm-up). Keys live under a fresh namespace and are deleted at the end. */
export async function rawStreamRoundTrip(url: string, n: number): Promise<number[]> {
  if (!Number.isInteger(n) || n < 1 || n > MAX_ROUND_TRIPS) throw new RangeError(`rawStreamRoundTrip: n must be an integer in [1, ${MAX_ROUND_TRIPS}], got ${n}`);
  const ns = `xgsim:rawfloor:${process.pid}:${randomBytes(4).toString('hex')}`;
  const reqKey = `${ns}:req`;
  const respKey = `${ns}:resp`;
  const open = (role: string): Redis => {
    const r = new Redis(url, { connectionName: `xgsim-rawfloor:${role}`, maxRetriesPerRequest: 1 });
    r.on('error', () => undefined); // failures surface as rejected commands
    return r;
  };
  const hv = open('hv');
  const hvRead = open('hv-read');
  const dm = open('dm');
  const dmRead = open('dm-read');
  let stop = false;
  try {
    await hv.call('XGROUP', 'CREATE', reqKey, REQUEST_GROUP, '0', 'MKSTREAM');
    const server = (async () => {
      while (!stop) {
        const reply = await dmRead.callBuffer('XREADGROUP', 'GROUP', REQUEST_GROUP, 'c0', 'COUNT', 1, 'BLOCK', BLOCK_MS, 'STREAMS', reqKey, '>');
        if (reply === null) continue;
        const m = decodeReq(firstPayload(reply).payload);
        if (isWireError(m)) throw new Error(`rawStreamRoundTrip: ${m.error}`);
        const resp = encode({ host: m.host, domid: m.domid, vcpu: m.vcpu, seq: m.seq, data: 0xffff_ffff, state: 3, error: 0, buf: 0 });
        await dm.callBuffer('XADD', respKey, '*', ENTRY_FIELD, resp);
      }
    })().catch((e: unknown) => (stop ? undefined : Promise.reject(e)));

    const out: number[] = [];
    let cursor = '0-0';
    for (let i = 0; i < WARMUP_ROUND_TRIPS + n; i++) {
      const req: IoreqMsg = { host: 'rawfloor', domid: 1, vcpu: 0, seq: i, server: 8, type: 1, dir: 1, addr: 0x1000_0000 + 8 * i, size: 4, data: 0, count: 1, df: 0, data_is_ptr: 0, state: 1, buf: 0, after: 0 };
      const t0 = process.hrtime.bigint();
      await hv.callBuffer('XADD', reqKey, '*', ENTRY_FIELD, encode(req));
      for (;;) {
        const reply = await Promise.race([hvRead.callBuffer('XREAD', 'COUNT', 1, 'BLOCK', BLOCK_MS, 'STREAMS', respKey, cursor), server]);
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
    stop = true;
    return out;
  } finally {
    stop = true;
    dmRead.disconnect(); // ends the server's blocked XREADGROUP
    hvRead.disconnect();
    await hv.del(reqKey, respKey).catch(() => undefined);
    hv.disconnect();
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
