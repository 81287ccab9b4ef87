/**
 * The compositor chain (docs/gpu.md §12): a `render` frontend with
 * `share_with` re-Maps pages of a blob it received from dom0 into the viewer
 * it serves (a nested Map), and tells the viewer where through a mailbox in
 * the shared xenstore words, as a Linux compositor would publish a buffer
 * through xenstore or a protocol page.
 *
 * Mailbox: per compositor domid, per render resource (0…SHARE_SLOTS−1), three
 * words, written only by the compositor vCPU that owns the resource:
 *   SEQ    even when stable; odd while the compositor changes the share
 *   WHERE  state (bits 0–1: NONE, LIVE, GONE) | count << 2 (1…4)
 *          | blob page of the first shared page << 5 (0…7) | viewer gfn << 8
 *   VALUE  the pattern value the blob was drawn with (pattern(VALUE, page, word))
 * Publish protocol (a seqlock): 1. SEQ := SEQ+1 (odd, Atomics.store);
 * 2. change the mapping (nested dm_map, dm_revoke, UNMAP_BLOB);
 * 3. store WHERE and VALUE; 4. SEQ := SEQ+1 (even). A reader loads SEQ,
 * WHERE, VALUE, reads the pages, loads SEQ again, and believes what it read
 * only when both SEQ loads are the same even value.
 *
 * LIVE promises the pages hold the pattern *if* a read reaches memory: dom0's
 * MMU notifier may Revoke the blob at any time, and its transitive Revoke
 * takes the nested Map with it (a read then meets the null handler: legal).
 * GONE promises the nested Map was revoked (by the compositor's own Revoke,
 * or transitively by UNMAP_BLOB): a read that still reaches memory is a use
 * after revoke the guest itself can see.
 */
import type { GuestCpu } from '../../hypervisor/public/guest.js';
import { domid, gfn } from '../../hypervisor/public/types.js';
import { EEXIST, EPERM, ESRCH } from '../../hypervisor/public/errno.js';
import { XS_KEY, xsRead } from '../../hypervisor/public/xenstore.js';
import { bump } from '../counters.js';

/** Render resources a compositor can share: 4 vCPUs × 4 resources (driver.ts RES_PER_VCPU). */
export const SHARE_SLOTS = 16;
/** Pages of a blob shared at most; SHARE_SLOTS × this fills the viewer's share window. */
export const SHARE_MAX_PAGES = 4;
const SHARE_WORDS = 3;
const SH = { SEQ: 0, WHERE: 1, VALUE: 2 } as const;
export const SHARE_STATE = { NONE: 0, LIVE: 1, GONE: 2 } as const;
/** Store words from here on are the share mailboxes: above grant-ping's (0…32767), below race.ts's (40 000…). */
const SHARE_AREA = 33_000;
const SHARE_DOMAINS = 128;
if (SHARE_AREA + SHARE_DOMAINS * SHARE_SLOTS * SHARE_WORDS > 40_000) throw new Error('share mailboxes overlap race.ts');

export function shareSlot(compositor: number, res: number): number {
  if (!Number.isInteger(res) || res < 0 || res >= SHARE_SLOTS || compositor < 0 || compositor >= SHARE_DOMAINS) {
    throw new Error(`share slot: compositor d${compositor} resource ${res} out of range`);
  }
  return SHARE_AREA + (compositor * SHARE_SLOTS + res) * SHARE_WORDS;
}

export interface Published {
  seq: number;
  state: number;
  count: number;
  page: number;
  gfn: number;
  value: number;
}

/** Reader side: one consistent-looking load of a slot (check `seq` again after using it). */
export function readShare(store: Int32Array, compositor: number, res: number): Published {
  const b = shareSlot(compositor, res);
  const seq = Atomics.load(store, b + SH.SEQ);
  const w = Atomics.load(store, b + SH.WHERE);
  const value = Atomics.load(store, b + SH.VALUE);
  return { seq, state: w & 3, count: (w >>> 2) & 7, page: (w >>> 5) & 7, gfn: w >>> 8, value };
}

export function shareSeq(store: Int32Array, compositor: number, res: number): number {
  return Atomics.load(store, shareSlot(compositor, res) + SH.SEQ);
}

/** What the toolstack tells a compositor: the viewer it serves and its share window there. */
export interface ShareEnv {
  viewer: number;
  /** SHARE_SLOTS × SHARE_MAX_PAGES gfns of the viewer, empty at boot. */
  window_gfn: number;
  window_pages: number;
  /** The first page of its backend's BAR, if it has one: MMIO the compositor holds no iomem permission for (probeBar). */
  bar_mfn?: number;
}

interface Report {
  out: Record<string, number>;
  fails: number;
}

/** The compositor's side, used by renderWorkload for the resources of one vCPU. */
export class Sharer {
  private readonly me: number;
  constructor(
    private readonly cpu: GuestCpu,
    private readonly env: ShareEnv,
    private readonly report: Report,
  ) {
    this.me = cpu.domid as number;
    if (env.window_pages < SHARE_SLOTS * SHARE_MAX_PAGES) throw new Error(`share window of ${env.window_pages} gfns is below ${SHARE_SLOTS * SHARE_MAX_PAGES}`);
  }

  private begin(res: number): number {
    const b = shareSlot(this.me, res);
    const seq = Atomics.load(this.cpu.store, b + SH.SEQ);
    if ((seq & 1) !== 0) throw new Error(`share slot ${res} left odd: two writers`);
    Atomics.store(this.cpu.store, b + SH.SEQ, seq + 1);
    return b;
  }

  private end(b: number, state: number, where: { count: number; page: number; gfn: number }, value: number): void {
    const s = this.cpu.store;
    Atomics.store(s, b + SH.WHERE, state === SHARE_STATE.NONE ? 0 : state | (where.count << 2) | (where.page << 5) | (where.gfn << 8));
    Atomics.store(s, b + SH.VALUE, value);
    Atomics.store(s, b + SH.SEQ, Atomics.load(s, b + SH.SEQ) + 1);
  }

  /**
   * Catalogue `bar-map-unheld` (docs/verification.md): a Map of a page of
   * the backend's BAR — MMIO this compositor holds no iomem permission for
   * — into the viewer, at its share slot for `res` (empty: not shared
   * now). Map checks the *mapping backend's* iomem_caps (DESIGN §4; Xen's
   * iomem_access_permitted in XEN_DOMCTL_memory_mapping): -EPERM. One that
   * succeeds is an attack that worked (it is revoked again at once).
   */
  probeBar(res: number): void {
    const mfn = this.env.bar_mfn;
    if (mfn === undefined) return;
    const r = this.cpu.hc.dm_map(domid(this.env.viewer), { kind: 'bar', mfn }, 1, gfn(this.env.window_gfn + res * SHARE_MAX_PAGES), 'mmio_direct');
    if (r.rc === -EPERM) bump(this.report.out, 'bar_map_unheld_refused');
    else if (r.rc === 0) {
      bump(this.report.out, 'succeeded_bar-map-unheld');
      this.report.fails++;
      this.cpu.hc.dm_revoke({ id: r.id });
    } else if (r.rc !== -ESRCH && r.rc !== -EEXIST) {
      bump(this.report.out, `failed_bar_map_unheld_got_${r.rc}`);
      this.report.fails++;
    }
  }

  /**
   * Re-Map 1…SHARE_MAX_PAGES pages of the blob at frontend gfns
   * `blob_gfn`… (drawn with `value`) into the viewer, and publish them.
   * Returns the nested mapping's id, or 0 when the Map was refused (an
   * eviction took the source meanwhile, the viewer died: not failures).
   */
  share(res: number, blob_gfn: number, pages: number, value: number): Shared | undefined {
    const cpu = this.cpu;
    const count = 1 + Math.floor(cpu.random() * Math.min(pages, SHARE_MAX_PAGES));
    const page = Math.floor(cpu.random() * (pages - count + 1));
    const at = this.env.window_gfn + res * SHARE_MAX_PAGES;
    const b = this.begin(res);
    const r = cpu.hc.dm_map(domid(this.env.viewer), { kind: 'ram', gfn: gfn(blob_gfn + page) }, count, gfn(at), 'mmio_direct');
    if (r.rc !== 0) {
      // -EINVAL: evicted meanwhile (the source is revoked); -ESRCH: the viewer died;
      // -EEXIST: the gfns are still taken (only a nested Map that outlived its Revoke does that).
      bump(this.report.out, r.rc === -17 ? 'share_eexist' : 'share_refused');
      this.end(b, SHARE_STATE.NONE, { count, page, gfn: at }, 0);
      return undefined;
    }
    this.end(b, SHARE_STATE.LIVE, { count, page, gfn: at }, value);
    bump(this.report.out, 'shares');
    return { res, id: r.id, where: { count, page, gfn: at }, value };
  }

  /**
   * The compositor takes its share back itself (before the blob goes).
   * Revoke of a Map it made "never fails for valid arguments" (the seed),
   * even when the viewer died meanwhile and its teardown took the Map.
   */
  revoke(s: Shared): void {
    const b = this.begin(s.res);
    const rc = this.cpu.hc.dm_revoke({ id: s.id });
    this.end(b, rc === 0 ? SHARE_STATE.GONE : SHARE_STATE.NONE, s.where, s.value);
    if (rc === 0) bump(this.report.out, 'shares_revoked');
    else {
      bump(this.report.out, `failed_share_revoke_got_${rc}`);
      this.report.fails++;
    }
  }

  private gone = false;

  /**
   * Once the toolstack has destroyed the viewer (xenstore's @releaseDomain)
   * and it is gone for good (XENMEM_current_reservation of it: ESRCH), the
   * compositor revokes its whole share window by range, once: its Maps
   * there went with the viewer's teardown, and Revoke of a frontend that
   * is gone must succeed anyway (the seed).
   */
  releaseIfGone(): void {
    if (this.gone || xsRead(this.cpu.store, this.env.viewer, XS_KEY.RELEASED) === 0) return;
    if (this.cpu.hc.current_reservation(domid(this.env.viewer)) !== -ESRCH) return;
    this.gone = true;
    const rc = this.cpu.hc.dm_revoke({ fe: domid(this.env.viewer), gfn: gfn(this.env.window_gfn), count: this.env.window_pages });
    if (rc === 0) bump(this.report.out, 'viewer_gone_revoked');
    else {
      bump(this.report.out, `failed_viewer_gone_revoke_got_${rc}`);
      this.report.fails++;
    }
  }

  /**
   * Leave the share to the transitive Revoke of the blob: `unmap` runs
   * UNMAP_BLOB (dom0 Revokes the compositor's mapping and with it the
   * nested one) and returns its result. If dom0 did not execute it, the
   * compositor revokes its share itself.
   */
  leave(s: Shared, unmap: () => number): number {
    const b = this.begin(s.res);
    const rc = unmap();
    let gone = rc === 0;
    if (!gone) gone = this.cpu.hc.dm_revoke({ id: s.id }) === 0;
    this.end(b, gone ? SHARE_STATE.GONE : SHARE_STATE.NONE, s.where, s.value);
    bump(this.report.out, rc === 0 ? 'shares_left_to_unmap' : 'shares_revoked');
    return rc;
  }
}

export interface Shared {
  res: number;
  id: number;
  where: { count: number; page: number; gfn: number };
  value: number;
}
