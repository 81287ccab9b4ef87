/**
 * The `ring` transport: the shared ioreq slots themselves (a SAB, like Xen's
 * shared ioreq page) plus an Atomics event word per server owner (the event
 * channel). The device model spins briefly, then waits asynchronously, so a
 * hot server answers in about a spin round trip and an idle one costs one
 * futex wake-up.
 */
import { MAX_IOREQ_SERVERS_PER_DOMAIN, MAX_VCPUS } from '../hypervisor/constants.js';
import { IOS } from '../hypervisor/layout/ioreq-slots.js';
import type { Machine } from '../hypervisor/machine.js';
import { IOREQ_STATE, type IoreqAnswer, type IoreqRequest, type IoreqServerEnd } from '../hypervisor/public/ioreq.js';

const SPINS = 4000;
/** How soon a device model's periodic poll of its ioreq page finds a request whose event it missed. */
const LOST_POLL_MS = 20;

export class RingServerEnd implements IoreqServerEnd {
  readonly kind = 'ring' as const;
  private closed = false;
  duplicates = 0;

  /** Serve every enabled server owned by `owner` (the device model's domain). */
  constructor(
    readonly m: Machine,
    readonly owner: number,
  ) {}

  /** The first scan also takes over requests a predecessor claimed and never answered (it was killed). */
  private takeover = true;

  private scan(max: number, out: IoreqRequest[]): void {
    const slots = this.m.ios.slots;
    const takeover = this.takeover;
    this.takeover = false;
    for (let v = 0; v < MAX_VCPUS && out.length < max; v++) {
      const i = this.m.ios.idx(v);
      const st = Atomics.load(slots, i + IOS.STATE);
      if (st !== IOREQ_STATE.READY && !(takeover && st === IOREQ_STATE.INPROCESS)) continue;
      const target = slots[i + IOS.TARGET]!;
      const server = slots[i + IOS.SERVER]!;
      if (server < 0 || server >= MAX_IOREQ_SERVERS_PER_DOMAIN || this.m.ioreq.owner(target, server) !== this.owner) continue;
      // Claim it (READY → INPROCESS); the fields were published before READY.
      if (st === IOREQ_STATE.READY && Atomics.compareExchange(slots, i + IOS.STATE, IOREQ_STATE.READY, IOREQ_STATE.INPROCESS) !== IOREQ_STATE.READY) continue;
      out.push({
        domid: slots[i + IOS.DOMID]!,
        vcpu: slots[i + IOS.VCPU]!,
        seq: slots[i + IOS.SEQ]!,
        server,
        type: slots[i + IOS.TYPE]!,
        dir: slots[i + IOS.DIR]!,
        gfn: slots[i + IOS.GFN]!,
        offset: slots[i + IOS.OFFSET]!,
        size: slots[i + IOS.SIZE]!,
        data: slots[i + IOS.DATA]! >>> 0,
        slot: v,
      } as IoreqRequest & { slot: number });
    }
  }

  async recv(max: number, block_ms: number): Promise<IoreqRequest[]> {
    const out: IoreqRequest[] = [];
    const ev = this.m.ios.events;
    const deadline = performance.now() + block_ms;
    for (let k = 0; !this.closed; k++) {
      const seen = Atomics.load(ev, this.owner);
      this.scan(max, out);
      this.polled(out);
      if (out.length > 0) return out;
      if (k < SPINS) continue;
      const left = deadline - performance.now();
      if (left <= 0) return out;
      const w = Atomics.waitAsync(ev, this.owner, seen, Math.min(left, 50));
      if (w.async) await w.value;
    }
    return out;
  }

  /** Requests lost earlier whose poll came due. */
  private polled(out: IoreqRequest[]): void {
    if (this.lost.length === 0) return;
    const now = performance.now();
    for (let j = 0; j < this.lost.length; ) {
      if (this.lost[j]!.at <= now) out.push(this.lost.splice(j, 1)[0]!.req);
      else j++;
    }
  }

  async respond(req: IoreqRequest, answer: IoreqAnswer): Promise<void> {
    const slot = (req as IoreqRequest & { slot?: number }).slot;
    const slots = this.m.ios.slots;
    if (slot === undefined) throw new Error('ring: respond to a request this end did not receive');
    const i = this.m.ios.idx(slot);
    // Exactly once: only the claimed request of that sequence number is answered.
    if (Atomics.load(slots, i + IOS.SEQ) !== req.seq || Atomics.load(slots, i + IOS.STATE) !== IOREQ_STATE.INPROCESS) {
      this.duplicates++;
      return;
    }
    slots[i + IOS.DATA] = answer.data | 0;
    slots[i + IOS.FAULT] = answer.fault;
    Atomics.store(slots, i + IOS.STATE, IOREQ_STATE.IORESP_READY);
    Atomics.notify(slots, i + IOS.STATE);
  }

  /**
   * Answered already? On the ring a request is live exactly while its slot
   * holds its sequence number in INPROCESS; anything else means it was
   * answered (or its vCPU gave up), and a second delivery must not be applied.
   */
  async answered(req: IoreqRequest): Promise<IoreqAnswer | undefined> {
    const slot = (req as IoreqRequest & { slot?: number }).slot;
    if (slot === undefined) return undefined;
    const i = this.m.ios.idx(slot);
    const live = Atomics.load(this.m.ios.slots, i + IOS.SEQ) === req.seq && Atomics.load(this.m.ios.slots, i + IOS.STATE) === IOREQ_STATE.INPROCESS;
    return live ? undefined : { data: 0, fault: 0 };
  }

  /**
   * A lost event: the device model missed this request; it stays INPROCESS
   * in its slot (states never move backwards) and the server's periodic
   * poll of its page finds it LOST_POLL_MS later.
   */
  drop(req: IoreqRequest): void {
    this.lost.push({ req, at: performance.now() + LOST_POLL_MS });
  }
  private readonly lost: Array<{ req: IoreqRequest; at: number }> = [];

  async close(): Promise<void> {
    this.closed = true;
  }
}
