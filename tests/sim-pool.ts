/**
 * Simulations on two worker threads for the test files that run many seeds:
 * the simulator is single-threaded and deterministic (the same seed gives the
 * same run on any thread). The suite runs two files at a time
 * (vitest.config.ts), and most files mostly wait (a run's duration, a
 * host's claim), so a sim-heavy file beside one of them would leave a core
 * idle with one thread. The threads load the TypeScript sources through
 * tsx, as vitest does here.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import type { HostSpec } from '../hypervisor/host/spec.js';
import type { SimOptions, SimResult } from '../hypervisor/host/sim/run.js';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';

let pool: Piscina | undefined;

/** One simulation on the pool (`o.progress` cannot cross to a thread: left out). */
export function simOnThread(spec: HostSpec, o: SimOptions): Promise<SimResult> {
  const { progress: _, ...plain } = o;
  pool ??= new Piscina({
    filename: pathToFileURL(join(PROJECT_ROOT, 'tests', 'sim-thread.ts')).href,
    execArgv: ['--import', 'tsx'],
    minThreads: 1,
    maxThreads: Math.max(1, Math.min(2, availableParallelism())),
  });
  return pool.run({ spec, o: plain }) as Promise<SimResult>;
}

/** Ends the pool's threads (a file's afterAll). */
export async function closeSimPool(): Promise<void> {
  await pool?.destroy();
  pool = undefined;
}
