/**
 * The `redis` transport's device-model end: one request stream per IOREQ
 * server, read through the consumer group; answers go to the frontend's
 * response stream. Exactly once: an answer is remembered (in Redis) before
 * the request is acknowledged, so a duplicate — ioredis re-sending after a
 * reconnect, or a restarted device model reclaiming its predecessor's
 * pending entries with XAUTOCLAIM — gets the same answer again and is
 * never applied twice.
 *
 * Trust (docs/security.md): with keys, a request whose MAC does not verify,
 * or that its server may not send (another domain's domid; what `check`
 * refuses, e.g. a sequence number from the future), is acknowledged away,
 * never applied, and counted (`onReject`). A Redis error the run cannot
 * recover from is thrown as a TransportFault (transport/faults.ts); a Redis
 * that does not answer never holds a stopping device model (`untilStop`).
 */
import { hostname } from 'node:os';
import type { IoreqAnswer, IoreqRequest, IoreqServerEnd } from '../hypervisor/public/ioreq.js';
import { IOREQ_STATE } from '../hypervisor/public/ioreq.js';
import { MAX_IOREQ_SERVERS_PER_DOMAIN } from '../hypervisor/layout/constants.js';
import { isWireError, type IoreqResp } from './messages.js';
import { RedisIoreqBus, type RequestItem } from './redis-bus.js';
import { classify, TransportFault } from './faults.js';
import { TRANSPORT_STOP_BOUND_MS } from './constants.js';
import { ABANDONED, Abandon } from './abandon.js';

export interface RedisEndOptions {
  url: string;
  namespace: string;
  /** (frontend, server index) pairs this device model serves. */
  servers: Array<{ target: number; index: number }>;
  page_size_bytes: number;
  consumer: string;
  /** The keys of the servers served (server id → key): requests are verified, answers signed. */
  keys?: ReadonlyMap<number, Buffer>;
  /** What the request may not say beyond its shape and MAC (e.g. a seq its vCPU has not reached): a reason, or undefined. */
  check?: (req: IoreqRequest) => string | undefined;
  /** A request was refused (not applied, acknowledged away). */
  onReject?: (why: string) => void;
  /** Resolves when the run stops: what waits on Redis then gives up (recv returns nothing, respond sends nothing). */
  untilStop?: () => Promise<void>;
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
  /**
   * Per `domid:vcpu`, the last answer this end gave: a request the
   * dispatcher sends again (its answer lost with a flushed stream) is
   * answered from here even when Redis lost the `applied` record too.
   */
  private readonly last = new Map<string, { seq: number; answer: IoreqAnswer }>();
  duplicates = 0;
  rejected = 0;

  constructor(readonly o: RedisEndOptions) {}

  /** Fired when the run stops (untilStop). */
  private abandon: Abandon | undefined;

  /** `p`, or ABANDONED once the run stops (the wait on Redis is abandoned; its outcome no longer matters). */
  private bounded<T>(p: Promise<T>): Promise<T | typeof ABANDONED> {
    const stop = this.o.untilStop;
    if (stop === undefined) return p;
    if (this.abandon === undefined) {
      const a = (this.abandon = new Abandon());
      void stop().then(() => a.fire());
    }
    return this.abandon.race(p);
  }

  /** A Redis operation: a TransportFault if Redis refused it for good, ABANDONED if the run stopped first. */
  private async redis<T>(what: string, f: (bus: RedisIoreqBus) => Promise<T>): Promise<T | typeof ABANDONED> {
    const bus = await this.connect();
    if (bus === ABANDONED) return ABANDONED;
    try {
      return await this.bounded(f(bus));
    } catch (e) {
      throw classify(e, `device model ${this.o.consumer}: ${what}`);
    }
  }

  /** The bus, connected; a Redis that does not answer yet (restarting) is waited for, until the run stops. */
  private async connect(): Promise<RedisIoreqBus | typeof ABANDONED> {
    const keys = this.o.keys;
    while (this.bus === undefined) {
      const b = await this.bounded(
        RedisIoreqBus.connect({ url: this.o.url, namespace: this.o.namespace, clientName: `xgsim-dm:${this.o.namespace}:${this.o.consumer}`, ...(keys !== undefined ? { keys: (s: number) => keys.get(s) } : {}) }).catch((e: unknown) => {
          // Bad options are a bug, not an outage: not waited out.
          if (e instanceof RangeError) throw e;
          return undefined;
        }),
      );
      if (b === ABANDONED) return ABANDONED;
      if (b !== undefined) this.bus = b;
      else if ((await this.bounded(new Promise((r) => setTimeout(r, 100)))) === ABANDONED) return ABANDONED;
    }
    return this.bus;
  }

  async recv(max: number, block_ms: number): Promise<IoreqRequest[]> {
    const out = await this.redis('recv', (bus) => this.recvFrom(bus, max, block_ms));
    if (out === ABANDONED) return [];
    return this.inOrder(out);
  }

  private async recvFrom(bus: RedisIoreqBus, max: number, block_ms: number): Promise<IoreqRequest[]> {
    this.flushBuffered(bus);
    const out: IoreqRequest[] = [];
    const servers = this.o.servers.map((s) => serverId(s.target, s.index));
    if (!this.reclaimed) {
      // A predecessor that died left entries pending: take them over.
      this.reclaimed = true;
      this.lastReclaim = performance.now();
      for (const s of servers) for (const item of await bus.reclaim(s, this.o.consumer, 0, 256)) this.accept(s, item, out);
      if (out.length > 0) return out;
    } else if (performance.now() - this.lastReclaim > RECLAIM_EVERY_MS) {
      // Entries delivered but never answered (a lost delivery) idle in the
      // pending list: hand them out again. `answered` keeps this exactly once.
      this.lastReclaim = performance.now();
      for (const s of servers) for (const item of await bus.reclaim(s, this.o.consumer, RECLAIM_IDLE_MS, 64)) this.accept(s, item, out);
      if (out.length > 0) return out;
    }
    // Round robin over the servers' streams; the blocking wait goes to one of them.
    for (let k = 0; k < servers.length && out.length === 0; k++) {
      const s = servers[(this.next + k) % servers.length]!;
      const items = await bus.readRequests(s, this.o.consumer, k === servers.length - 1 ? Math.max(1, Math.min(block_ms, 20)) : 0, max);
      for (const it of items) this.accept(s, it, out);
    }
    this.next++;
    return out;
  }

  private accept(server: number, item: RequestItem, out: IoreqRequest[]): void {
    const { id, msg } = item;
    if (isWireError(msg)) {
      // Garbage in a request stream: acknowledge it away, answer nothing.
      this.ackAway(server, id);
      if (item.rejected !== undefined) this.reject(`request entry ${id} with ${item.rejected}`);
      return;
    }
    const m = msg;
    const why = item.rejected !== undefined ? `${item.rejected}` : m.domid !== Math.floor(server / MAX_IOREQ_SERVERS_PER_DOMAIN) ? `domid ${m.domid} on the stream of a server of d${Math.floor(server / MAX_IOREQ_SERVERS_PER_DOMAIN)}` : undefined;
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
    const refused = why ?? this.o.check?.(req);
    if (refused !== undefined) {
      this.ackAway(server, id);
      this.reject(`request d${m.domid} vCPU ${m.vcpu} seq ${m.seq}${m.buf === 1 ? ' (buffered)' : ''}: ${refused}`);
      return;
    }
    this.pending.set(pendingKey(req), { server, id });
    if (m.buf === 0 && m.after > 0) this.after.set(req, m.after);
    out.push(req);
  }

  /** A synchronous request's `after` (IoreqMsg): its server's buffered ioreqs below it come first. */
  private readonly after = new WeakMap<IoreqRequest, number>();

  /** Acknowledge an entry that will never be answered (garbage, refused, out of order): off the critical path, errors kept for the next respond. */
  private ackAway(server: number, id: string): void {
    const bus = this.bus;
    if (bus === undefined) return;
    this.acking = this.acking.then(() =>
      bus.ack(server, [id]).then(
        () => undefined,
        (e: unknown) => {
          this.ackError ??= e;
        },
      ),
    );
  }

  private reject(why: string): void {
    this.rejected++;
    this.o.onReject?.(why);
  }

  /**
   * Buffered ioreqs are applied in position order, each the one after the
   * last (Xen's buffered ring: read_pointer moves one entry at a time), and
   * a synchronous ioreq after the buffered ones its vCPU made before it
   * (`after`: a read flushes the posted writes). A request that comes after
   * a gap — its predecessors lost from the stream (XDEL, XTRIM, a flush) —
   * is not applied: it is acknowledged away, and the dispatcher sends the
   * server's unanswered requests again, in order (RESEND_AFTER_MS).
   * Duplicates below the mark pass (answered from it). Where this end knows
   * no mark (a fresh end, and Redis holds none), the first position it
   * meets starts the ring.
   */
  private async inOrder(reqs: IoreqRequest[]): Promise<IoreqRequest[]> {
    if (!reqs.some((r) => r.buffered === true || this.after.has(r))) return reqs;
    const next = new Map<string, number | undefined>();
    const out: IoreqRequest[] = [];
    for (const r of reqs) {
      const need = r.buffered === true ? r.seq : this.after.get(r);
      if (need === undefined) {
        out.push(r);
        continue;
      }
      const k = bufKey(r);
      let want = next.has(k) ? next.get(k) : undefined;
      if (!next.has(k)) {
        const mark = await this.redis('read a buffered-ioreq mark', () => this.bufMark(r));
        if (mark === ABANDONED) return [];
        want = mark;
        next.set(k, want);
      }
      // No mark anywhere: the first position met starts the ring.
      if (want === undefined && r.buffered === true) want = r.seq;
      if (want !== undefined && need > want) {
        this.refuseGap(r);
        continue;
      }
      if (r.buffered === true) next.set(k, Math.max(want ?? 0, r.seq + 1));
      out.push(r);
    }
    return out;
  }

  /** A request after a gap: acknowledged away unanswered (the dispatcher sends it again, after its predecessors). */
  private refuseGap(r: IoreqRequest): void {
    const p = this.pending.get(pendingKey(r));
    this.pending.delete(pendingKey(r));
    if (p !== undefined) this.ackAway(p.server, p.id);
    this.gaps++;
  }

  /** Buffered ioreqs refused for coming after a gap (sent again by the dispatcher). */
  gaps = 0;

  /**
   * Buffered ioreqs: per `domid:server`, the position below which every
   * one was applied (by this end, or — read once from Redis — a
   * predecessor); a delivery below it is a duplicate.
   */
  private readonly bufMarks = new Map<string, number>();
  /** Buffered ioreqs applied since the last flush, per ring: the mark to record and the entries to acknowledge. */
  private readonly bufDone = new Map<string, { server: number; domid: number; index: number; mark: number; ids: string[] }>();

  /** The ring's mark; undefined when neither this end nor Redis has one (nothing applied yet, or Redis lost it). */
  private async bufMark(req: IoreqRequest): Promise<number | undefined> {
    const k = bufKey(req);
    let mark = this.bufMarks.get(k);
    if (mark === undefined) {
      const bus = this.bus;
      const stored = bus === undefined ? undefined : await bus.bufMark(serverId(req.domid, req.server), k);
      // A mark this end moved meanwhile (never backwards).
      const now = this.bufMarks.get(k);
      if (stored === undefined && now === undefined) return undefined;
      mark = Math.max(stored ?? 0, now ?? 0);
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
        this.ackError ??= classify(e, `device model ${this.o.consumer}: record buffered ioreqs applied`);
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

  /**
   * The last XACK done. Its error, if Redis refused it for good, is thrown
   * here (a TransportFault); any other leaves the entry pending, for reclaim.
   */
  private async acked(): Promise<void> {
    await this.acking;
    const e = this.ackError;
    if (e === undefined) return;
    this.ackError = undefined;
    const c = classify(e, `device model ${this.o.consumer}: XACK`);
    if (c instanceof TransportFault) throw c;
  }

  async respond(req: IoreqRequest, answer: IoreqAnswer): Promise<void> {
    if (req.buffered === true) {
      // No answer to send: the next flush records it applied.
      const k = pendingKey(req);
      this.bufApplied(req, this.pending.get(k));
      this.pending.delete(k);
      return;
    }
    // Once the run stops, nothing is sent (ABANDONED): the vCPU has given the ioreq up.
    await this.redis('answer', async (bus) => {
      await this.acked();
      await this.answer(bus, req, answer);
    });
  }

  private async answer(bus: RedisIoreqBus, req: IoreqRequest, answer: IoreqAnswer): Promise<void> {
    const k = key(req);
    const p = this.pending.get(k);
    this.pending.delete(k);
    const server = serverId(req.domid, req.server);
    const resp = (a: IoreqAnswer): IoreqResp => ({ host: HOST, domid: req.domid, vcpu: req.vcpu, seq: req.seq, data: a.data >>> 0, state: IOREQ_STATE.IORESP_READY, error: a.fault, buf: 0 });
    // Recorded and published in one step, or — a duplicate — the recorded answer published again.
    const before = await bus.answerOnce(server, k, answer.data, answer.fault, resp(answer));
    const k2 = vcpuKey(req);
    if (before !== undefined) {
      this.duplicates++;
      await bus.publishResponse(req.domid, resp(before), server);
    } else if (req.seq > (this.fresh.get(k2) ?? -1)) this.fresh.set(k2, req.seq);
    const given = before ?? answer;
    if (req.seq >= (this.last.get(k2)?.seq ?? -1)) this.last.set(k2, { seq: req.seq, answer: { data: given.data, fault: given.fault } });
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
    // The run stopped while Redis was asked: say "answered", so nothing is applied (the answer is not sent either).
    const said = await this.redis('look up an answer', () => this.lookUp(req));
    return said === ABANDONED ? { data: 0, fault: 0 } : said;
  }

  private async lookUp(req: IoreqRequest): Promise<IoreqAnswer | undefined> {
    if (req.buffered === true) return req.seq < ((await this.bufMark(req)) ?? 0) ? { data: 0, fault: 0 } : undefined;
    const k = vcpuKey(req);
    const mark = this.fresh.get(k);
    if (mark !== undefined && req.seq > mark) return undefined;
    const last = this.last.get(k);
    if (last !== undefined && last.seq === req.seq) return last.answer;
    return this.bus?.applied(serverId(req.domid, req.server), key(req));
  }

  /** Flush what was applied, wait for the last XACK — bounded: a Redis that is gone does not hold the device model's exit. */
  async close(): Promise<void> {
    if (this.bus !== undefined) this.flushBuffered(this.bus);
    await Promise.race([this.acking, new Promise((r) => setTimeout(r, TRANSPORT_STOP_BOUND_MS).unref())]);
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
