/**
 * The `redis` transport's device-model end: one request stream per IOREQ
 * server, read through the consumer group; answers go to the frontend's
 * response stream. Exactly once: an answer is remembered (in Redis) before
 * the request is acknowledged, so a duplicate — ioredis re-sending after a
 * reconnect, or a restarted device model reclaiming its predecessor's
 * pending entries with XAUTOCLAIM — gets the same answer again and is
 * never applied twice.
 */
import { hostname } from 'node:os';
import type { IoreqAnswer, IoreqRequest, IoreqServerEnd } from '../hypervisor/public/ioreq.js';
import { IOREQ_STATE } from '../hypervisor/public/ioreq.js';
import { MAX_IOREQ_SERVERS_PER_DOMAIN } from '../hypervisor/layout/constants.js';
import { isWireError, type IoreqMsg, type IoreqResp } from './messages.js';
import { RedisIoreqBus } from './redis-bus.js';

export interface RedisEndOptions {
  url: string;
  namespace: string;
  /** (frontend, server index) pairs this device model serves. */
  servers: Array<{ target: number; index: number }>;
  page_size_bytes: number;
  consumer: string;
}

/** How often a device model looks for deliveries it lost, and how long one must idle to count as lost. */
const RECLAIM_EVERY_MS = 250;
const RECLAIM_IDLE_MS = 500;

const HOST = hostname().slice(0, 200) || 'host';

export const serverId = (target: number, index: number): number => target * MAX_IOREQ_SERVERS_PER_DOMAIN + index;

interface Pending {
  server: number;
  id: string;
}

export class RedisServerEnd implements IoreqServerEnd {
  readonly kind = 'redis' as const;
  private bus: RedisIoreqBus | undefined;
  private reclaimed = false;
  private lastReclaim = 0;
  private readonly pending = new Map<string, Pending>();
  private next = 0;
  /** Per `domid:vcpu`, the highest seq this end applied and recorded itself (see answered). */
  private readonly fresh = new Map<string, number>();
  duplicates = 0;

  constructor(readonly o: RedisEndOptions) {}

  private async connect(): Promise<RedisIoreqBus> {
    this.bus ??= await RedisIoreqBus.connect({ url: this.o.url, namespace: this.o.namespace, clientName: `xgsim-dm:${this.o.namespace}:${this.o.consumer}` });
    return this.bus;
  }

  async recv(max: number, block_ms: number): Promise<IoreqRequest[]> {
    const bus = await this.connect();
    this.flushBuffered(bus);
    const out: IoreqRequest[] = [];
    const servers = this.o.servers.map((s) => serverId(s.target, s.index));
    if (!this.reclaimed) {
      // A predecessor that died left entries pending: take them over.
      this.reclaimed = true;
      this.lastReclaim = performance.now();
      for (const s of servers) for (const item of await bus.reclaim(s, this.o.consumer, 0, 256)) this.accept(s, item.id, item.msg, out);
      if (out.length > 0) return out;
    } else if (performance.now() - this.lastReclaim > RECLAIM_EVERY_MS) {
      // Entries delivered but never answered (a lost delivery) idle in the
      // pending list: hand them out again. `answered` keeps this exactly once.
      this.lastReclaim = performance.now();
      for (const s of servers) for (const item of await bus.reclaim(s, this.o.consumer, RECLAIM_IDLE_MS, 64)) this.accept(s, item.id, item.msg, out);
      if (out.length > 0) return out;
    }
    // Round robin over the servers' streams; the blocking wait goes to one of them.
    for (let k = 0; k < servers.length && out.length === 0; k++) {
      const s = servers[(this.next + k) % servers.length]!;
      const items = await bus.readRequests(s, this.o.consumer, k === servers.length - 1 ? Math.max(1, Math.min(block_ms, 20)) : 0, max);
      for (const it of items) this.accept(s, it.id, it.msg, out);
    }
    this.next++;
    return out;
  }

  private accept(server: number, id: string, msg: IoreqMsg | { error: string }, out: IoreqRequest[]): void {
    if ('error' in msg && typeof msg.error === 'string') {
      // Garbage in a request stream: acknowledge it away, answer nothing.
      void this.bus?.ack(server, [id]);
      return;
    }
    const m = msg as IoreqMsg;
    const req: IoreqRequest = {
      domid: m.domid,
      vcpu: m.vcpu,
      seq: m.seq,
      server: m.server % MAX_IOREQ_SERVERS_PER_DOMAIN,
      type: m.type,
      dir: m.dir,
      gfn: Math.floor(m.addr / this.o.page_size_bytes),
      offset: m.addr % this.o.page_size_bytes,
      size: m.size,
      data: m.data,
      ...(m.buf === 1 ? { buffered: true } : {}),
    };
    this.pending.set(pendingKey(req), { server, id });
    out.push(req);
  }

  /**
   * Buffered ioreqs: per `domid:server`, the position below which every
   * one was applied (by this end, or — read once from Redis — a
   * predecessor); a delivery below it is a duplicate.
   */
  private readonly bufMarks = new Map<string, number>();
  /** Buffered ioreqs applied since the last flush, per ring: the mark to record and the entries to acknowledge. */
  private readonly bufDone = new Map<string, { server: number; domid: number; index: number; mark: number; ids: string[] }>();

  private async bufMark(req: IoreqRequest): Promise<number> {
    const k = bufKey(req);
    let mark = this.bufMarks.get(k);
    if (mark === undefined) {
      mark = (await (await this.connect()).bufMark(k)) ?? 0;
      // A mark this end moved meanwhile (never backwards).
      mark = Math.max(mark, this.bufMarks.get(k) ?? 0);
      this.bufMarks.set(k, mark);
    }
    return mark;
  }

  /** A buffered ioreq was applied (`respond`): remember it; `flushBuffered` tells Redis and the hypervisor, one pipeline per ring. */
  private bufApplied(req: IoreqRequest, p: Pending | undefined): void {
    const k = bufKey(req);
    const mark = Math.max(this.bufMarks.get(k) ?? 0, req.seq + 1);
    this.bufMarks.set(k, mark);
    let d = this.bufDone.get(k);
    if (d === undefined) this.bufDone.set(k, (d = { server: serverId(req.domid, req.server), domid: req.domid, index: req.server, mark: 0, ids: [] }));
    // The end's mark, not this request's: a duplicate below it must not record a lower one.
    d.mark = mark;
    if (p !== undefined) d.ids.push(p.id);
  }

  /**
   * Record, announce and acknowledge what was applied, off the critical
   * path (chained on `acking`, as the synchronous answers' XACK): before the
   * next recv, and at close.
   */
  private flushBuffered(bus: RedisIoreqBus): void {
    if (this.bufDone.size === 0) return;
    const done = [...this.bufDone.values()];
    this.bufDone.clear();
    const prev = this.acking;
    this.acking = prev.then(async () => {
      try {
        for (const d of done) await bus.bufApplied(d.server, d.ids, `${d.domid}:${d.index}`, { host: HOST, domid: d.domid, vcpu: d.index, seq: d.mark, data: 0, state: IOREQ_STATE.IORESP_READY, error: 0, buf: 1 });
      } catch (e) {
        this.ackError = e;
      }
    });
  }

  /** A delivery lost (chaos `ioreq-drop`): forget it unanswered and unacknowledged; reclaim brings it back. */
  drop(req: IoreqRequest): void {
    this.pending.delete(pendingKey(req));
  }

  /** Answer once; a request already answered (a duplicate) gets the remembered answer. */
  /**
   * The XACK of the last answer, off the IOREQ's critical path (it follows
   * the answer's publication, as it must, but the device model need not
   * wait for it before reading the next request); the next respond or
   * close waits for it and throws its error.
   */
  private acking: Promise<void> = Promise.resolve();
  private ackError: unknown = undefined;

  private async acked(): Promise<void> {
    await this.acking;
    if (this.ackError !== undefined) {
      const e = this.ackError;
      this.ackError = undefined;
      throw e;
    }
  }

  async respond(req: IoreqRequest, answer: IoreqAnswer): Promise<void> {
    if (req.buffered === true) {
      // No answer to send: the next flush records it applied.
      const k = pendingKey(req);
      this.bufApplied(req, this.pending.get(k));
      this.pending.delete(k);
      return;
    }
    await this.acked();
    const bus = await this.connect();
    const k = key(req);
    const p = this.pending.get(k);
    this.pending.delete(k);
    const resp = (a: IoreqAnswer): IoreqResp => ({ host: HOST, domid: req.domid, vcpu: req.vcpu, seq: req.seq, data: a.data >>> 0, state: IOREQ_STATE.IORESP_READY, error: a.fault, buf: 0 });
    // Recorded and published in one step, or — a duplicate — the recorded answer published again.
    const before = await bus.answerOnce(k, answer.data, answer.fault, resp(answer));
    if (before !== undefined) {
      this.duplicates++;
      await bus.publishResponse(req.domid, resp(before));
    } else {
      const k2 = vcpuKey(req);
      if (req.seq > (this.fresh.get(k2) ?? -1)) this.fresh.set(k2, req.seq);
    }
    if (p !== undefined) {
      this.acking = bus.ack(p.server, [p.id]).then(
        () => undefined,
        (e: unknown) => {
          this.ackError = e;
        },
      );
    }
  }

  /**
   * Has this request been answered already (by us or a predecessor)? The
   * device model skips applying it again.
   *
   * Usually answered without asking Redis (the HGET was a whole round trip
   * on the IOREQ's critical path): once this end has itself applied and
   * recorded seq s of a vCPU, a request of that vCPU with a higher seq is
   * new. A vCPU has one ioreq in flight and numbers them upwards, so it
   * issued that request after it had our answer to s — after this end
   * started, so after any predecessor had stopped (a killed device model is
   * restarted only once its task has ended, and it answered nothing after
   * its last recv) — and this end has not answered it, or `fresh` would
   * have moved past it. Everything else asks Redis: a vCPU's first request
   * to this end, a seq at or below the mark (a duplicate: ioredis
   * re-sending an XADD, a re-read or reclaimed entry, chaos
   * `ioreq-duplicate`). How the request came (read, re-read, reclaimed)
   * does not matter to the argument. This holds while one device model at a
   * time serves a server, as in xgsim (dom0's vCPU 0; docs/ioreq.md §9);
   * two live consumers of one group would each need the HGET.
   */
  async answered(req: IoreqRequest): Promise<IoreqAnswer | undefined> {
    if (req.buffered === true) return req.seq < (await this.bufMark(req)) ? { data: 0, fault: 0 } : undefined;
    const k = vcpuKey(req);
    const mark = this.fresh.get(k);
    if (mark !== undefined && req.seq > mark) return undefined;
    const bus = await this.connect();
    return bus.applied(key(req));
  }

  async close(): Promise<void> {
    if (this.bus !== undefined) this.flushBuffered(this.bus);
    await this.acking;
    await this.bus?.close();
    this.bus = undefined;
  }
}

function key(r: { domid: number; vcpu: number; seq: number }): string {
  return `${r.domid}:${r.vcpu}:${r.seq}`;
}

/** A delivery in hand: a synchronous ioreq by its key, a buffered one by its ring and position. */
function pendingKey(r: IoreqRequest): string {
  return r.buffered === true ? `b${bufKey(r)}:${r.seq}` : key(r);
}

/** A buffered ring: the frontend and the server's index among its servers. */
function bufKey(r: { domid: number; server: number }): string {
  return `${r.domid}:${r.server}`;
}

function vcpuKey(r: { domid: number; vcpu: number }): string {
  return `${r.domid}:${r.vcpu}`;
}

export { isWireError };
