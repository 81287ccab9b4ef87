/**
 * Which transport end a device model gets: the host chooses the transport
 * (`--transport`); the device model only sees IoreqServerEnd.
 */
import type { Machine } from '../xen/machine.js';
import { IOREQ_TYPE, type IoreqAnswer, type IoreqRequest, type IoreqServerEnd } from '../public/ioreq.js';
import { RingServerEnd } from '../../transport/ring.js';
import { BUGS } from '../xen/buggify.js';
import { CTL, NEMESIS_IOREQ } from '../layout/control.js';
import { DOM } from '../layout/domains.js';
import { IOS } from '../layout/ioreq-slots.js';
import { BUF } from '../layout/ioreq.js';
import { MAX_IOREQ_SERVERS_PER_DOMAIN } from '../layout/constants.js';
import { TK, kindWord, requester } from '../layout/trace.js';
import { tracer, type TraceWriter } from '../xen/trace.js';
import { sched } from '../xen/platform.js';
import { setServerEndMaker } from '../xen/ioreq.js';

export type ServerEndFactory = (m: Machine, owner: number) => IoreqServerEnd;

let factory: ServerEndFactory = (m, owner) => new RingServerEnd(m, owner);

/** Installed by the vCPU worker when the host runs the redis transport. */
export function setServerEndFactory(f: ServerEndFactory): void {
  factory = f;
}

// The Xen core asks for a device model's end through this (xen/ioreq.ts openServerEnd).
setServerEndMaker(makeServerEnd);

export const DM_KILLED = 'device model killed (chaos)';

const stops = new WeakMap<Int32Array, Promise<void>>();

/**
 * Resolves once the host stops the vCPUs (CTL.STOP): what a device model
 * waits on over Redis is abandoned then, so a Redis that does not answer
 * never holds a stopping run (transport/redis-end.ts). One promise per
 * machine and thread.
 */
export function untilStop(m: Machine): Promise<void> {
  const w = m.control.w;
  let p = stops.get(w);
  if (p === undefined) {
    p = (async () => {
      // The host notifies CTL.STOP; the timeout only bounds a missed wake-up.
      while (Atomics.load(w, CTL.STOP) === 0) {
        const r = Atomics.waitAsync(w, CTL.STOP, 0, 100);
        if (r.async) await r.value;
      }
    })();
    stops.set(w, p);
  }
  return p;
}

/** Chance that an ioreq meets the transport nemesis while its window is open. */
const NEMESIS_P = 0.5;

/**
 * The end a device model gets, wrapped for chaos:
 *  - `kill-device-model`: the kill lands right after the device model has
 *    claimed requests and before it answers any — the worst moment for the
 *    transport. The host restarts the device model; its successor must
 *    complete those requests exactly once.
 *  - the transport nemesis (CTL.IOREQ_NEMESIS, host-set for a window):
 *    delay (the end holds the batch), duplicate (a request is delivered
 *    again later: the device model must not apply it twice), drop (the
 *    delivery is lost: the ring loses the event and the request waits in
 *    its slot for the next scan; Redis leaves it pending until XAUTOCLAIM
 *    hands it out again), reorder (a batch is reversed, or a lone request
 *    held back behind the next one).
 */
export function makeServerEnd(m: Machine, owner: number): IoreqServerEnd {
  const inner = factory(m, owner);
  const later: IoreqRequest[] = [];
  let rng = (Atomics.load(m.control.w, CTL.SEED_LO) ^ Math.imul(owner + 1, 0x9e3779b1)) | 1;
  const random = (): number => {
    rng ^= rng << 13;
    rng ^= rng >>> 17;
    rng ^= rng << 5;
    return (rng >>> 0) / 2 ** 32;
  };
  const count = (w: number, n = 1): void => void Atomics.add(m.control.w, w, n);
  /** The kill check and the nemesis on a fresh batch: what to hand the device model, and how long to hold it first. */
  const shape = (fresh: IoreqRequest[], nem = Atomics.load(m.control.w, CTL.IOREQ_NEMESIS)): { out: IoreqRequest[]; delay_us: number } => {
    if (fresh.length > 0 && Atomics.compareExchange(m.control.w, CTL.KILL_DM, 1, 0) === 1) throw new Error(DM_KILLED);
    if (nem === 0 || fresh.length === 0) return { out: later.length === 0 ? fresh : [...fresh, ...later.splice(0)], delay_us: 0 };
    const held = later.splice(0);
    let out: IoreqRequest[] = [];
    // Buffered ioreqs keep their order (a ring applied in position order,
    // whatever carries it): the nemesis may delay or duplicate them, never
    // drop or reorder them; they stay ahead of the synchronous ones.
    const posted: IoreqRequest[] = [];
    for (const req of fresh) {
      if (req.buffered === true) {
        // The injected stall: taken from the ring, never applied, its place never freed.
        if ((nem & NEMESIS_IOREQ.SKIP_BUFFERED) !== 0) continue;
        posted.push(req);
        if ((nem & NEMESIS_IOREQ.DUPLICATE) !== 0 && random() < NEMESIS_P) {
          later.push({ ...req });
          count(CTL.NEM_DUPLICATED);
        }
        continue;
      }
      if ((nem & NEMESIS_IOREQ.DROP) !== 0 && inner.drop !== undefined && random() < NEMESIS_P) {
        inner.drop(req);
        count(CTL.NEM_DROPPED);
        continue;
      }
      out.push(req);
      if ((nem & NEMESIS_IOREQ.DUPLICATE) !== 0 && random() < NEMESIS_P) {
        later.push({ ...req });
        count(CTL.NEM_DUPLICATED);
      }
    }
    if ((nem & NEMESIS_IOREQ.REORDER) !== 0 && out.length > 0 && random() < NEMESIS_P) {
      if (out.length > 1) out = out.reverse();
      else later.unshift(out.pop()!); // behind whatever comes next
      count(CTL.NEM_REORDERED);
    }
    let delay_us = 0;
    if ((nem & NEMESIS_IOREQ.DELAY) !== 0 && out.length + posted.length > 0) {
      delay_us = Math.max(0, Atomics.load(m.control.w, CTL.IOREQ_DELAY_US));
      count(CTL.NEM_DELAYED, out.length + posted.length);
    }
    return { out: [...posted, ...out, ...held], delay_us };
  };
  /** What the transport hands the device model, after the kill check and the nemesis. */
  const deliver = async (max: number, block_ms: number): Promise<IoreqRequest[]> => {
    const { out, delay_us } = shape(await inner.recv(max, later.length > 0 ? 0 : block_ms));
    if (delay_us > 0) await new Promise((r) => setTimeout(r, delay_us / 1000));
    return out;
  };
  const killable: IoreqServerEnd = {
    kind: inner.kind,
    async recv(max, block_ms) {
      const reqs = await deliver(max, block_ms);
      // What the device model takes, on its vCPU's timeline, whatever the transport and the nemesis did.
      const tw = tracer;
      if (tw !== null && reqs.length > 0) traceReceipt(tw, reqs);
      return reqs;
    },
    respond(req, a) {
      if (losesAnswer(m, req)) return Promise.resolve();
      const tw = tracer;
      return tw === null || req.buffered === true ? inner.respond(req, a) : respondTraced(tw, inner, req, a);
    },
    close: () => inner.close(),
  };
  if (inner.answered !== undefined) {
    killable.answered = async (req) => {
      const a = m.control.buggy(BUGS['ioreq-no-dedup']) ? undefined : await inner.answered!(req);
      if (a === undefined) ledger(m, req);
      else Atomics.add(m.control.w, CTL.DUPLICATES_SKIPPED, 1);
      return a;
    };
  }
  const { recvNow, recvHot, respondNow, answeredNow } = inner;
  if (respondNow !== undefined && answeredNow !== undefined) {
    killable.respondNow = (req, a) => {
      if (losesAnswer(m, req)) return;
      const tw = tracer;
      if (tw === null || req.buffered === true) respondNow.call(inner, req, a);
      else respondNowTraced(tw, () => respondNow.call(inner, req, a), req);
    };
    killable.answeredNow = (req) => {
      const a = m.control.buggy(BUGS['ioreq-no-dedup']) ? undefined : answeredNow.call(inner, req);
      if (a === undefined) ledger(m, req);
      else Atomics.add(m.control.w, CTL.DUPLICATES_SKIPPED, 1);
      return a;
    };
    if (recvHot !== undefined) {
      // The hot path (ring): the same kill check. A nemesis, or a request it
      // holds back, sends the device model to recv, where a batch can be
      // held for its delay.
      killable.recvHot = (max) => {
        if (later.length > 0 || Atomics.load(m.control.w, CTL.IOREQ_NEMESIS) !== 0) return [];
        const reqs = shape(recvHot.call(inner, max), 0).out;
        const tw = tracer;
        if (tw !== null && reqs.length > 0) traceReceipt(tw, reqs);
        return reqs;
      };
    }
  }
  if (recvNow !== undefined && respondNow !== undefined && answeredNow !== undefined) {
    // The polled end (deterministic simulator): the same kill and nemesis;
    // a delayed batch is held until the scheduler's clock passes its time,
    // and what comes after it waits behind it (first in, first out, as the
    // device model's own loop takes them under real threads): a delay must
    // not reorder a buffered ring.
    const delayed: Array<{ at_us: number; reqs: IoreqRequest[] }> = [];
    killable.recvNow = (max) => {
      const { out, delay_us } = shape(recvNow.call(inner, max));
      const now_us = sched().now_us();
      if (delayed.length === 0 && delay_us === 0) return out;
      if (out.length > 0) delayed.push({ at_us: now_us + delay_us, reqs: out });
      const due: IoreqRequest[] = [];
      while (delayed.length > 0 && delayed[0]!.at_us <= now_us) due.push(...delayed.shift()!.reqs);
      return due;
    };
  }
  return killable;
}

/**
 * The exactly-once check (invariant 6's ledger): a request the device model
 * is about to apply must be newer than the last one applied for that vCPU —
 * each vCPU has one ioreq outstanding and numbers them upwards.
 */
function ledger(m: Machine, req: IoreqRequest): void {
  if (req.buffered === true) {
    // A buffered ring's entries are applied one by one in position order: each the one after the last.
    if (req.domid < 0 || req.domid >= m.nd || req.server < 0 || req.server >= MAX_IOREQ_SERVERS_PER_DOMAIN) return;
    const prev = Atomics.exchange(m.ioreq.buf, m.ioreq.bufIdx(req.domid, req.server) + BUF.APPLIED, (req.seq + 1) | 0);
    m.log.checked('ioreq_forward');
    if (prev !== (req.seq | 0)) m.log.violated('ioreq_forward', `d${req.domid} server ${req.server}: buffered ioreq ${req.seq} applied after ${prev - 1} (applied twice or out of order)`);
    return;
  }
  if (req.domid < 0 || req.domid >= m.nd || req.vcpu < 0 || req.vcpu >= m.dom.at(req.domid, DOM.NR_VCPUS)) return;
  const i = m.ios.idx(m.dom.at(req.domid, DOM.VCPU_BASE) + req.vcpu) + IOS.APPLIED;
  const prev = Atomics.exchange(m.ios.slots, i, req.seq);
  m.log.checked('ioreq_forward');
  if (prev >= req.seq) m.log.violated('ioreq_forward', `d${req.domid} vCPU ${req.vcpu}: ioreq ${req.seq} applied after ${prev} (applied twice or out of order)`);
}

/** The device model took these requests (one event each, then the batch). */
function traceReceipt(tw: TraceWriter, reqs: readonly IoreqRequest[]): void {
  const t0_us = tw.now();
  for (const r of reqs) if (r.buffered !== true) tw.put(tw.now(), kindWord(TK.IO_RECV, requester(r.domid, r.vcpu)), r.seq, r.type);
  tw.put(t0_us, TK.IO_BATCH, tw.now() - t0_us, reqs.length);
}

/** The same for the synchronous answer of the hot path. */
function respondNowTraced(tw: TraceWriter, respond: () => void, req: IoreqRequest): void {
  const t0_us = tw.now();
  respond();
  tw.put(t0_us, kindWord(TK.IO_ANSWER, requester(req.domid, req.vcpu)), req.seq, tw.now() - t0_us);
}

/** An answer on the device model's timeline: from respond()'s entry to its completion. */
async function respondTraced(tw: TraceWriter, inner: IoreqServerEnd, req: IoreqRequest, a: IoreqAnswer): Promise<void> {
  const t0_us = tw.now();
  await inner.respond(req, a);
  tw.put(t0_us, kindWord(TK.IO_ANSWER, requester(req.domid, req.vcpu)), req.seq, tw.now() - t0_us);
}

/** The injected stall NEMESIS_IOREQ.LOSE_FAULT: the answer to a claimed FAULT never reaches its slot (only liveness mode sees it). */
function losesAnswer(m: Machine, req: IoreqRequest): boolean {
  return req.type === IOREQ_TYPE.FAULT && req.buffered !== true && (Atomics.load(m.control.w, CTL.IOREQ_NEMESIS) & NEMESIS_IOREQ.LOSE_FAULT) !== 0;
}
