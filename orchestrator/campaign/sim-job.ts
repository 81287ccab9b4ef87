/**
 * A campaign host's sim job on a worker thread of its own (host.ts): the
 * simulator holds its thread for the whole run, so a host that runs one sim
 * job per core runs each on a thread, and its main thread stays free for
 * claims, timeouts and signals. A job past its timeout is stopped by ending
 * its thread; the decisions it had made are in `steps`, which the run
 * updates every 10 000 decisions.
 */
import { runSpec, type RunSpec } from '../runs/store.js';
import type { RunOutcome } from '../up/up.js';
import { errorText } from './job-error.js';

export interface SimJobTask {
  spec: RunSpec;
  /** Over a SharedArrayBuffer: [0] = decisions made so far. */
  steps: Int32Array;
}

export type SimJobResult = { ok: true; outcome: RunOutcome } | { ok: false; error: string };

export default async function simJob(t: SimJobTask): Promise<SimJobResult> {
  try {
    const outcome = await runSpec(t.spec, { simProgress: (n) => Atomics.store(t.steps, 0, Math.min(n, 0x7fffffff)) });
    return { ok: true, outcome };
  } catch (e) {
    return { ok: false, error: errorText(e) };
  }
}
