/**
 * A scheduler for single-threaded tests of the pCPU scheduler
 * (hypervisor/xen/schedule*.test.ts): its clock moves only when told
 * (`now`), each `wait` runs the next scripted step — what the other vCPUs
 * do meanwhile — instead of blocking, and `relax` records its spins.
 */
import type { Sched } from '../hypervisor/xen/platform.js';

export function scripted(steps: Array<() => void> = []): Sched & { now: number; relaxed: number[]; onRelax: (i: number) => void } {
  const s = {
    now: 1000,
    relaxed: [] as number[],
    onRelax: (_i: number) => undefined as void,
    relax: (i: number) => {
      // A lock nobody gives back fails the test here, not by a log that grows until the runner dies.
      if (i > 1000) throw new Error('the run-queue lock is never released');
      s.relaxed.push(i);
      s.onRelax(i);
    },
    wait: () => {
      const step = steps.shift();
      if (step === undefined) throw new Error('a vCPU waits for a pCPU nobody will give back');
      step();
      return true;
    },
    wake: () => undefined,
    yield: () => undefined,
    now_us: () => s.now,
    charge: () => undefined,
  };
  return s;
}
