/** A guest that does nothing but yield (it still acknowledges TLB flushes). */
import type { GuestCpu } from '../hypervisor/public/guest.js';
import type { Workload } from './workload.js';

export function idleWorkload(cpu: GuestCpu): Workload {
  return { step: () => cpu.yield() };
}
