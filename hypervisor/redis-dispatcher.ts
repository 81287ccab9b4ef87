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
import { MAX_VCPUS } from './constants.js';
import { domainCrash } from './domain-crash.js';
import { CTL } from './layout/control.js';
import { DOM, DS } from './layout/domains.js';
import { IOS } from './layout/ioreq-slots.js';
import type { Machine } from './machine.js';
import { IOREQ_STATE } from './public/ioreq.js';
import { isWireError, type IoreqResp } from '../transport/messages.js';
import { RedisIoreqBus, START_ID } from '../transport/redis-bus.js';
import { serverId } from '../transport/redis-end.js';

export interface DispatcherStats {
  published: number;
  completed: number;
  duplicates_dropped: number;
  malformed: number;
  guests_crashed: number;
}

export class RedisDispatcher {
  readonly stats: DispatcherStats = { published: 0, completed: 0, duplicates_dropped: 0, malformed: 0, guests_crashed: 0 };
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

  /** Publish every READY slot not yet published (the vCPUs kick CTL.DISPATCH). */
  private async requests(): Promise<void> {
    const w = this.m.control.w;
    const slots = this.m.ios.slots;
    const ps = this.m.config.page_size_bytes;
    while (this.running) {
      const seen = Atomics.load(w, CTL.DISPATCH);
      for (let v = 0; v < MAX_VCPUS; v++) {
        const i = this.m.ios.idx(v);
        if (Atomics.load(slots, i + IOS.STATE) !== IOREQ_STATE.READY) continue;
        const seq = slots[i + IOS.SEQ]!;
        if (this.published.get(v) === seq) continue;
        this.published.set(v, seq);
        const target = slots[i + IOS.TARGET]!;
        const index = slots[i + IOS.SERVER]!;
        const server = serverId(target, index);
        try {
          await this.bus.publishRequest(server, {
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
          });
          this.stats.published++;
        } catch {
          this.published.delete(v); // try again on the next pass
        }
      }
      const r = Atomics.waitAsync(w, CTL.DISPATCH, seen, 20);
      if (r.async) await r.value;
    }
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
