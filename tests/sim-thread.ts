/**
 * A worker thread that runs one simulation (hypervisor/host/sim/run.ts) for
 * the tests: the simulator is single-threaded, so a test file that runs many
 * seeds runs them two at a time on threads of this (tests/harness.ts simPool).
 */
import type { HostSpec } from '../hypervisor/host/spec.js';
import { runSim, type SimOptions, type SimResult } from '../hypervisor/host/sim/run.js';

export default function simThread(t: { spec: HostSpec; o: SimOptions }): Promise<SimResult> {
  return runSim(t.spec, t.o);
}
