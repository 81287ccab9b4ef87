/**
 * The hypervisor's side of the `redis` transport, on the host's main
 * thread: ioreqs a vCPU publishes in its slot go out on the serving
 * IOREQ server's request stream; answers come back on the frontend's
 * response stream and complete the slot.
 *
 * What it trusts (docs/security.md): with a run key, every request it sends
 * is signed and every answer must carry the MAC of a server of the domain
 * (transport/auth.ts); an answer that does not — a stranger's — or that its
 * server may not give (another server's ioreq, a sequence number not yet
 * sent) is dropped and counted `rejected`, never a violation. An answer
 * from the right server that breaks the protocol (garbage, a state that
 * does not move the ioreq forward) crashes the guest, as Xen does — never
 * the hypervisor. Duplicates (ioredis re-sends, a restarted device model,
 * its own re-sends) are recognised by (domid, vcpu, seq) and dropped.
 *
 * What it recovers (docs/ioreq.md §11): it keeps its own record of what it
 * sent and has not seen answered, and sends it again after RESEND_AFTER_MS
 * (doubling), or at once when the run's keys vanished (a flush, a restart
 * without persistence): lost entries are never the end of a vCPU. A Redis
 * error the run cannot recover from (TransportFault), or a Redis silent
 * for longer than the transport timeout, is handed to `onFault`: the host
 * ends the run as `unknown`.
 */
import { hostname } from 'node:os';
import { MAX_IOREQ_SERVERS_PER_DOMAIN, MAX_VCPUS } from '../layout/constants.js';
import { domainCrash } from '../xen/domain-crash.js';
import { CTL } from '../layout/control.js';
import { DOM, DS } from '../layout/domains.js';
import { IOS } from '../layout/ioreq-slots.js';
import { BUF, SRV_STATE } from '../layout/ioreq.js';
import type { Machine } from '../xen/machine.js';
import { IOREQ_STATE } from '../public/ioreq.js';
import { TK, kindWord, requester } from '../layout/trace.js';
import { tracer } from '../xen/trace.js';
import { isWireError, type IoreqMsg, type IoreqResp } from '../../transport/messages.js';
import { RedisIoreqBus, START_ID, type ResponseItem } from '../../transport/redis-bus.js';
import { serverId } from '../../transport/redis-end.js';
import { serverKey } from '../../transport/auth.js';
import { classify, TransportFault } from '../../transport/faults.js';
import { ABANDONED, Abandon } from '../../transport/abandon.js';
import { LIVENESS_EVERY_MS, REJECT_EVENTS_MAX, RESEND_AFTER_MS, RESEND_MAX_MS, TRANSPORT_STOP_BOUND_MS } from '../../transport/constants.js';

export interface DispatcherStats {
  published: number;
  /** Pipelines the requests went out in (published / pipelines: the mean batch). */
  pipelines: number;
  completed: number;
  duplicates_dropped: number;
  malformed: number;
  guests_crashed: number;
  /** Answers dropped for what their sender may not say: no or a wrong MAC, another server's ioreq, a seq not sent yet. */
  rejected: number;
  /** Requests and buffered ioreqs sent again (unanswered after RESEND_AFTER_MS, or lost with the run's keys). */
  resent: number;
  /** Times the run's keys were found gone (a flush, a restart without persistence). */
  resets: number;
}

export interface DispatcherOptions {
  /** The run key (transport/auth.ts): requests signed, answers verified. Without it, nothing is. */
  runKey?: Buffer;
  /** Redis silent this long ends the run (`--transport-timeout`); without it, never. */
  timeout_ms?: number;
  /** A fault the run cannot recover from (a TransportFault, or the dispatcher's own error): the host ends the run. */
  onFault?: (e: unknown) => void;
  /**
   * The URL of the run's `admin` ACL user (transport/redis-acl.ts), which
   * alone may delete the run's keys; without it, the dispatcher's own
   * connection deletes them.
   */
  adminUrl?: string;
}

/**
 * A frontend's buffered ring as the dispatcher sees it; positions count on
 * without wrapping. Under Redis the dispatcher is the ring's consumer: it
 * moves READ once it has copied entries into a batch for the server's
 * stream, and keeps the copies (`sent`) until the device model says they
 * were applied: a batch whose pipeline fails, or that Redis loses, is sent
 * again from them. So that the stream stays bounded (the ring's
 * back-pressure, carried over), it publishes at most BUF_WINDOW positions
 * beyond what the device model said it applied.
 */
interface BufRing {
  target: number;
  index: number;
  base: number;
  /** The next position to publish. */
  pub: number;
  /** READ: every position below it was taken into a batch (on the stream, or on its way there). */
  read: number;
  /** Every position below it applied by the device model (its word on the response stream). */
  applied: number;
  /** The messages of positions applied … pub − 1, in order. */
  sent: IoreqMsg[];
  /** When `applied` last moved, or the ring last went from idle to busy; and re-sends since. */
  since_ms: number;
  tries: number;
}

/** A synchronous ioreq sent and not yet seen answered: its vCPU slot's seq, server, buffered predecessors, and re-sends. */
interface Sent {
  seq: number;
  server: number;
  after: number;
  at_ms: number;
  tries: number;
}

type Batch = Array<{ server: number; msg: IoreqMsg }>;

/** Buffered ioreqs of one server published but not yet applied, at most (the stream's share of the ring's bound). */
const BUF_WINDOW = 4096;

/** How long start() waits for Redis to take the run's marker (it has just connected). */
const MARK_BOUND_MS = 5000;

/** How long to wait before sending something again after `tries` re-sends. */
function resendDelay(tries: number): number {
  return Math.min(RESEND_MAX_MS, RESEND_AFTER_MS * 2 ** Math.min(tries, 8));
}

export class RedisDispatcher {
  readonly stats: DispatcherStats = { published: 0, pipelines: 0, completed: 0, duplicates_dropped: 0, malformed: 0, guests_crashed: 0, rejected: 0, resent: 0, resets: 0 };
  private readonly inflight = new Map<number, Sent>(); // vCPU slot → what was sent for it
  private running = true;
  private loops: Array<Promise<void>> = [];
  private readonly host = hostname().slice(0, 200) || 'host';
  /** Fired when stop() begins: every wait on Redis gives up then. */
  private readonly stopping = new Abandon();
  /** performance.now() of the last reply from Redis (any command). */
  private lastOk_ms = performance.now();
  /** Bumped when the run's keys were found gone: the response loops start their cursors again. */
  private epoch = 0;
  /** Set when the run's keys were found gone: everything in flight is sent again on the next pass. */
  private resendAll = false;
  private liveTimer: NodeJS.Timeout | undefined;
  private faulted = false;
  private rejectEvents = 0;
  /** Answers completed since the run's keys were last found gone: whether the run went on after it. */
  completedSinceReset = 0;
  /** Whether stop() deleted the run's keys; why not, if it could not. */
  cleanup: 'pending' | 'deleted' | string = 'pending';

  private constructor(
    readonly m: Machine,
    readonly bus: RedisIoreqBus,
    readonly domids: number[],
    private readonly o: DispatcherOptions,
    /** The connection that deletes the run's keys at the end: the admin user's, or `bus`. */
    private readonly admin: RedisIoreqBus,
  ) {}

  static async start(m: Machine, url: string, namespace: string, domids: number[], o: DispatcherOptions = {}): Promise<RedisDispatcher> {
    const run = o.runKey;
    const keys = new Map<number, Buffer>();
    const keyOf = run === undefined ? undefined : (s: number): Buffer => keys.get(s) ?? keys.set(s, serverKey(run, s)).get(s)!;
    let bus: RedisIoreqBus;
    try {
      bus = await RedisIoreqBus.connect({ url, namespace, clientName: `xgsim-hv:${namespace}`, ...(keyOf !== undefined ? { keys: keyOf } : {}) });
    } catch (e) {
      throw new TransportFault(`transport down: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    let admin = bus;
    if (o.adminUrl !== undefined) {
      try {
        admin = await RedisIoreqBus.connect({ url: o.adminUrl, namespace, clientName: `xgsim-admin:${namespace}` });
      } catch (e) {
        await bus.close();
        throw new TransportFault(`transport down: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
    }
    const d = new RedisDispatcher(m, bus, domids, o, admin);
    try {
      const ok = await withBound(bus.reader('liveness').set(d.aliveKey, '1'), MARK_BOUND_MS);
      if (ok !== 'OK') throw new TransportFault(`transport down: Redis did not answer within ${MARK_BOUND_MS} ms`);
    } catch (e) {
      await bus.close();
      if (admin !== bus) await admin.close();
      throw classify(e, 'mark the run in Redis');
    }
    Atomics.store(m.control.w, CTL.TRANSPORT, 1);
    d.loops = [d.requests(), ...domids.map((x) => d.responses(x))].map((p) => p.catch((e: unknown) => d.fault(e)));
    d.liveTimer = setInterval(() => d.liveness(), LIVENESS_EVERY_MS);
    return d;
  }

  /** The key whose absence says Redis lost the run's keys. */
  private get aliveKey(): string {
    return `${this.bus.namespace}:alive`;
  }

  /** How long Redis has answered nothing. */
  silentFor_ms(): number {
    return performance.now() - this.lastOk_ms;
  }

  /** Hand a fault the run cannot recover from to the host, once; the loops end. */
  private fault(e: unknown): void {
    if (this.faulted || !this.running) return;
    this.faulted = true;
    if (this.o.onFault !== undefined) this.o.onFault(e);
    else this.m.log.event(`redis transport: ${e instanceof Error ? e.message : String(e)}`);
  }

  /** `p`, or undefined once stop() began (the wait is abandoned). A reply from Redis (`redis`) says it is alive. */
  private async bounded<T>(p: Promise<T>, redis = true): Promise<T | undefined> {
    const r = await this.stopping.race(p);
    if (r === ABANDONED) return undefined;
    if (redis) this.lastOk_ms = performance.now();
    return r;
  }

  private liveInFlight = false;
  /** When the liveness check last ran: a late one means this thread was busy, not Redis silent. */
  private lastTick_ms = performance.now();

  /**
   * On a timer: is Redis answering (within the transport timeout), and are
   * the run's keys still there? A timer rather than a loop, so a command
   * Redis never answers does not stop the clock.
   */
  private liveness(): void {
    const now = performance.now();
    // Time this thread could not run (a long check, a GC pause, a loaded machine) is not Redis's silence:
    // the replies waiting behind it have not been read yet.
    const late = now - this.lastTick_ms - LIVENESS_EVERY_MS;
    if (late > LIVENESS_EVERY_MS) this.lastOk_ms = Math.min(now, this.lastOk_ms + late);
    this.lastTick_ms = now;
    const t = this.o.timeout_ms;
    if (t !== undefined && this.silentFor_ms() > t) {
      this.fault(new TransportFault(`transport down: no answer from Redis for ${Math.round(this.silentFor_ms())} ms (--transport-timeout ${t} ms)`));
      return;
    }
    if (this.liveInFlight || !this.running) return;
    this.liveInFlight = true;
    const conn = this.bus.reader('liveness');
    // A read (allowed at maxmemory); the marker is written again only when it is gone.
    void this.bounded(conn.exists(this.aliveKey))
      .then(async (n) => {
        if (n !== 0 || !this.running) return;
        const ok = await this.bounded(conn.set(this.aliveKey, '1'));
        if (ok !== undefined && this.running) this.lostKeys();
      })
      .catch((e: unknown) => {
        const c = classify(e, 'check the run\'s keys');
        if (c instanceof TransportFault) this.fault(c);
      })
      .finally(() => (this.liveInFlight = false));
  }

  /** Redis lost the run's keys (the marker was gone): read the response streams from their start, send everything in flight again now. */
  private lostKeys(): void {
    this.stats.resets++;
    this.completedSinceReset = 0;
    this.epoch++;
    this.resendAll = true;
    this.m.log.event('redis transport: the run\'s keys were gone (a flush, or a restart without persistence); everything in flight is sent again');
    Atomics.add(this.m.control.w, CTL.DISPATCH, 1);
    Atomics.notify(this.m.control.w, CTL.DISPATCH);
  }

  /**
   * Publish, in one pipeline per pass: what is overdue (sent again, first),
   * every buffered ioreq of the frontends' buffered rings not yet published,
   * and every READY slot not yet published — each after the buffered ioreqs
   * of its server, which its vCPU made before it (the order the device model
   * applies them in). The vCPUs kick CTL.DISPATCH.
   */
  private async requests(): Promise<void> {
    const w = this.m.control.w;
    while (this.running) {
      const seen = Atomics.load(w, CTL.DISPATCH);
      const batch: Batch = [];
      this.resendOverdue(batch);
      const rings = this.collect(batch);
      // The batch holds copies of the entries: their places in the ring are
      // free now, and the vCPUs fill them while the pipeline is on its way.
      for (const r of rings) {
        r.read = r.pub;
        Atomics.store(this.m.ioreq.buf, r.base + BUF.READ, r.read | 0);
      }
      const out = this.retry.length > 0 ? [...this.retry.splice(0), ...batch] : batch;
      if (out.length > 0) await this.publish(out);
      const r = Atomics.waitAsync(w, CTL.DISPATCH, seen, 20);
      if (r.async) await this.bounded(r.value, false);
    }
  }

  /** Send a batch; a connection error keeps it for the next pass, a refusal for good is the run's end. */
  private async publish(out: Batch): Promise<void> {
    try {
      const done = await this.bounded(this.bus.publishRequests(out).then(() => true));
      if (done !== true) return;
      this.stats.published += out.length;
      this.stats.pipelines++;
    } catch (e) {
      const c = classify(e, 'publish requests');
      if (c instanceof TransportFault) throw c;
      // Again, first, on the next pass (the ring no longer holds them); what did go out is a duplicate the device model drops.
      this.retry = out;
    }
  }

  /** New work: buffered ioreqs, then READY slots not yet published. Returns the rings read from. */
  private collect(batch: Batch): BufRing[] {
    const io = this.m.ioreq;
    const rings: BufRing[] = [];
    for (const d of this.domids) {
      for (let s = 0; s < MAX_IOREQ_SERVERS_PER_DOMAIN; s++) if (io.state(d, s) === SRV_STATE.ENABLED && io.bufioreq(d, s)) this.drain(d, s, batch, rings);
    }
    const slots = this.m.ios.slots;
    for (let v = 0; v < MAX_VCPUS; v++) {
      const i = this.m.ios.idx(v);
      if (Atomics.load(slots, i + IOS.STATE) !== IOREQ_STATE.READY) continue;
      const seq = slots[i + IOS.SEQ]!;
      if (this.inflight.get(v)?.seq === seq) continue;
      const target = slots[i + IOS.TARGET]!;
      const index = slots[i + IOS.SERVER]!;
      const buffered = index >= 0 && index < MAX_IOREQ_SERVERS_PER_DOMAIN && target >= 0 && target < this.m.nd && io.bufioreq(target, index);
      if (buffered) this.drain(target, index, batch, rings, true);
      const after = buffered ? this.ring(target, index).pub : 0;
      const server = serverId(target, index);
      this.inflight.set(v, { seq, server, after, at_ms: performance.now(), tries: 0 });
      const msg = this.slotMsg(v, seq, after);
      batch.push({ server, msg });
      const tw = tracer;
      if (tw !== null) tw.put(tw.now(), kindWord(TK.IO_PICK, requester(msg.domid, msg.vcpu)), seq, 0);
    }
    return rings;
  }

  /** The request in vCPU slot `v` (READY with `seq`) as it goes on the wire. */
  private slotMsg(v: number, seq: number, after: number): IoreqMsg {
    const slots = this.m.ios.slots;
    const i = this.m.ios.idx(v);
    const server = serverId(slots[i + IOS.TARGET]!, slots[i + IOS.SERVER]!);
    return {
      host: this.host,
      domid: slots[i + IOS.DOMID]!,
      vcpu: slots[i + IOS.VCPU]!,
      seq,
      server,
      type: slots[i + IOS.TYPE]!,
      dir: slots[i + IOS.DIR]! === 0 ? 0 : 1,
      addr: slots[i + IOS.GFN]! * this.m.config.page_size_bytes + slots[i + IOS.OFFSET]!,
      size: slots[i + IOS.SIZE]! as 1 | 2 | 4 | 8,
      data: slots[i + IOS.DATA]! >>> 0,
      count: 1,
      df: 0,
      data_is_ptr: 0,
      state: IOREQ_STATE.READY,
      buf: 0,
      after,
    };
  }

  /**
   * Send again, per server, what waited too long for its answer (or all of
   * it, after the run's keys were lost): the server's buffered ioreqs not
   * yet applied, in order, then its synchronous ioreqs still waiting —
   * the order they were first sent in.
   */
  private resendOverdue(batch: Batch): void {
    const now = performance.now();
    const all = this.resendAll;
    this.resendAll = false;
    const slots = this.m.ios.slots;
    const due = new Set<number>();
    for (const [v, s] of this.inflight) {
      const i = this.m.ios.idx(v);
      // Answered, or given up meanwhile (its vCPU stopped, its domain died): nothing to send.
      if (Atomics.load(slots, i + IOS.STATE) !== IOREQ_STATE.READY || slots[i + IOS.SEQ] !== s.seq) this.inflight.delete(v);
      else if (all || now - s.at_ms > resendDelay(s.tries)) due.add(s.server);
    }
    for (const r of this.rings.values()) if (r.pub > r.applied && (all || now - r.since_ms > resendDelay(r.tries))) due.add(serverId(r.target, r.index));
    if (due.size === 0) return;
    for (const r of this.rings.values()) {
      if (!due.has(serverId(r.target, r.index)) || r.sent.length === 0) continue;
      for (const msg of r.sent) batch.push({ server: msg.server, msg });
      this.stats.resent += r.sent.length;
      r.since_ms = now;
      r.tries++;
    }
    for (const [v, s] of this.inflight) {
      if (!due.has(s.server)) continue;
      batch.push({ server: s.server, msg: this.slotMsg(v, s.seq, s.after) });
      this.stats.resent++;
      s.at_ms = now;
      s.tries++;
    }
  }

  /** A batch whose pipeline failed: sent again, before anything newer, on the next pass. */
  private retry: Batch = [];

  /** Per buffered ring (by its index in the layout): what was published, what the device model applied. */
  private readonly rings = new Map<number, BufRing>();

  private ring(target: number, index: number): BufRing {
    const base = this.m.ioreq.bufIdx(target, index);
    let r = this.rings.get(base);
    const read = Atomics.load(this.m.ioreq.buf, base + BUF.READ);
    // New to us, or created again (its READ moved without us): start at READ.
    if (r === undefined || (r.read | 0) !== read) {
      r = { target, index, base, pub: read >>> 0, read: read >>> 0, applied: read >>> 0, sent: [], since_ms: performance.now(), tries: 0 };
      this.rings.set(base, r);
    }
    return r;
  }

  /**
   * Add server `index` of `target`'s buffered ioreqs not yet published
   * (up to WRITE) to the batch, in position order, keeping a copy of each.
   * Positions on the wire count on from READ without wrapping (the ring's
   * int32 positions wrap).
   */
  private drain(target: number, index: number, batch: Batch, rings: BufRing[], beforeSync = false): void {
    const io = this.m.ioreq;
    const buf = io.buf;
    const r = this.ring(target, index);
    const write = Atomics.load(buf, r.base + BUF.WRITE);
    if ((r.pub | 0) === write) return;
    const server = serverId(target, index);
    const ps = this.m.config.page_size_bytes;
    const from = r.pub;
    if (r.pub === r.applied) r.since_ms = performance.now(); // busy again: its clock starts now
    // Past the window, only what must go ahead of a synchronous ioreq (at most a ring's worth).
    const upto = beforeSync ? Infinity : r.applied + BUF_WINDOW;
    while ((r.pub | 0) !== write && r.pub < upto) {
      const e = io.bufEntry(r.base, r.pub);
      const meta = buf[e + BUF.META]!;
      const msg: IoreqMsg = {
        host: this.host,
        domid: target,
        vcpu: meta >>> 8,
        seq: r.pub,
        server,
        type: (meta >>> 4) & 0xf,
        dir: 0,
        addr: buf[e + BUF.GFN]! * ps + buf[e + BUF.OFFSET]!,
        size: (meta & 0xf) as 1 | 2 | 4 | 8,
        data: buf[e + BUF.DATA]! >>> 0,
        count: 1,
        df: 0,
        data_is_ptr: 0,
        state: IOREQ_STATE.READY,
        buf: 1,
        after: 0,
      };
      batch.push({ server, msg });
      r.sent.push(msg);
      r.pub++;
    }
    if (r.pub !== from && !rings.includes(r)) rings.push(r);
  }

  /** The device model applied server `index`'s buffered ioreqs below `upto` (Xen: it advances read_pointer; here the window moves on). */
  private bufApplied(domid: number, index: number, upto: number): void {
    if (index < 0 || index >= MAX_IOREQ_SERVERS_PER_DOMAIN) {
      this.crash(domid, `buffered ioreqs of server ${index} said applied`);
      return;
    }
    const r = this.rings.get(this.m.ioreq.bufIdx(domid, index));
    if (r === undefined || upto <= r.applied) {
      this.stats.duplicates_dropped++; // an old word, or one about a ring created again
      return;
    }
    if (upto > r.pub) {
      this.crash(domid, `buffered ioreqs of server ${index} said applied up to ${upto}, only ${r.pub} were published`);
      return;
    }
    r.sent.splice(0, upto - r.applied);
    r.applied = upto;
    r.since_ms = performance.now();
    r.tries = 0;
    // Entries held back by the window may go now.
    Atomics.add(this.m.control.w, CTL.DISPATCH, 1);
    Atomics.notify(this.m.control.w, CTL.DISPATCH);
  }

  /** Buffered ioreqs taken from the rings and not yet applied by a device model (the benchmark waits for none). */
  bufInFlight(): number {
    let n = 0;
    for (const r of this.rings.values()) n += r.pub - r.applied;
    return n;
  }

  /** Answers for one frontend, from its response stream (from its start again when the run's keys were lost). */
  private async responses(domid: number): Promise<void> {
    let cursor = START_ID;
    let epoch = this.epoch;
    while (this.running) {
      if (epoch !== this.epoch) {
        epoch = this.epoch;
        cursor = START_ID;
      }
      let batch;
      try {
        batch = await this.bounded(this.bus.readResponses(domid, cursor, 50, 64));
      } catch (e) {
        const c = classify(e, `read the answers for d${domid}`);
        if (c instanceof TransportFault) throw c;
        if (!this.running) return;
        await this.bounded(new Promise((r) => setTimeout(r, 20)), false);
        continue;
      }
      if (batch === undefined) return;
      if (epoch !== this.epoch) continue; // read across a loss of the keys: its cursor is of the old streams
      cursor = batch.lastId;
      for (const item of batch.items) this.complete(domid, item);
    }
  }

  /** One item off a response stream: who sent it (its MAC), then what it says. */
  private complete(domid: number, item: ResponseItem): void {
    if (this.o.runKey !== undefined && item.from === undefined) {
      this.reject(domid, 'an answer without a valid MAC');
      return;
    }
    if (isWireError(item as never)) {
      // From one of the domain's servers, so its device model broke the protocol.
      this.stats.malformed++;
      this.crash(domid, `malformed answer on its response stream: ${(item as { error: string }).error}`);
      return;
    }
    const r = item as IoreqResp & { from?: number };
    if (r.domid !== domid || this.m.dom.state(domid) !== DS.RUNNING) return;
    if (r.buf === 1) {
      if (r.from !== undefined && r.from !== serverId(domid, r.vcpu)) this.reject(domid, `server ${r.from}'s word on the buffered ioreqs of server ${serverId(domid, r.vcpu)}`);
      else this.bufApplied(domid, r.vcpu, r.seq);
      return;
    }
    const nv = this.m.dom.at(domid, DOM.NR_VCPUS);
    if (r.vcpu >= nv) {
      this.crash(domid, `answer for vCPU ${r.vcpu} of ${nv}`);
      return;
    }
    this.answer(domid, this.m.dom.at(domid, DOM.VCPU_BASE) + r.vcpu, r);
  }

  /** An authentic answer for vCPU slot `slot`: complete the slot if it is the one in flight, from its server. */
  private answer(domid: number, slot: number, r: IoreqResp & { from?: number }): void {
    const slots = this.m.ios.slots;
    const i = this.m.ios.idx(slot);
    const seq = Atomics.load(slots, i + IOS.SEQ);
    const st = Atomics.load(slots, i + IOS.STATE);
    if (r.seq > seq) {
      this.reject(domid, `an answer to ioreq ${r.seq} of vCPU ${r.vcpu}, which is at ${seq}`);
      return;
    }
    if (r.seq !== seq || (st !== IOREQ_STATE.READY && st !== IOREQ_STATE.INPROCESS)) {
      // Answered already: a duplicate, harmless by construction.
      this.stats.duplicates_dropped++;
      return;
    }
    const to = serverId(slots[i + IOS.TARGET]!, slots[i + IOS.SERVER]!);
    if (r.from !== undefined && r.from !== to) {
      this.reject(domid, `server ${r.from}'s answer to ioreq ${r.seq} of vCPU ${r.vcpu}, sent to server ${to}`);
      return;
    }
    if (r.state !== IOREQ_STATE.IORESP_READY) {
      this.crash(domid, `ioreq ${r.seq} answered with state ${r.state} (must move forward to IORESP_READY)`);
      return;
    }
    slots[i + IOS.DATA] = r.data | 0;
    slots[i + IOS.FAULT] = r.error;
    // Stamped before the slot is published: a spinning vCPU may stamp its IO_DONE right after.
    const tw = tracer;
    if (tw !== null) tw.put(tw.now(), kindWord(TK.IO_BACK, requester(slots[i + IOS.DOMID]!, slots[i + IOS.VCPU]!)), r.seq, 0);
    Atomics.store(slots, i + IOS.STATE, IOREQ_STATE.IORESP_READY);
    this.m.ios.wakeVcpu(slot);
    this.inflight.delete(slot);
    this.stats.completed++;
    this.completedSinceReset++;
  }

  /** An answer its sender may not give: dropped, counted, the first few described. */
  private reject(domid: number, what: string): void {
    this.stats.rejected++;
    if (this.rejectEvents++ < REJECT_EVENTS_MAX) this.m.log.event(`redis transport: refused, on the response stream of d${domid}, ${what}`);
  }

  private crash(domid: number, why: string): void {
    this.m.log.event(`redis transport: crashing d${domid}: ${why}`);
    if (domainCrash(this.m, domid, why)) this.stats.guests_crashed++;
  }

  /**
   * Stop the loops, delete the run's keys, close — each step bounded by
   * TRANSPORT_STOP_BOUND_MS, so a Redis that is down does not hold a
   * stopping run. `cleanup` says whether the keys were deleted.
   */
  async stop(): Promise<void> {
    this.running = false;
    this.stopping.fire();
    if (this.liveTimer !== undefined) clearInterval(this.liveTimer);
    Atomics.add(this.m.control.w, CTL.DISPATCH, 1);
    Atomics.notify(this.m.control.w, CTL.DISPATCH);
    await withBound(Promise.allSettled(this.loops), TRANSPORT_STOP_BOUND_MS);
    try {
      this.cleanup = await this.deleteKeys();
    } finally {
      await this.bus.close();
      if (this.admin !== this.bus) await this.admin.close();
    }
  }

  /** Delete the run's keys, bounded; a connection that is down now is not waited for (the keys stay, and the report says so). */
  private async deleteKeys(): Promise<string> {
    if (!this.admin.connected()) return 'Redis was not connected';
    try {
      const done = await withBound(this.admin.destroyNamespace().then(() => true), TRANSPORT_STOP_BOUND_MS);
      return done === true ? 'deleted' : `Redis did not answer within ${TRANSPORT_STOP_BOUND_MS} ms`;
    } catch (e) {
      return `Redis answered ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`;
    }
  }
}

/** `p`, or undefined after `ms` (the promise is left to settle on its own; its rejection is handled). */
async function withBound<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}
