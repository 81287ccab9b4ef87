/**
 * The frontend's virtio-GPU driver and its workloads: `render` (blobs:
 * create, map, draw, check what dom0 sees, release — and nothing after),
 * `compute-svm` (userptr: the pages are Stolen, the GPU writes them, they
 * are Returned, the guest checks every word), `adversary` (docs/semantics.md §7).
 */
import { XS_KEY, xsRead } from '../../hypervisor/public/xenstore.js';
import type { GuestCpu } from '../../hypervisor/public/guest.js';
import { ACCESS } from '../../hypervisor/public/guest.js';
import { domid, gfn, grantRef, type Gfn } from '../../hypervisor/public/types.js';
import { ENOENT } from '../../hypervisor/public/errno.js';
import type { GpuFrontendEnv, Workload } from '../workload.js';
import { bump as count } from '../counters.js';
import { Sharer, type ShareEnv, type Shared } from './share.js';
import { bufferRef, FrontendSharing } from './sharing.js';
import { CHECK_WORDS, CMD, CMD_STATUS, CMD_WORDS, DESIGN_ATTACKS, MAX_BLOB_PAGES, OP, pattern, QUEUE_GFN, QUEUE_REF, REG_DOORBELL, REG_QUEUE, REG_STATUS } from './protocol.js';

interface Report {
  out: Record<string, number>;
  samples: Record<string, number[]>;
  fails: number;
}
const bump = (r: Report, k: string, n = 1): void => count(r.out, k, n);
/** A driver flag page: word 0 is 1 once vCPU 0 set the device up. */
const FLAGS_GFN = 1;

export class GpuDriver {
  readonly mmio: Gfn;
  ready = false;
  constructor(
    readonly cpu: GuestCpu,
    readonly env: GpuFrontendEnv,
    readonly backend: number,
  ) {
    this.mmio = gfn(env.mmio_gfn);
  }

  /** vCPU 0 grants the queue page and tells the device; the others wait for it. */
  init(): boolean {
    const cpu = this.cpu;
    if ((cpu.vcpu as number) === 0) {
      cpu.grants.grant_access(grantRef(QUEUE_REF), domid(this.backend), gfn(QUEUE_GFN), false);
      cpu.write32(this.mmio, REG_QUEUE, QUEUE_REF);
      if (cpu.read32(this.mmio, REG_STATUS) !== 1) return false;
      cpu.write32(gfn(FLAGS_GFN), 0, 1);
    } else if (cpu.read32(gfn(FLAGS_GFN), 0) !== 1) {
      cpu.yield();
      return false;
    }
    this.ready = true;
    return true;
  }

  /** One command through the queue slot of this vCPU and a doorbell ioreq. */
  cmd(op: number, res: number, a0 = 0, a1 = 0): number {
    const cpu = this.cpu;
    const base = (cpu.vcpu as number) * CMD_WORDS * 4;
    const q = gfn(QUEUE_GFN);
    cpu.write32(q, base + CMD.OP * 4, op);
    cpu.write32(q, base + CMD.RES * 4, res);
    cpu.write32(q, base + CMD.A0 * 4, a0);
    cpu.write32(q, base + CMD.A1 * 4, a1);
    cpu.write32(q, base + CMD.STATUS * 4, CMD_STATUS.PENDING);
    cpu.write32(this.mmio, REG_DOORBELL, cpu.vcpu as number);
    // The doorbell is posted: the flushing read makes sure it was applied.
    cpu.read32(this.mmio, REG_STATUS);
    const st = cpu.read32(q, base + CMD.STATUS * 4);
    const rc = cpu.read32(q, base + CMD.RESULT * 4) | 0;
    if (st === CMD_STATUS.DONE) return rc;
    return st === CMD_STATUS.ERROR ? Math.min(rc, -1) : -5; // not executed (EIO)
  }
}

/** The topology's `buffers` / `buffer_pages`: how many buffers a guest cycles through, and their largest size; `resident`: they stay shared. */
export interface BufferSizes {
  buffers: number;
  buffer_pages: number;
  resident?: boolean;
}

/** Resources per vCPU of each kind (the device has 16 render and 16 userptr resources per guest). */
const RES_PER_VCPU = 4;
/** Render resources per guest (0…15). */
const RENDER_RESOURCES = 16;

/** This vCPU's share of the domain's buffers: at least one, at most `per`. */
function share(cpu: GuestCpu, buffers: number, per = RES_PER_VCPU): number {
  const v = cpu.vcpu as number;
  const n = Math.max(1, cpu.nr_vcpus);
  const mine = Math.floor(buffers / n) + (v < buffers % n ? 1 : 0);
  return Math.max(1, Math.min(per, mine));
}

export function renderWorkload(cpu: GuestCpu, env: GpuFrontendEnv, backend: number, hasBar: boolean, report: Report, sizes: BufferSizes, shareEnv?: ShareEnv, design?: string): Workload {
  const drv = new GpuDriver(cpu, env, backend);
  const sh = new FrontendSharing(cpu, env, backend, report, design);
  // The compositor chain re-Maps what it received: a nested Map, the primitives' only.
  const sharer = shareEnv !== undefined && sh.design === 'primitives' ? new Sharer(cpu, shareEnv, report) : undefined;
  const v = cpu.vcpu as number;
  // Resident buffers (a compositor's window surfaces, `resident`) stay shared between rounds, each of the full
  // size: the guest's render resources are split among its vCPUs, and each round redraws one of this vCPU's.
  const resident = sizes.resident === true;
  const per = resident ? Math.floor(RENDER_RESOURCES / Math.max(1, cpu.nr_vcpus)) : RES_PER_VCPU;
  const nres = share(cpu, sizes.buffers, per);
  const maxPages = Math.min(MAX_BLOB_PAGES, sizes.buffer_pages);
  /** Resident buffers still shared from an earlier round: resource → its pages and what was drawn. */
  const held = new Map<number, { pages: number; value: number }>();
  let i = 0;

  /**
   * Take a drawn buffer back (UNMAP_BLOB, through the design's withdraw) and
   * check what is left: the guest's own pages with its drawing (grants,
   * pins), or nothing (Revoke, reclaim; a zero page where the lender lends
   * those); then DESTROY_BLOB. False if the device never executed the unmap.
   */
  const release = (res: number, pages: number, value: number, shared: Shared | undefined): boolean => {
    const at = sh.bufferGfn(res);
    const unmap = (): number => sh.withdraw(res, pages, () => drv.cmd(OP.UNMAP_BLOB, res));
    const unmapped = shared !== undefined && sharer !== undefined ? sharer.leave(shared, unmap) : unmap();
    if (unmapped !== 0) {
      // Not executed (the device model is going away with the host): nothing to check.
      bump(report, 'unmap_fail');
      drv.cmd(OP.DESTROY_BLOB, res);
      return false;
    }
    if (sh.ownRam) {
      // The pages were the guest's all along: it reaches them, with what it drew (dom0 checked it can no longer).
      const got = cpu.read32(gfn(at), 0) | 0;
      if (cpu.last_access !== ACCESS.OK || got !== pattern(value, 0, 0)) report.fails++;
      else bump(report, 'own_pages_kept');
    } else sh.checkGone(at); // …and nothing after Revoke.
    drv.cmd(OP.DESTROY_BLOB, res);
    return true;
  };

  return {
    step() {
      if (!drv.ready && !drv.init()) return;
      if (v === 0) sharer?.releaseIfGone();
      const res = v * per + (i++ % nres);
      const kept = held.get(res);
      if (kept !== undefined) {
        held.delete(res);
        if (!release(res, kept.pages, kept.value, undefined)) return;
      }
      const pages = resident ? maxPages : 1 + Math.floor(cpu.random() * maxPages);
      const bar = hasBar && sh.bar && cpu.random() < 0.3;
      if (drv.cmd(OP.CREATE_BLOB, res, pages, bar ? 1 : 0) !== 0) {
        bump(report, 'create_fail');
        return;
      }
      const at = sh.bufferGfn(res);
      sh.offer(res, at, pages);
      if (drv.cmd(OP.MAP_BLOB, res, at) !== 0) {
        bump(report, 'map_fail');
        sh.cancel(res, pages);
        drv.cmd(OP.DESTROY_BLOB, res);
        return;
      }
      // Draw. An eviction by dom0's MMU notifier makes an access fault; the
      // device model maps the blob back (policy remap) and the access retries.
      const value = (cpu.random() * 0x7fffffff) | 0;
      // A write that never reached memory (evicted again after every remap,
      // past the MMU's retries: it completes as a FAULT ioreq, dropped) leaves
      // its page unchecked rather than failed.
      const unwritten = new Array<boolean>(pages).fill(false);
      for (let p = 0; p < pages; p++) {
        for (let w = 0; w < CHECK_WORDS; w++) {
          cpu.write32(gfn(at + p), w * 4, pattern(value, p, w));
          if (cpu.last_access !== ACCESS.OK) unwritten[p] = true;
        }
      }
      let lost = 0;
      for (let p = 0; p < pages; p++) {
        const got = cpu.read32(gfn(at + p), 0) | 0;
        if (cpu.last_access !== ACCESS.OK || unwritten[p] === true) lost++;
        else if (got !== pattern(value, p, 0)) report.fails++;
      }
      if (lost > 0) bump(report, 'draw_faults', lost);
      // Every byte the guest drew is what dom0 sees (RAM-backed blobs).
      if (!bar && lost === 0) {
        const bad = drv.cmd(OP.CHECK_BLOB, res, value);
        if (bad > 0) report.fails++; // dom0 saw other bytes than the guest drew
        else if (bad === 0) bump(report, 'blobs_checked');
      }
      // The compositor chain: pass some of the drawn pages on to the viewer
      // (nested Map), give it a moment to look, then take them back itself
      // or leave that to the transitive Revoke of UNMAP_BLOB.
      let shared: Shared | undefined;
      // Now and then, before sharing, a Map of MMIO it does not hold (refused -EPERM).
      if (sharer !== undefined && cpu.random() < 0.25) sharer.probeBar(res);
      if (sharer !== undefined && lost === 0) {
        shared = sharer.share(res, at, pages, value);
        if (shared !== undefined) {
          cpu.sleep(1);
          if (cpu.random() < 0.5) {
            sharer.revoke(shared);
            shared = undefined;
          }
        }
      }
      if (resident) held.set(res, { pages, value });
      else if (!release(res, pages, value, shared)) return;
      bump(report, 'frames_rendered');
    },
  };
}

export function computeSvmWorkload(cpu: GuestCpu, env: GpuFrontendEnv, backend: number, report: Report, sizes: BufferSizes, design?: string): Workload {
  const drv = new GpuDriver(cpu, env, backend);
  const sh = new FrontendSharing(cpu, env, backend, report, design);
  const v = cpu.vcpu as number;
  const nres = share(cpu, sizes.buffers);
  const maxPages = Math.min(MAX_BLOB_PAGES, sizes.buffer_pages);
  let i = 0;
  return {
    step() {
      if (!drv.ready && !drv.init()) return;
      const k = i++ % nres;
      const res = 16 + v * RES_PER_VCPU + k;
      // Userptr pages: the guest's RAM (Stolen, granted or pinned), or memory dom0 lends at the gfns (lending).
      const buf = sh.userptrGfn(res);
      if (sh.userptrComesBack && buf + MAX_BLOB_PAGES > cpu.memory_pages) return;
      const pages = 1 + Math.floor(cpu.random() * maxPages);
      if (sh.userptrComesBack) for (let p = 0; p < pages; p++) cpu.write32(gfn(buf + p), 0, 0x1badcafe);
      sh.offer(res, buf, pages);
      const rc = drv.cmd(OP.CREATE_USERPTR, res, buf, pages);
      if (rc !== 0) {
        bump(report, 'userptr_refused');
        sh.cancel(res, pages);
        return;
      }
      const value = (cpu.random() * 0x7fffffff) | 0;
      const ran = drv.cmd(OP.GPU_RUN, res, value) === 0;
      if (!ran) bump(report, 'gpu_run_fail');
      // Lent memory goes back to the lender: the guest checks it while it has it (an eviction
      // meanwhile faults to dom0, which lends the migrated page again and the read retries).
      // A job the device never ran (it is going away with the host) wrote nothing to check.
      const checked = sh.userptrComesBack || (ran && checkSvm(cpu, report, buf, pages, value));
      if (sh.withdraw(res, pages, () => drv.cmd(OP.RELEASE_USERPTR, res)) !== 0) {
        bump(report, 'release_fail');
        return;
      }
      if (!sh.userptrComesBack) sh.checkGone(buf); // reclaimed: nothing reaches it any more
      // Every word the GPU wrote is what the guest reads after Return (its own pages: granted, pinned, returned).
      if (checked && (!sh.userptrComesBack || checkSvm(cpu, report, buf, pages, value))) bump(report, 'svm_jobs_checked');
    },
  };
}

/** Every word the GPU wrote, as the guest reads it; false (and a failure) at the first that differs. */
function checkSvm(cpu: GuestCpu, report: Report, buf: number, pages: number, value: number): boolean {
  for (let p = 0; p < pages; p++) {
    for (let w = 0; w < CHECK_WORDS; w++) {
      const got = cpu.read32(gfn(buf + p), w * 4) | 0;
      // An access that became a dropped FAULT (evicted again after every retry) reached nothing: not checked, not failed.
      if (cpu.last_access !== ACCESS.OK) {
        bump(report, 'svm_reads_faulted');
        return false;
      }
      if (got !== pattern(value, p, w)) {
        report.fails++;
        return false;
      }
    }
  }
  return true;
}

export const ADVERSARY_ATTACKS = [
  'hypercall-on-mapped', 'balloon-mapped', 'grant-then-steal', 'fault-storm', 'flip-grant', 'nested-map-evasion', 'exhaust-grants', 'exhaust-maptrack', 'exhaust-ioreq',
  'race-revoke', 'die-while-mapped', 'memop-probe', 'steal-reuse', 'grant-mapped', 'end-while-mapped', 'balloon-pinned',
] as const;
export { DESIGN_ATTACKS } from './protocol.js';


/**
 * A hostile frontend: each attack must be refused or harmless. An attack
 * that works counts as a failure (and the invariant checker watches too).
 */
export function adversaryWorkload(cpu: GuestCpu, env: GpuFrontendEnv, backend: number, attacks: readonly string[], report: Report, dormant = false, design?: string): Workload {
  const drv = new GpuDriver(cpu, env, backend);
  const sh = new FrontendSharing(cpu, env, backend, report, design);
  const v = cpu.vcpu as number;
  const list = attacks.length > 0 ? attacks : (DESIGN_ATTACKS[sh.design] ?? ADVERSARY_ATTACKS.filter((a) => a !== 'die-while-mapped'));
  let i = 0;
  /** Attack runs that use up a gfn for good (memop-probe, steal-reuse), per attack. */
  const probes: Record<string, number> = {};
  const refused = (name: string): void => bump(report, `refused_${name}`);
  const worked = (name: string): void => {
    bump(report, `succeeded_${name}`);
    report.fails++;
  };
  /** Create and share a 2-page blob as the design does; returns its gfn, or -1. */
  const blob = (res: number): number => {
    if (drv.cmd(OP.CREATE_BLOB, res, 2, 0) !== 0) return -1;
    const at = sh.bufferGfn(res);
    sh.offer(res, at, 2);
    if (drv.cmd(OP.MAP_BLOB, res, at) !== 0) {
      sh.cancel(res, 2);
      drv.cmd(OP.DESTROY_BLOB, res);
      return -1;
    }
    return at;
  };
  /**
   * Unmap and destroy a blob; false if the device never executed the unmap
   * (-EIO: its device model was down — killed by chaos — so the doorbell met
   * no server). Then the blob may still be mapped and an attack that reads it
   * proves nothing.
   */
  const drop = (res: number): boolean => {
    const unmap = (): number => sh.withdraw(res, 2, () => drv.cmd(OP.UNMAP_BLOB, res));
    let rc = unmap();
    for (let k = 0; rc === -5 && k < 100 && !cpu.stopping; k++) {
      cpu.sleep(2);
      rc = unmap();
    }
    drv.cmd(OP.DESTROY_BLOB, res);
    return rc === 0;
  };
  return {
    step() {
      if (dormant) {
        // A sleeper: behaves until the toolstack (chaos adversary-on) wakes it.
        if (xsRead(cpu.store, cpu.domid as number, XS_KEY.ADVERSARY_ON) === 0) {
          cpu.sleep(5);
          return;
        }
        dormant = false;
        bump(report, 'woken');
      }
      if (!drv.ready && !drv.init()) return;
      const name = list[i++ % list.length]!;
      const res = 24 + v;
      switch (name) {
        case 'hypercall-on-mapped': {
          const at = blob(res);
          if (at < 0) return;
          (cpu.hc.buffer_copy('from_guest', gfn(at), 0, 64) < 0 && cpu.hc.buffer_copy('to_guest', gfn(at), 0, 64) < 0 ? refused : worked)(name);
          drop(res);
          return;
        }
        case 'balloon-mapped': {
          const at = blob(res);
          if (at < 0) return;
          // memory_op answers with the extents done (Xen's do_memory_op: nr_done, never an errno): 0 is the refusal.
          const done = cpu.hc.decrease_reservation([gfn(at)]);
          if (done < 0) failed(report, `memop_errno_${done}`);
          (done === 1 ? worked : refused)(name);
          drop(res);
          return;
        }
        case 'memop-probe':
          memopProbe(cpu, report, name, res, blob, drop, probes, { worked, refused });
          return;
        case 'steal-reuse':
          stealReuse(cpu, drv, name, v, probes, { worked, refused });
          return;
        case 'grant-then-steal': {
          const g = 8 + v;
          cpu.grants.grant_access(grantRef(100 + v), domid(backend), gfn(g), false);
          const rc = drv.cmd(OP.CREATE_USERPTR, res, g, 1);
          if (rc === 0) {
            worked(name);
            drv.cmd(OP.RELEASE_USERPTR, res);
          } else refused(name);
          cpu.grants.end_access(grantRef(100 + v));
          return;
        }
        case 'fault-storm': {
          const at = blob(res);
          if (at < 0) return;
          if (!drop(res)) {
            bump(report, `inconclusive_${name}`);
            return;
          }
          // Each access faults, or reads a zero page where dom0 lends those: never the blob.
          let reached = 0;
          for (let k = 0; k < 32; k++) if (sh.afterRevoke(at) === 'reached') reached++;
          (reached === 0 ? refused : worked)(name);
          return;
        }
        case 'flip-grant': {
          // Rewrite the queue grant while the device model has it mapped, then restore it.
          const [w0, frame] = cpu.grants.read_raw(grantRef(QUEUE_REF));
          cpu.grants.write_raw(grantRef(QUEUE_REF), (w0 & 0xffff) | ((backend + 1) << 16), frame + 1);
          cpu.grants.write_raw(grantRef(QUEUE_REF), w0, frame);
          refused(name);
          return;
        }
        case 'nested-map-evasion': {
          // A frontend cannot re-Map into a domain it does not serve.
          const at = blob(res);
          if (at < 0) return;
          const r = cpu.hc.dm_map(domid(backend), { kind: 'ram', gfn: gfn(at) }, 1, gfn(env.window_gfn), 'mmio_direct');
          (r.rc < 0 ? refused : worked)(name);
          drop(res);
          return;
        }
        case 'exhaust-ioreq': {
          const rc = cpu.hc.dm_create_ioreq_server(domid(cpu.domid as number), [{ start: 0, count: 1 }], 'none');
          (rc < 0 ? refused : worked)(name);
          return;
        }
        case 'race-revoke': {
          const at = blob(res);
          if (at < 0) return;
          for (let k = 0; k < 256; k++) cpu.write32(gfn(at + (k & 1)), (k & 63) * 4, k);
          drop(res);
          refused(name);
          return;
        }
        case 'exhaust-grants': {
          // Grant every spare ref to the backend, then take them back: the table fills, nothing breaks.
          let n = 0;
          for (let r = 200; r < cpu.grants.nr_entries; r++, n++) cpu.grants.grant_access(grantRef(r), domid(backend), gfn(2), true);
          for (let r = 200; r < cpu.grants.nr_entries; r++) cpu.grants.end_access(grantRef(r));
          (n > 0 ? refused : worked)(name);
          return;
        }
        case 'exhaust-maptrack': {
          // Map one of its own grants at every free gfn of a 64-gfn window (maptrack filling up;
          // the full exhaustion to GNTST_no_space is scenario adversary-exhaust-maptrack), then unmap all.
          cpu.grants.grant_access(grantRef(199), domid(cpu.domid as number), gfn(3), true);
          const handles: number[] = [];
          let full = false;
          for (let k = 0; k < 600 && !full; k++) {
            const r = cpu.hc.gnttab_map_grant_ref({ dom: domid(cpu.domid as number), ref: grantRef(199), host_gfn: gfn(env.window_gfn + (k % (8 * MAX_BLOB_PAGES))), readonly: true });
            if (r.status === 0) handles.push(r.handle as number);
            else full = r.status === -13; // GNTST_no_space
            if (r.status !== 0 && !full) break; // the gfn was taken: our window is small, stop here
          }
          for (const h of handles) cpu.hc.gnttab_unmap_grant_ref(h as never);
          cpu.grants.end_access(grantRef(199));
          refused(name);
          return;
        }
        case 'grant-mapped': {
          // Grant a page dom0 shares into the guest (Map'd or lent) and map the grant itself: refused
          // (GNTST_bad_page: the design's pages are not the guest's to grant).
          const at = blob(res);
          if (at < 0) return;
          cpu.grants.grant_access(grantRef(198), domid(cpu.domid as number), gfn(at), true);
          const r = cpu.hc.gnttab_map_grant_ref({ dom: domid(cpu.domid as number), ref: grantRef(198), host_gfn: gfn(env.window_gfn + (RES_PER_FE_SPARE + v) * MAX_BLOB_PAGES), readonly: true });
          if (r.status === 0) {
            worked(name);
            cpu.hc.gnttab_unmap_grant_ref(r.handle);
          } else refused(name);
          cpu.grants.end_access(grantRef(198));
          drop(res);
          return;
        }
        case 'end-while-mapped': {
          // grants: take a page back while dom0 maps it — refused (GTF_reading/GTF_writing);
          // a frontend that could would reuse a page its backend still writes (XSA-396's class).
          const at = blob(res);
          if (at < 0) return;
          (cpu.grants.end_access(grantRef(bufferRef(res, 0))) ? worked : refused)(name);
          // Grant it again for the withdraw below, whichever way it went.
          cpu.grants.grant_access(grantRef(bufferRef(res, 0)), domid(backend), gfn(at), false);
          drop(res);
          return;
        }
        case 'balloon-pinned': {
          // pins: give up a page dom0 pins. Xen takes the gfn (the extent is done) but the frame
          // stays allocated under dom0's reference until dom0 unpins it; then the guest repopulates.
          const at = blob(res);
          if (at < 0) return;
          const done = cpu.hc.decrease_reservation([gfn(at)]);
          if (done < 0) failed(report, `memop_errno_${done}`);
          refused(name); // what it could do wrong (free a frame dom0 maps) is the invariants' to see
          drop(res);
          if (done === 1 && cpu.hc.populate_physmap([gfn(at)]) !== 1 && !cpu.stopping) failed(report, 'repopulate_pinned');
          return;
        }
        case 'die-while-mapped': {
          if (blob(res) >= 0) {
            bump(report, 'died_while_mapped');
            cpu.hc.sched_crash();
          }
          return;
        }
        default:
          return;
      }
    },
  };
}

/** The spare blob slot of the window past the adversary's resources (24…27), one per vCPU: grant-mapped's destination. */
const RES_PER_FE_SPARE = 28;

/** A check of the workload that failed: counted as `failed_<what>` (docs/gpu.md §8) and as a check failure. */
function failed(report: Report, what: string): void {
  bump(report, `failed_${what}`);
  report.fails++;
}

interface Verdicts {
  worked(name: string): void;
  refused(name: string): void;
}

/** Runs of `memop-probe` that use up RAM gfns (three each, from the top of RAM down). */
const MEMOP_PROBE_RUNS = 16;
/**
 * The probes that use gfns up run on a guest of at least this much RAM:
 * steal-reuse's (32 … 32 + 4 × 16) and memop-probe's (the top 48) stay
 * apart, above the driver's own pages.
 */
const PROBE_MIN_PAGES = 256;
/** A gfn no p2m reaches. */
const FAR_GFN = 0x7fff_0000;

/**
 * `memop-probe`: what memory ops tell a hostile guest. On its Map'd blob
 * gfn, and on it once revoked, remove_from_physmap must answer as on a hole
 * (-ENOENT): the seed forbids letting the guest learn what is mapped. Then
 * Xen's answers on its own memory (xen/common/memory.c): populate_physmap
 * returns the extents done, 0 for a gfn no p2m holds (never an errno);
 * remove_from_physmap of its RAM leaves the page allocated and counted
 * (current_reservation unchanged); populate_physmap over its RAM replaces
 * the page (p2m_add_page: done, the old page still counted). The counts are
 * judged only on a guest with one vCPU (another would move them meanwhile)
 * that is still running at the end.
 */
function memopProbe(
  cpu: GuestCpu, report: Report, name: string, res: number, blob: (res: number) => number, drop: (res: number) => boolean, probes: Record<string, number>, v: Verdicts,
): void {
  const at = blob(res);
  if (at >= 0) {
    const mapped = cpu.hc.remove_from_physmap(gfn(at));
    const revoked = drop(res) ? cpu.hc.remove_from_physmap(gfn(at)) : -ENOENT;
    (mapped === -ENOENT && revoked === -ENOENT ? v.refused : v.worked)(name);
  }
  const far = cpu.hc.populate_physmap([gfn(FAR_GFN)]);
  if (far !== 0 && !cpu.stopping) failed(report, `populate_far_${far}`);
  const k = probes[name] ?? 0;
  if (cpu.nr_vcpus !== 1 || k >= MEMOP_PROBE_RUNS || cpu.memory_pages < PROBE_MIN_PAGES) return;
  probes[name] = k + 1;
  const top = cpu.memory_pages - 1 - 3 * k;
  const before = cpu.hc.current_reservation();
  const removed = cpu.hc.remove_from_physmap(gfn(top));
  const kept = cpu.hc.current_reservation();
  const out = cpu.hc.decrease_reservation([gfn(top - 1)]);
  const over = cpu.hc.populate_physmap([gfn(top - 2)]);
  const after = cpu.hc.current_reservation();
  if (cpu.stopping) return;
  if (removed !== 0 || kept !== before) failed(report, `remove_own_ram_${removed}_pages_${kept - before}`);
  if (out !== 1 || over !== 1 || after !== before) failed(report, `populate_over_ram_${out}_${over}_pages_${after - before}`);
}

/** Runs of `steal-reuse`: each leaves one gfn revoked for good. */
const STEAL_REUSE_RUNS = 16;

/**
 * `steal-reuse`: the guest has a page stolen as a userptr, tells the device
 * to discard it (dom0 frees the stolen frame: that Steal is over), has
 * another page stolen — into the same place of dom0's, the lowest free one —
 * and takes it back. Return must hand it that second page, the one now
 * stolen from it, whatever record once named the place (the seed: a Steal
 * is tied to the frame). The guest checks the contents; the checker's
 * records_match_frames judges the registry.
 */
function stealReuse(cpu: GuestCpu, drv: GpuDriver, name: string, v: number, probes: Record<string, number>, verdict: Verdicts): void {
  const k = probes[name] ?? 0;
  if (k >= STEAL_REUSE_RUNS || cpu.memory_pages < PROBE_MIN_PAGES) return;
  probes[name] = k + 1;
  const first = gfn(32 + v * STEAL_REUSE_RUNS + k); // revoked for good once discarded
  const second = gfn(4 + v);
  const [r1, r2] = [28 + v, 24 + v];
  const marker = (0x5eed0000 | (v << 8) | k) | 0;
  cpu.write32(second, 0, marker);
  if (drv.cmd(OP.CREATE_USERPTR, r1, first, 1) !== 0) return;
  if (drv.cmd(OP.DISCARD_USERPTR, r1) !== 0) return;
  if (drv.cmd(OP.CREATE_USERPTR, r2, second, 1) !== 0) return;
  if (drv.cmd(OP.RELEASE_USERPTR, r2) !== 0) return;
  const got = cpu.read32(second, 0) | 0;
  if (cpu.stopping) return;
  (got === marker && cpu.last_access === ACCESS.OK ? verdict.refused : verdict.worked)(name);
}
