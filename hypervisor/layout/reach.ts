/**
 * The isolation oracle's record (the `isolation` invariant): which domains
 * may reach each RAM frame right now, and why — kept apart from the p2m,
 * the frame table's owner and the design's registry, so that a bug in any
 * of those cannot also fool it. Each operation that gives a domain a way
 * to a frame records the right before the way exists (before the p2m entry
 * is published), and takes it back only once the way is gone (after the
 * entry's removal was flushed from every TLB). Every guest access with
 * checking on (the MMU's fill and its checked hit path), every hypercall
 * copy and every grant copy asks `may(mfn, d)`; a reach that no right
 * explains is a violation.
 *
 * Rights, by reason (REACH):
 *   OWNER    the frame is d's (assign_pages … free; Steal and Return move it)
 *   GRANT    d grant-mapped it (map_grant_ref … unmap_grant_ref)
 *   FOREIGN  d foreign-mapped it (p2m_add_foreign … its removal)
 *   MAP      a design mapped it into d (Map, nested Map, Steal's implicit Map … Revoke)
 *
 * Layout: per RAM frame SLOTS words, then OVER. A slot word is
 * `(domid + 1) << 20 | reason << 16 | count` (count < 2^16), 0 when empty.
 * OVER counts rights that found no free slot: while it is not 0, the frame
 * is reported as "unchecked" rather than judged (a verdict never claims
 * to have seen what it could not).
 *
 * Who writes: any thread, lock-free. A right is added by a CAS on its
 * slot (count + 1) or on an empty one (0 → count 1), and taken back by a
 * CAS (count − 1; the word goes to 0 with the last one); two threads adding
 * the same (domain, reason) at once may take two slots — `may` and
 * `release` look at every slot. Readers use Atomics.load.
 */
import { atomicMax, CTL } from './control.js';
import { expectBytes } from './region.js';

export const REACH = { OWNER: 1, GRANT: 2, FOREIGN: 3, MAP: 4 } as const;
export type ReachReason = (typeof REACH)[keyof typeof REACH];
export const REACH_NAMES = ['', 'owner', 'grant', 'foreign', 'map'] as const;

const SLOTS = 6;
const OVER = SLOTS;
const WORDS = SLOTS + 1;
const COUNT_MASK = 0xffff;

const key = (d: number, why: number): number => ((d + 1) << 20) | (why << 16);

export class ReachTable {
  readonly w: Int32Array;
  static bytes(nr_frames: number): number {
    return nr_frames * WORDS * 4;
  }
  /**
   * The machine's control words, where a right other than OWNER is counted
   * live and at peak (CTL.PINNED_*, CTL.SHARED_*: the costs a design
   * comparison shows); absent in a table on its own (tests).
   */
  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nr_frames: number,
    private readonly ctl?: Int32Array,
  ) {
    expectBytes('reach', sab, ReachTable.bytes(nr_frames));
    this.w = new Int32Array(sab);
  }

  /** A right of `why` opened (+1) or closed (−1): the gauges of the rights to frames one does not own. */
  private gauge(why: ReachReason, delta: 1 | -1): void {
    const c = this.ctl;
    if (c === undefined || why === REACH.OWNER) return;
    atomicMax(c, CTL.SHARED_PEAK, Atomics.add(c, CTL.SHARED_LIVE, delta) + delta);
    if (why === REACH.GRANT || why === REACH.FOREIGN) atomicMax(c, CTL.PINNED_PEAK, Atomics.add(c, CTL.PINNED_LIVE, delta) + delta);
  }

  /** d may now reach `mfn`, because of `why`. RAM frames only (a BAR has no frame to watch). */
  grant(mfn: number, d: number, why: ReachReason): void {
    if (mfn < 0 || mfn >= this.nr_frames) return;
    const base = mfn * WORDS;
    const k = key(d, why);
    for (;;) {
      let empty = -1;
      let done = false;
      for (let s = 0; s < SLOTS && !done; s++) {
        const v = Atomics.load(this.w, base + s);
        if (v === 0) {
          if (empty < 0) empty = s;
        } else if ((v & ~COUNT_MASK) === k && (v & COUNT_MASK) < COUNT_MASK) {
          done = Atomics.compareExchange(this.w, base + s, v, v + 1) === v;
          if (!done) s--; // raced: look at this slot again
        }
      }
      if (done) return this.gauge(why, 1);
      if (empty < 0) {
        Atomics.add(this.w, base + OVER, 1);
        return this.gauge(why, 1);
      }
      if (Atomics.compareExchange(this.w, base + empty, 0, k | 1) === 0) return this.gauge(why, 1);
    }
  }

  /** The right granted for `why` is gone. */
  release(mfn: number, d: number, why: ReachReason): void {
    if (mfn < 0 || mfn >= this.nr_frames) return;
    const base = mfn * WORDS;
    const k = key(d, why);
    for (let s = 0; s < SLOTS; s++) {
      for (;;) {
        const v = Atomics.load(this.w, base + s);
        if ((v & ~COUNT_MASK) !== k || (v & COUNT_MASK) === 0) break;
        const next = (v & COUNT_MASK) === 1 ? 0 : v - 1;
        if (Atomics.compareExchange(this.w, base + s, v, next) === v) return this.gauge(why, -1);
      }
    }
    // Not in a slot: it went to OVER when it was granted (or was never
    // granted: OVER going negative shows that as a bug of the oracle's callers).
    Atomics.sub(this.w, base + OVER, 1);
    this.gauge(why, -1);
  }

  /** true: some right lets d reach mfn; false: none does; undefined: rights overflowed, not judged. */
  may(mfn: number, d: number): boolean | undefined {
    if (mfn < 0 || mfn >= this.nr_frames) return true;
    const base = mfn * WORDS;
    const dk = (d + 1) << 20;
    for (let s = 0; s < SLOTS; s++) {
      const v = Atomics.load(this.w, base + s);
      if ((v & 0x7ff00000) === dk && (v & COUNT_MASK) !== 0) return true;
    }
    return Atomics.load(this.w, base + OVER) > 0 ? undefined : false;
  }

  /** Who may reach mfn and why, for a violation's text. */
  describe(mfn: number): string {
    const base = mfn * WORDS;
    const out: string[] = [];
    for (let s = 0; s < SLOTS; s++) {
      const v = Atomics.load(this.w, base + s);
      if (v !== 0) out.push(`d${(v >>> 20) - 1} ${REACH_NAMES[(v >>> 16) & 0xf] ?? '?'}×${v & COUNT_MASK}`);
    }
    const over = Atomics.load(this.w, base + OVER);
    if (over !== 0) out.push(`${over} more`);
    return out.length === 0 ? 'nobody' : out.join(', ');
  }

  /** Rights left on any frame (0 after every domain was destroyed). */
  rightsLeft(): number {
    let n = 0;
    for (let i = 0; i < this.w.length; i++) if (this.w[i] !== 0) n++;
    return n;
  }
}
