/**
 * How a device model takes its ioreqs, one workload step at a time: the
 * loop of the GPU device model, and of the benchmark's echo server, so the
 * benchmark times the device model's own path.
 *
 *  - **Polled end** (the deterministic simulator): one batch per step,
 *    nothing awaited; the simulator decides when the device model runs.
 *  - **Hot** (the last step served something, and the end has `recvHot`:
 *    the ring): the step takes what came, or what comes within the end's
 *    spin window, descheduled (`idleNow`), and answers it synchronously.
 *    Nothing is awaited, so between two back-to-back requests the device
 *    model goes through neither the microtask queue nor the event loop,
 *    and the vCPU loop does not await the step either.
 *  - **Otherwise** (cold, nothing came within the spin, a nemesis is on, or
 *    the Redis end): `recv`, awaited descheduled — it may park.
 *
 * Each request is checked against the end's record first (`answered`): a
 * duplicate, or a request a killed predecessor claimed, is answered with the
 * answer already given and not applied twice.
 */
import type { GuestCpu } from '../hypervisor/public/guest.js';
import type { IoreqAnswer, IoreqRequest, IoreqServerEnd } from '../hypervisor/public/ioreq.js';

/** Requests taken at once. */
const BATCH = 256;
/** How long recv may park: the device model's step ends, and its vCPU passes a boundary, at least this often. */
const BLOCK_MS = 20;

export interface IoreqHandler {
  /** Apply a request that was not applied before, and say what to answer. */
  apply(req: IoreqRequest): IoreqAnswer;
  /** Count one request: applied, or a duplicate answered from the record. */
  served?(applied: boolean): void;
}

/** The device model's step: serve what the transport brings (see the module comment). */
export function ioreqLoop(cpu: GuestCpu, end: IoreqServerEnd, h: IoreqHandler): () => void | Promise<void> {
  const { recvNow, recvHot, respondNow, answeredNow } = end;
  let hot = false;

  function serveNow(req: IoreqRequest, respond: NonNullable<IoreqServerEnd['respondNow']>, answered: NonNullable<IoreqServerEnd['answeredNow']>): void {
    const before = answered.call(end, req);
    if (before !== undefined) {
      // Applied already (a duplicate, or our predecessor's): answer the same, do nothing twice.
      respond.call(end, req, before);
      h.served?.(false);
      return;
    }
    respond.call(end, req, h.apply(req));
    h.served?.(true);
  }

  async function stepAsync(): Promise<void> {
    const reqs = await cpu.idle(end.recv(BATCH, BLOCK_MS));
    hot = reqs.length > 0;
    for (const req of reqs) {
      if (respondNow !== undefined && answeredNow !== undefined) {
        serveNow(req, respondNow, answeredNow);
        continue;
      }
      const before = end.answered !== undefined ? await cpu.idle(end.answered(req)) : undefined;
      if (before !== undefined) {
        await cpu.idle(end.respond(req, before));
        h.served?.(false);
        continue;
      }
      await cpu.idle(end.respond(req, h.apply(req)));
      h.served?.(true);
    }
  }

  return () => {
    if (respondNow !== undefined && answeredNow !== undefined) {
      if (recvNow !== undefined) {
        for (const req of recvNow.call(end, BATCH)) serveNow(req, respondNow, answeredNow);
        return;
      }
      if (hot && recvHot !== undefined) {
        const reqs = cpu.idleNow(() => recvHot.call(end, BATCH));
        if (reqs.length > 0) {
          for (const req of reqs) serveNow(req, respondNow, answeredNow);
          return;
        }
        hot = false;
      }
    }
    return stepAsync();
  };
}
