/**
 * Which transport end a device model gets: the host chooses the transport
 * (`--transport`); the device model only sees IoreqServerEnd.
 */
import type { Machine } from './machine.js';
import type { IoreqAnswer, IoreqRequest, IoreqServerEnd } from './public/ioreq.js';
import { RingServerEnd } from '../transport/ring.js';
import { CTL } from './layout/control.js';
import { TK, kindWord, requester } from './layout/trace.js';
import { tracer, type TraceWriter } from './trace.js';

export type ServerEndFactory = (m: Machine, owner: number) => IoreqServerEnd;

let factory: ServerEndFactory = (m, owner) => new RingServerEnd(m, owner);

/** Installed by the vCPU worker when the host runs the redis transport. */
export function setServerEndFactory(f: ServerEndFactory): void {
  factory = f;
}

export const DM_KILLED = 'device model killed (chaos)';

/**
 * The end a device model gets, wrapped so the host can kill it (chaos
 * `kill-device-model`): the kill lands right after the device model has
 * claimed requests and before it answers any — the worst moment for the
 * transport. The host restarts the device model; its successor must
 * complete those requests exactly once.
 */
export function makeServerEnd(m: Machine, owner: number): IoreqServerEnd {
  const inner = factory(m, owner);
  const killable: IoreqServerEnd = {
    kind: inner.kind,
    async recv(max, block_ms) {
      const reqs = await inner.recv(max, block_ms);
      // The device model's receipt of each request, on its vCPU's timeline, whatever the transport.
      const tw = tracer;
      if (tw !== null && reqs.length > 0) {
        const t0_us = tw.now();
        for (const r of reqs) tw.put(tw.now(), kindWord(TK.IO_RECV, requester(r.domid, r.vcpu)), r.seq, r.type);
        tw.put(t0_us, TK.IO_BATCH, tw.now() - t0_us, reqs.length);
      }
      if (reqs.length > 0 && Atomics.compareExchange(m.control.w, CTL.KILL_DM, 1, 0) === 1) throw new Error(DM_KILLED);
      return reqs;
    },
    respond(req, a) {
      const tw = tracer;
      return tw === null ? inner.respond(req, a) : respondTraced(tw, inner, req, a);
    },
    close: () => inner.close(),
  };
  if (inner.answered !== undefined) killable.answered = (req) => inner.answered!(req);
  return killable;
}

/** An answer on the device model's timeline: from respond()'s entry to its completion. */
async function respondTraced(tw: TraceWriter, inner: IoreqServerEnd, req: IoreqRequest, a: IoreqAnswer): Promise<void> {
  const t0_us = tw.now();
  await inner.respond(req, a);
  tw.put(t0_us, kindWord(TK.IO_ANSWER, requester(req.domid, req.vcpu)), req.seq, tw.now() - t0_us);
}
