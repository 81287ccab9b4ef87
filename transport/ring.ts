/**
 * The `ring` transport: the shared ioreq slots themselves (a SAB, like Xen's
 * shared ioreq page) plus, per server owner, an Atomics event word (the
 * event channel) and a pending bitmap saying which slots to look at. The
 * device model spins briefly, then parks on the event word (a plain futex
 * wait), so a hot server answers in about a spin round trip and an idle
 * one costs one futex wake-up. A vCPU notifies the event word only while the server is
 * parked, and the server the vCPU only while it waits (layout/ioreq-slots.ts).
 *
 * Two ways in: `recv` (a promise: it may park) and, for a hot device model,
 * `recvHot` + `respondNow` (synchronous: no microtask, no event-loop turn
 * between two back-to-back requests; docs/ioreq.md §7).
 */
import { isMainThread } from 'node:worker_threads';
import { MAX_IOREQ_SERVERS_PER_DOMAIN, MAX_VCPUS } from '../hypervisor/layout/constants.js';
import { IOS, PENDING_WORDS } from '../hypervisor/layout/ioreq-slots.js';
import type { Machine } from '../hypervisor/xen/machine.js';
import { sched } from '../hypervisor/xen/platform.js';
import { BUF, BUF_SLOTS, SRV_STATE } from '../hypervisor/layout/ioreq.js';
import { IOREQ_DIR, IOREQ_STATE, type IoreqAnswer, type IoreqRequest, type IoreqServerEnd } from '../hypervisor/public/ioreq.js';

/**
 * How long the device model keeps polling before it parks, while it is
 * hot: long enough to cover a round trip of the vCPU it serves (so a busy
 * vCPU finds it awake), short enough to give the core back soon.
 */
const SPIN_MS = 0.05;
/**
 * Hot: the last request came within this long of the answer before it (a
 * vCPU issuing ioreqs back to back). A cold device model parks at once: a
 * spin would only keep a core from the vCPU it has just woken.
 */
const HOT_GAP_MS = 0.2;
/** Device models run on vCPU worker threads, which may block; a main thread may not. */
const SYNC_PARK = !isMainThread;
/** How soon a device model's periodic poll of its ioreq page finds a request whose event it missed. */
export const LOST_POLL_MS = 20;

/** The scheduler's clock (simulated time under the deterministic simulator), in ms. */
const nowMs = (): number => sched().now_us() / 1000;

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
  /** When the next full scan of every slot is due (the periodic poll of the ioreq page). */
  private fullScanAt = 0;

  /**
   * Claim this owner's READY requests: from the pending bitmap, or — on
   * the first scan (takeover) and every LOST_POLL_MS — from every slot, so
   * a request whose hint went astray (its server changed hands) waits at
   * most one poll period.
   */
  protected scan(max: number, out: IoreqRequest[], now = nowMs()): void {
    if (this.takeover || now >= this.fullScanAt) {
      this.fullScanAt = now + LOST_POLL_MS;
      const takeover = this.takeover;
      this.takeover = false;
      this.findBufServers();
      Atomics.store(this.m.ios.bufPending, this.owner, 0);
      for (const b of this.bufServers) this.drainBuf(b.target, b.server, out);
      for (let v = 0; v < MAX_VCPUS && out.length < max; v++) this.claim(v, takeover, out);
      return;
    }
    if (Atomics.load(this.m.ios.bufPending, this.owner) !== 0) {
      Atomics.store(this.m.ios.bufPending, this.owner, 0);
      if (this.bufServers.length === 0) this.findBufServers();
      for (const b of this.bufServers) this.drainBuf(b.target, b.server, out);
    }
    const pend = this.m.ios.pending;
    const base = this.owner * PENDING_WORDS;
    for (let w = 0; w < PENDING_WORDS; w++) {
      if (Atomics.load(pend, base + w) === 0) continue;
      let bits = Atomics.exchange(pend, base + w, 0);
      while (bits !== 0) {
        const low = bits & -bits;
        bits ^= low;
        // Full: hand the hint back for the next recv.
        if (out.length >= max) Atomics.or(pend, base + w, low);
        else this.claim(w * 32 + 31 - Math.clz32(low), false, out);
      }
    }
  }

  /** Claim slot v if it holds a READY request for one of this owner's servers (or, on takeover, an INPROCESS one). */
  private claim(v: number, takeover: boolean, out: IoreqRequest[]): void {
    const slots = this.m.ios.slots;
    const i = this.m.ios.idx(v);
    const st = Atomics.load(slots, i + IOS.STATE);
    if (st !== IOREQ_STATE.READY && !(takeover && st === IOREQ_STATE.INPROCESS)) return;
    const target = slots[i + IOS.TARGET]!;
    const server = slots[i + IOS.SERVER]!;
    if (server < 0 || server >= MAX_IOREQ_SERVERS_PER_DOMAIN || this.m.ioreq.owner(target, server) !== this.owner) return;
    // Claim it (READY → INPROCESS); the fields were published before READY.
    if (st === IOREQ_STATE.READY && Atomics.compareExchange(slots, i + IOS.STATE, IOREQ_STATE.READY, IOREQ_STATE.INPROCESS) !== IOREQ_STATE.READY) return;
    // The posted writes this vCPU made before it are complete now: they go first (QEMU's handle_buffered_iopage).
    if (this.m.ioreq.bufioreq(target, server)) this.drainBuf(target, server, out);
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

  /** This owner's servers that have a buffered ring (found again at each full scan: servers come and go). */
  private bufServers: Array<{ target: number; server: number }> = [];
  /** Per buffered ring (by its index in the layout): the next position to take; READ at first (takeover). */
  private readonly bufCursor = new Map<number, number>();

  private findBufServers(): void {
    const io = this.m.ioreq;
    this.bufServers = [];
    for (let t = 0; t < this.m.nd; t++) {
      for (let s = 0; s < MAX_IOREQ_SERVERS_PER_DOMAIN; s++) {
        if (io.state(t, s) === SRV_STATE.ENABLED && io.owner(t, s) === this.owner && io.bufioreq(t, s)) this.bufServers.push({ target: t, server: s });
      }
    }
  }

  /**
   * Take every entry of server s of `target`'s buffered ring from this
   * end's cursor up to WRITE, in position order (a ring holds at most
   * BUF_SLOTS: `out` may outgrow recv's `max` by that much).
   */
  private drainBuf(target: number, server: number, out: IoreqRequest[]): void {
    const io = this.m.ioreq;
    const buf = io.buf;
    const b = io.bufIdx(target, server);
    const read = Atomics.load(buf, b + BUF.READ);
    let cur = this.bufCursor.get(b) ?? read;
    const ahead = (cur - read) | 0;
    if (ahead < 0 || ahead > BUF_SLOTS) cur = read; // the server was created again
    const write = Atomics.load(buf, b + BUF.WRITE);
    while (cur !== write) {
      const e = io.bufEntry(b, cur);
      const meta = buf[e + BUF.META]!;
      out.push({
        domid: target,
        vcpu: meta >>> 8,
        seq: cur,
        server,
        type: (meta >>> 4) & 0xf,
        dir: IOREQ_DIR.WRITE,
        gfn: buf[e + BUF.GFN]!,
        offset: buf[e + BUF.OFFSET]!,
        size: meta & 0xf,
        data: buf[e + BUF.DATA]! >>> 0,
        buffered: true,
      });
      cur = (cur + 1) | 0;
    }
    this.bufCursor.set(b, cur);
  }

  async recv(max: number, block_ms: number): Promise<IoreqRequest[]> {
    // The device model hands this promise to GuestCpu.idle, which marks its
    // vCPU BLOCKED only once recv has returned it; everything below the
    // await runs BLOCKED, so no TLB shootdown waits for the spin or the park.
    await Promise.resolve();
    const out: IoreqRequest[] = [];
    const ev = this.m.ios.events;
    const t0 = nowMs();
    const deadline = t0 + block_ms;
    while (!this.closed) {
      const seen = Atomics.load(ev, this.owner);
      this.scan(max, out);
      this.polled(out);
      const now = nowMs();
      if (out.length > 0) {
        this.hot = now - this.answeredAt < HOT_GAP_MS;
        return out;
      }
      if (this.hot && now - t0 < SPIN_MS) continue;
      const left = deadline - now;
      if (left <= 0) break;
      // Wake up for the next full scan (and the lost requests' poll) too.
      const ms = Math.min(left, Math.max(0.05, this.fullScanAt - nowMs()));
      if (SYNC_PARK) this.park(seen, ms);
      else await this.parkAsync(seen, ms);
    }
    // Nothing came: let this thread's event loop turn once before the device model asks again.
    if (SYNC_PARK) await new Promise((r) => setImmediate(r));
    return out;
  }

  /**
   * The hot path: the requests there now or — while the end is hot — within
   * SPIN_MS, synchronously and without parking; `recv`'s spin, minus the
   * promise. Empty when nothing came: the end is cold from then on (its spin
   * is spent), and the device model goes back to `recv`, which parks at once.
   * The caller must be descheduled meanwhile (GuestCpu.idleNow), as in `recv`.
   */
  recvHot(max: number): IoreqRequest[] {
    const out: IoreqRequest[] = [];
    const pend = this.m.ios.pending;
    const base = this.owner * PENDING_WORDS;
    const t0 = nowMs();
    let now = t0;
    for (;;) {
      this.scan(max, out, now);
      this.polled(out);
      if (out.length > 0) {
        this.hot = now - this.answeredAt < HOT_GAP_MS;
        return out;
      }
      if (!this.hot || this.closed) return out;
      // Between two scans, watch the pending words only, and read the clock every 16 looks.
      let news = false;
      for (let j = 0; j < 16 && !news; j++) {
        for (let w = 0; w < PENDING_WORDS; w++) if (Atomics.load(pend, base + w) !== 0) news = true;
        if (Atomics.load(this.m.ios.bufPending, this.owner) !== 0) news = true;
      }
      now = nowMs();
      if (!news && now - t0 >= SPIN_MS) {
        this.hot = false;
        return out;
      }
    }
  }

  /**
   * Sleep on the event word as a plain futex wait: a vCPU's notify wakes
   * this thread directly, where a waitAsync waiter is woken through its
   * event loop (a task posted to it), which costs several times a futex
   * wake-up. The vCPU running the device model is BLOCKED meanwhile
   * (GuestCpu.idle), so no shootdown waits for it.
   */
  private park(seen: number, ms: number): void {
    const parked = this.m.ios.parked;
    // Parked: from here vCPUs notify the event word (layout/ioreq-slots.ts).
    Atomics.add(parked, this.owner, 1);
    try {
      Atomics.wait(this.m.ios.events, this.owner, seen, ms);
    } finally {
      Atomics.sub(parked, this.owner, 1);
    }
  }

  /** The same where a thread must not block (a main thread). */
  private async parkAsync(seen: number, ms: number): Promise<void> {
    const parked = this.m.ios.parked;
    Atomics.add(parked, this.owner, 1);
    try {
      const w = Atomics.waitAsync(this.m.ios.events, this.owner, seen, ms);
      if (w.async) await w.value;
    } finally {
      Atomics.sub(parked, this.owner, 1);
    }
  }

  /** Requests lost earlier whose poll came due. */
  protected polled(out: IoreqRequest[]): void {
    if (this.lost.length === 0) return;
    const now = nowMs();
    for (let j = 0; j < this.lost.length; ) {
      if (this.lost[j]!.at <= now) out.push(this.lost.splice(j, 1)[0]!.req);
      else j++;
    }
  }

  /** Whether the device model spins before it parks (see HOT_GAP_MS), and when it last answered. */
  private hot = true;
  private answeredAt = -Infinity;

  async respond(req: IoreqRequest, answer: IoreqAnswer): Promise<void> {
    this.respondNow(req, answer);
  }

  /** `respond`, synchronous: the ring's answer is a few stores and at most a notify. */
  respondNow(req: IoreqRequest, answer: IoreqAnswer): void {
    this.answeredAt = nowMs();
    if (req.buffered === true) {
      // Applied: its place in the ring is free (in position order; anything else was applied before).
      const r = this.m.ioreq.bufIdx(req.domid, req.server) + BUF.READ;
      if (Atomics.compareExchange(this.m.ioreq.buf, r, req.seq, (req.seq + 1) | 0) !== req.seq) this.duplicates++;
      return;
    }
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
    this.m.ios.wakeVcpu(slot);
  }

  /**
   * Answered already? On the ring a request is live exactly while its slot
   * holds its sequence number in INPROCESS; anything else means it was
   * answered (or its vCPU gave up), and a second delivery must not be applied.
   */
  async answered(req: IoreqRequest): Promise<IoreqAnswer | undefined> {
    return this.answeredNow(req);
  }

  answeredNow(req: IoreqRequest): IoreqAnswer | undefined {
    if (req.buffered === true) {
      const read = Atomics.load(this.m.ioreq.buf, this.m.ioreq.bufIdx(req.domid, req.server) + BUF.READ);
      return ((read - req.seq) | 0) > 0 ? { data: 0, fault: 0 } : undefined;
    }
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
    if (req.buffered === true) throw new Error('ring: a buffered ioreq cannot be dropped (its ring is applied in order)');
    this.lost.push({ req, at: nowMs() + LOST_POLL_MS });
  }
  private readonly lost: Array<{ req: IoreqRequest; at: number }> = [];

  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * The ring end of the deterministic simulator (hypervisor/sim): no spin, no
 * park — the simulator gives the device model its turn, and each turn takes
 * what the ioreq page holds now. Same slots, same claim and answer rules.
 */
export class PolledRingServerEnd extends RingServerEnd {
  recvNow(max: number): IoreqRequest[] {
    const out: IoreqRequest[] = [];
    this.scan(max, out);
    this.polled(out);
    return out;
  }
}
