/**
 * The hypervisor's side of the `redis` transport, on the host's main
 * thread: ioreqs a vCPU publishes in its slot go out on the serving
 * IOREQ server's request stream; answers come back on the frontend's
 * response stream and complete the slot. Every answer is validated on
 * receipt: garbage, or a state that does not move the ioreq forward,
 * crashes the guest — never the hypervisor. Duplicates (ioredis re-sends,
 * a restarted device model) are recognised by (domid, vcpu, seq) and dropped.
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
import { isWireError, type IoreqMsg, type IoreqResp } from '../../transport/messages.js';
import { RedisIoreqBus, START_ID } from '../../transport/redis-bus.js';
import { serverId } from '../../transport/redis-end.js';

export interface DispatcherStats {
  published: number;
  /** Pipelines the requests went out in (published / pipelines: the mean batch). */
  pipelines: number;
  completed: number;
  duplicates_dropped: number;
  malformed: number;
  guests_crashed: number;
}

/**
 * A frontend's buffered ring as the dispatcher sees it; positions count on
 * without wrapping. Under Redis the dispatcher is the ring's consumer: it
 * moves READ once it has copied entries into a batch for the server's
 * stream (a batch whose pipeline fails is sent again from that copy), and
 * the stream is the device model's queue. So that the stream stays bounded
 * (the ring's back-pressure, carried over), it publishes at most BUF_WINDOW
 * positions beyond what the device model said it applied.
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
}

/** Buffered ioreqs of one server published but not yet applied, at most (the stream's share of the ring's bound). */
const BUF_WINDOW = 4096;

export class RedisDispatcher {
  readonly stats: DispatcherStats = { published: 0, pipelines: 0, completed: 0, duplicates_dropped: 0, malformed: 0, guests_crashed: 0 };
  private readonly published = new Map<number, number>(); // slot → seq published
  private running = true;
  private loops: Array<Promise<void>> = [];
  private readonly host = hostname().slice(0, 200) || 'host';

  private constructor(
    readonly m: Machine,
    readonly bus: RedisIoreqBus,
    readonly domids: number[],
  ) {}

  static async start(m: Machine, url: string, namespace: string, domids: number[]): Promise<RedisDispatcher> {
    const bus = await RedisIoreqBus.connect({ url, namespace, clientName: `xgsim-hv:${namespace}` });
    const d = new RedisDispatcher(m, bus, domids);
    Atomics.store(m.control.w, CTL.TRANSPORT, 1);
    d.loops = [d.requests(), ...domids.map((x) => d.responses(x))];
    return d;
  }

  /**
   * Publish, in one pipeline per pass: every buffered ioreq of the
   * frontends' buffered rings not yet published, and every READY slot not
   * yet published — each after the buffered ioreqs of its server, which its
   * vCPU made before it (the order the device model applies them in). The
   * vCPUs kick CTL.DISPATCH.
   */
  private async requests(): Promise<void> {
    const w = this.m.control.w;
    const slots = this.m.ios.slots;
    const ps = this.m.config.page_size_bytes;
    const io = this.m.ioreq;
    while (this.running) {
      const seen = Atomics.load(w, CTL.DISPATCH);
      const batch: Array<{ server: number; msg: IoreqMsg }> = [];
      const rings: BufRing[] = [];
      for (const d of this.domids) {
        for (let s = 0; s < MAX_IOREQ_SERVERS_PER_DOMAIN; s++) if (io.state(d, s) === SRV_STATE.ENABLED && io.bufioreq(d, s)) this.drain(d, s, batch, rings);
      }
      for (let v = 0; v < MAX_VCPUS; v++) {
        const i = this.m.ios.idx(v);
        if (Atomics.load(slots, i + IOS.STATE) !== IOREQ_STATE.READY) continue;
        const seq = slots[i + IOS.SEQ]!;
        if (this.published.get(v) === seq) continue;
        this.published.set(v, seq);
        const target = slots[i + IOS.TARGET]!;
        const index = slots[i + IOS.SERVER]!;
        if (index >= 0 && index < MAX_IOREQ_SERVERS_PER_DOMAIN && target >= 0 && target < this.m.nd && io.bufioreq(target, index)) this.drain(target, index, batch, rings, true);
        const server = serverId(target, index);
        batch.push({
          server,
          msg: {
            host: this.host,
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
            buf: 0,
          },
        });
      }
      // The batch holds copies of the entries: their places in the ring are
      // free now, and the vCPUs fill them while the pipeline is on its way.
      for (const r of rings) {
        r.read = r.pub;
        Atomics.store(this.m.ioreq.buf, r.base + BUF.READ, r.read | 0);
      }
      const out = this.retry.length > 0 ? [...this.retry.splice(0), ...batch] : batch;
      if (out.length > 0) {
        try {
          await this.bus.publishRequests(out);
          this.stats.published += out.length;
          this.stats.pipelines++;
        } catch {
          // Again, first, on the next pass (the ring no longer holds them); what did go out is a duplicate the device model drops.
          this.retry = out;
        }
      }
      const r = Atomics.waitAsync(w, CTL.DISPATCH, seen, 20);
      if (r.async) await r.value;
    }
  }

  /** A batch whose pipeline failed: sent again, before anything newer, on the next pass. */
  private retry: Array<{ server: number; msg: IoreqMsg }> = [];

  /** Per buffered ring (by its index in the layout): what was published, what the device model applied. */
  private readonly rings = new Map<number, BufRing>();

  private ring(target: number, index: number): BufRing {
    const base = this.m.ioreq.bufIdx(target, index);
    let r = this.rings.get(base);
    const read = Atomics.load(this.m.ioreq.buf, base + BUF.READ);
    // New to us, or created again (its READ moved without us): start at READ.
    if (r === undefined || (r.read | 0) !== read) this.rings.set(base, (r = { target, index, base, pub: read >>> 0, read: read >>> 0, applied: read >>> 0 }));
    return r;
  }

  /**
   * Add server `index` of `target`'s buffered ioreqs not yet published
   * (up to WRITE) to the batch, in position order. Positions on the wire count
   * on from READ without wrapping (the ring's int32 positions wrap).
   */
  private drain(target: number, index: number, batch: Array<{ server: number; msg: IoreqMsg }>, rings: BufRing[], beforeSync = false): void {
    const io = this.m.ioreq;
    const buf = io.buf;
    const r = this.ring(target, index);
    const write = Atomics.load(buf, r.base + BUF.WRITE);
    if ((r.pub | 0) === write) return;
    const server = serverId(target, index);
    const ps = this.m.config.page_size_bytes;
    const from = r.pub;
    // Past the window, only what must go ahead of a synchronous ioreq (at most a ring's worth).
    const upto = beforeSync ? Infinity : r.applied + BUF_WINDOW;
    while ((r.pub | 0) !== write && r.pub < upto) {
      const e = io.bufEntry(r.base, r.pub);
      const meta = buf[e + BUF.META]!;
      batch.push({
        server,
        msg: {
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
        },
      });
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
    r.applied = upto;
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

  /** Answers for one frontend, from its response stream. */
  private async responses(domid: number): Promise<void> {
    let cursor = START_ID;
    while (this.running) {
      let batch;
      try {
        batch = await this.bus.readResponses(domid, cursor, 50, 64);
      } catch {
        if (!this.running) return;
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      cursor = batch.lastId;
      for (const item of batch.items) this.complete(domid, item);
    }
  }

  private complete(domid: number, item: IoreqResp | { error: string }): void {
    if (isWireError(item as never) || typeof (item as { error: unknown }).error === 'string') {
      this.stats.malformed++;
      this.crash(domid, `malformed answer on its response stream: ${(item as { error: string }).error}`);
      return;
    }
    const r = item as IoreqResp;
    if (r.domid !== domid || this.m.dom.state(domid) !== DS.RUNNING) return;
    if (r.buf === 1) {
      this.bufApplied(domid, r.vcpu, r.seq);
      return;
    }
    const nv = this.m.dom.at(domid, DOM.NR_VCPUS);
    if (r.vcpu >= nv) {
      this.crash(domid, `answer for vCPU ${r.vcpu} of ${nv}`);
      return;
    }
    const slot = this.m.dom.at(domid, DOM.VCPU_BASE) + r.vcpu;
    const slots = this.m.ios.slots;
    const i = this.m.ios.idx(slot);
    const seq = Atomics.load(slots, i + IOS.SEQ);
    const st = Atomics.load(slots, i + IOS.STATE);
    if (r.seq !== seq || (st !== IOREQ_STATE.READY && st !== IOREQ_STATE.INPROCESS)) {
      // Answered already (or never asked): a duplicate, harmless by construction.
      this.stats.duplicates_dropped++;
      return;
    }
    if (r.state !== IOREQ_STATE.IORESP_READY) {
      this.crash(domid, `ioreq ${r.seq} answered with state ${r.state} (must move forward to IORESP_READY)`);
      return;
    }
    slots[i + IOS.DATA] = r.data | 0;
    slots[i + IOS.FAULT] = r.error;
    Atomics.store(slots, i + IOS.STATE, IOREQ_STATE.IORESP_READY);
    this.m.ios.wakeVcpu(slot);
    this.stats.completed++;
  }

  private crash(domid: number, why: string): void {
    this.m.log.event(`redis transport: crashing d${domid}: ${why}`);
    if (domainCrash(this.m, domid, why)) this.stats.guests_crashed++;
  }

  async stop(): Promise<void> {
    this.running = false;
    Atomics.add(this.m.control.w, CTL.DISPATCH, 1);
    Atomics.notify(this.m.control.w, CTL.DISPATCH);
    await Promise.allSettled(this.loops);
    try {
      await this.bus.destroyNamespace();
    } finally {
      await this.bus.close();
    }
  }
}
