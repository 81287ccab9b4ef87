/**
 * The `viewer` workload (docs/gpu.md §12): the last domain of a compositor
 * chain reads the blob pages its compositor re-Mapped into it (nested Map),
 * found through the compositor's share mailbox (share.ts), and checks only
 * what it can check without false failures:
 *  - LIVE: a read that reaches memory holds the pattern the compositor
 *    drew; a read that does not (dom0 evicted the blob, and Revoke took the
 *    nested Map with it) is legal and counted;
 *  - GONE: the nested Map was revoked, so no read may reach memory.
 * A read that does not reach memory is a FAULT its compositor's IOREQ
 * server answered FAIL (the host gives a viewer two servers: dom0's
 * platform one first, answering NONE, then its compositor's), or, once the
 * compositor is gone, the null handler's: never the first server's — a
 * revoked gfn faults to the server of the backend that Mapped it.
 * A slot whose SEQ moved while it was read, or that is being changed (odd),
 * is skipped. A compositor that crashed leaves its mailbox as it was: its
 * teardown revoked the nested Maps, so reads meet the null handler.
 */
import type { GuestCpu } from '../../hypervisor/public/guest.js';
import { ACCESS } from '../../hypervisor/public/guest.js';
import { gfn } from '../../hypervisor/public/types.js';
import { bump } from '../counters.js';
import type { Workload } from '../workload.js';
import { CHECK_WORDS, pattern } from './protocol.js';
import { readShare, SHARE_SLOTS, SHARE_STATE, shareSeq } from './share.js';

interface Report {
  out: Record<string, number>;
  fails: number;
}

export function viewerWorkload(cpu: GuestCpu, compositor: number, report: Report): Workload {
  const got: number[] = [];
  const reached: boolean[] = [];
  /** Per slot, the SEQ of a GONE state already checked: one look is enough, it cannot change without SEQ moving. */
  const goneSeen = new Array<number>(SHARE_SLOTS).fill(-1);
  /** Read one slot; true if it had something stable to check. */
  const look = (res: number): boolean => {
    const s = readShare(cpu.store, compositor, res);
    if ((s.seq & 1) !== 0 || s.state === SHARE_STATE.NONE || (s.state === SHARE_STATE.GONE && goneSeen[res] === s.seq)) return false;
    got.length = 0;
    reached.length = 0;
    for (let p = 0; p < s.count; p++) {
      // Word 0 and the last drawn word of each page.
      const w = p & 1 ? CHECK_WORDS - 1 : 0;
      got.push(cpu.read32(gfn(s.gfn + p), w * 4) | 0);
      reached.push(cpu.last_access === ACCESS.OK);
      // A FAULT answered NONE came from dom0's platform server: not the compositor's, whose Map was revoked there.
      if (cpu.last_access === ACCESS.IOREQ_FAULT) {
        bump(report.out, 'failed_viewer_fault_misrouted');
        report.fails++;
      }
    }
    if (shareSeq(cpu.store, compositor, res) !== s.seq) {
      bump(report.out, 'viewer_raced');
      return false;
    }
    if (s.state === SHARE_STATE.GONE) goneSeen[res] = s.seq;
    for (let p = 0; p < s.count; p++) {
      const w = p & 1 ? CHECK_WORDS - 1 : 0;
      if (s.state === SHARE_STATE.LIVE) {
        if (!reached[p]) bump(report.out, 'viewer_revoked_reads');
        else if (got[p] === pattern(s.value, s.page + p, w)) bump(report.out, 'viewer_reads');
        else {
          bump(report.out, 'viewer_bad_contents');
          report.fails++;
        }
      } else if (reached[p]) {
        // The compositor revoked its share (or dom0 revoked it transitively) and said so: nothing may remain.
        bump(report.out, 'viewer_read_after_revoke');
        report.fails++;
      } else bump(report.out, 'viewer_after_revoke_faults');
    }
    return true;
  };
  let next = Math.floor(cpu.random() * SHARE_SLOTS);
  return {
    step(): void {
      let seen = 0;
      for (let k = 0; k < SHARE_SLOTS; k++) if (look((next + k) % SHARE_SLOTS)) seen++;
      next = (next + 1) % SHARE_SLOTS;
      // Nothing shared right now: do not burn a core the compositor needs.
      if (seen === 0) cpu.sleep(1);
      else cpu.yield();
    },
  };
}
