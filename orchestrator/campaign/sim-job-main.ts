/**
 * A campaign host's sim-job process (sim-procs.ts): runs the jobs its host
 * sends, one at a time, and answers each with its result. It lives as long
 * as its IPC channel: the host ends it (SIGKILL) at a timeout or a stop, or
 * disconnects when it leaves.
 */
import { runSpec } from '../runs/store.js';
import { errorText } from './job-error.js';
import type { SimProcMsg, SimProcRun } from './sim-procs.js';

const send = (m: SimProcMsg): void => {
  process.send?.(m);
};

process.on('message', (m: unknown) => {
  const msg = m as SimProcRun;
  if (msg.kind !== 'run') return;
  void (async () => {
    // The run reports every 1 000 decisions; the host hears of every 10 000 (it needs the step only at a timeout).
    let told = 0;
    const progress = (n: number): void => {
      if (n - told < 10_000) return;
      told = n;
      send({ kind: 'steps', n: Math.min(n, 0x7fffffff) });
    };
    try {
      const outcome = await runSpec(msg.spec, { simProgress: progress });
      send({ kind: 'done', result: { ok: true, outcome } });
    } catch (e) {
      send({ kind: 'done', result: { ok: false, error: errorText(e) } });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
