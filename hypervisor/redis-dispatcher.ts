/**
 * The hypervisor's side of the `redis` transport: ioreqs a vCPU publishes
 * in its slot go out on the serving IOREQ server's request stream; answers
 * come back on the frontend's response stream and complete the slot.
 *
 * Two halves on two threads. The requests are published by a thread of
 * their own (redis-publisher.ts), woken by the vCPU's kick; the answers are
 * read here, on the host's main thread, where the checker and the
 * toolstack run. Every answer is validated on receipt: garbage, or a state
 * that does not move the ioreq forward, crashes the guest — never the
 * hypervisor. Duplicates (ioredis re-sends, a restarted device model) are
 * recognised by (domid, vcpu, seq) and dropped.
 */
import { hostname } from 'node:os';
import { Worker } from 'node:worker_threads';
import { domainCrash } from './domain-crash.js';
import { CTL } from './layout/control.js';
import { DOM, DS } from './layout/domains.js';
import { IOS } from './layout/ioreq-slots.js';
import type { Machine } from './machine.js';
import { IOREQ_STATE } from './public/ioreq.js';
import type { PublisherData, PublisherMessage } from './redis-publisher.js';
import { distModule } from './worker-path.js';
import { isWireError, type IoreqResp } from '../transport/messages.js';
import { RedisIoreqBus, START_ID } from '../transport/redis-bus.js';

/** How long stop() gives the publisher thread to finish its in-flight XADDs. */
const PUBLISHER_STOP_MS = 2000;

export interface DispatcherStats {
  published: number;
  completed: number;
  duplicates_dropped: number;
  malformed: number;
  guests_crashed: number;
}

export class RedisDispatcher {
  readonly #stats = { completed: 0, duplicates_dropped: 0, malformed: 0, guests_crashed: 0 };
  private running = true;
  private loops: Array<Promise<void>> = [];
  private constructor(
    readonly m: Machine,
    readonly bus: RedisIoreqBus,
    readonly domids: number[],
    private readonly publisher: Worker,
    private readonly publisherDone: Promise<void>,
    /** What went wrong with the publisher thread, if anything (the host reports it). */
    readonly errors: string[],
  ) {}

  /** XADDs Redis acknowledged (the publisher thread counts them in shared memory), and what this thread counted. */
  get stats(): DispatcherStats {
    return { published: Atomics.load(this.m.control.w, CTL.PUB_PUBLISHED), ...this.#stats };
  }

  static async start(m: Machine, url: string, namespace: string, domids: number[]): Promise<RedisDispatcher> {
    const bus = await RedisIoreqBus.connect({ url, namespace, clientName: `xgsim-hv:${namespace}` });
    const w = m.control.w;
    Atomics.store(w, CTL.PUB_STOP, 0);
    const data: PublisherData = { kind: 'redis-publisher', sabs: m.sabs, url, namespace, hostname: hostname().slice(0, 200) || 'host' };
    const publisher = new Worker(new URL(distModule('hypervisor/redis-publisher')), { workerData: data, name: 'xgsim-redis-publisher' });
    let ready!: () => void;
    let failed!: (e: Error) => void;
    const up = new Promise<void>((res, rej) => {
      ready = res;
      failed = rej;
    });
    const errors: string[] = [];
    const publisherDone = new Promise<void>((res) => {
      publisher.on('message', (msg: PublisherMessage) => {
        if (msg.kind === 'ready') ready();
        else if (msg.kind === 'failed') failed(new Error(`redis request publisher: ${msg.error}`));
      });
      publisher.on('error', (e: Error) => {
        failed(e);
        const why = `redis request publisher thread failed: ${e.message}`;
        errors.push(why);
        m.log.event(why);
      });
      publisher.on('exit', () => {
        failed(new Error('redis request publisher: the thread exited before it was ready'));
        res();
      });
    });
    try {
      await up;
    } catch (e) {
      await publisher.terminate();
      await bus.close();
      throw e;
    }
    const d = new RedisDispatcher(m, bus, domids, publisher, publisherDone, errors);
    Atomics.store(w, CTL.TRANSPORT, 1);
    d.loops = domids.map((x) => d.responses(x));
    return d;
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
      this.#stats.malformed++;
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
      this.#stats.duplicates_dropped++;
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
    this.#stats.completed++;
  }

  private crash(domid: number, why: string): void {
    this.m.log.event(`redis transport: crashing d${domid}: ${why}`);
    if (domainCrash(this.m, domid, why)) this.#stats.guests_crashed++;
  }

  async stop(): Promise<void> {
    this.running = false;
    const w = this.m.control.w;
    Atomics.store(w, CTL.PUB_STOP, 1);
    Atomics.add(w, CTL.DISPATCH, 1);
    Atomics.notify(w, CTL.DISPATCH);
    // It exits once its in-flight XADDs have settled; a Redis that stopped answering must not hold the host.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((res) => (timer = setTimeout(() => res(true), PUBLISHER_STOP_MS)));
    if (await Promise.race([this.publisherDone.then(() => false), late])) {
      this.errors.push(`redis request publisher: still running ${PUBLISHER_STOP_MS} ms after stop; terminated`);
      await this.publisher.terminate();
    }
    clearTimeout(timer);
    await Promise.allSettled(this.loops);
    try {
      await this.bus.destroyNamespace();
    } finally {
      await this.bus.close();
    }
  }
}
