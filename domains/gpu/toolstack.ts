/**
 * What dom0's toolstack does now and then besides the GPU (run by dom0's
 * kernel vCPU, device-model.ts gpuKernel), and the answers it knows Xen
 * gives (docs/fidelity.md): it passes part of its BAR through to a
 * frontend and takes it back (XEN_DOMCTL_iomem_permission on a rangeset:
 * a partial deny splits, a permit merges, a deny of the rest empties it),
 * asks for MMIO it does not hold (refused: the caller's own caps must hold
 * the range), and tries to foreign-map one of its own pages (refused:
 * rcu_lock_remote_domain_by_id will not lock oneself). Any other answer is
 * a failed check of the workload. A frontend that went away meanwhile
 * (ESRCH) ends a round early: its caps no longer matter.
 */
import type { GuestCpu } from '../../hypervisor/public/guest.js';
import { domid, gfn } from '../../hypervisor/public/types.js';
import { EPERM, ESRCH } from '../../hypervisor/public/errno.js';
import type { GpuEnv } from '../workload.js';
import { bump } from '../counters.js';

interface Report {
  out: Record<string, number>;
  fails: number;
}

/** Simulated or real µs between two rounds. */
const ROUND_EVERY_US = 20_000;
/** BAR pages a round passes through (the first ones: a probe of MMIO nobody holds takes a page past them). */
export const PASS_PAGES = 4;

export interface Toolstack {
  /** Run a round if one is due; true if it did (the step is spent). */
  step(): boolean;
}

export function toolstack(cpu: GuestCpu, gpu: GpuEnv, report: Report, own_gfn: number, scratch_gfn: number): Toolstack {
  let next_us = 0;
  const expect = (what: string, got: number, want: number): boolean => {
    if (got === want) return true;
    bump(report.out, `failed_toolstack_${what}_got_${got}`);
    report.fails++;
    return false;
  };
  /** One pass-through round on frontend `fe`; false once fe is gone (ESRCH). */
  const iomemRound = (fe: number, base: number): boolean => {
    const permit = (first: number, nr: number, allow: boolean): number => cpu.hc.domctl_iomem_permission(domid(fe), first, nr, allow);
    const steps: Array<[string, () => number, number]> = [
      ['permit', () => permit(base, PASS_PAGES, true), 0],
      ['deny_middle', () => permit(base + 1, 1, false), 0], // splits the range in two
      ['permit_middle', () => permit(base + 1, 1, true), 0], // merges it back into one
      ['deny_all', () => permit(base, PASS_PAGES, false), 0],
      ['permit_unheld', () => permit(0, 1, true), -EPERM], // RAM frame 0: not in dom0's caps
    ];
    for (const [what, call, want] of steps) {
      const rc = call();
      if (rc === -ESRCH) return false;
      if (!expect(`iomem_${what}`, rc, want) && want === -EPERM && rc === 0) permit(0, 1, false);
    }
    return true;
  };
  const foreignSelf = (): void => {
    const rc = cpu.hc.foreign_map(cpu.domid, gfn(own_gfn), gfn(scratch_gfn));
    if (!expect('foreign_map_self', rc, -EPERM) && rc === 0) cpu.hc.remove_from_physmap(gfn(scratch_gfn));
  };
  return {
    step(): boolean {
      const now = cpu.now_us();
      if (now < next_us) return false;
      next_us = now + ROUND_EVERY_US;
      const fe = gpu.frontends[Math.floor(cpu.random() * gpu.frontends.length)];
      if (gpu.bar !== undefined && gpu.bar.nr_pages >= PASS_PAGES && fe !== undefined && iomemRound(fe.domid, gpu.bar.base_mfn)) bump(report.out, 'toolstack_iomem_rounds');
      if (scratch_gfn >= 0) foreignSelf();
      bump(report.out, 'toolstack_rounds');
      return true;
    },
  };
}
