/**
 * A campaign host's sim-job processes (sim-procs.ts): a job's result, a
 * timeout that reports the step reached, a stop, and a process that died
 * while idle giving its slot to a new one. Each job is a real `xgsim sim`
 * run of the default topology in a child process (dist/ must be built:
 * `npm test` builds first).
 */
import { describe, expect, it } from 'vitest';
import { NO_BUGS } from '../../hypervisor/xen/buggify.js';
import type { RunSpec } from '../runs/store.js';
import { SimProcessPool } from './sim-procs.js';

const spec = (steps: number, seed = 1): RunSpec => ({ kind: 'sim', flags: { steps: String(steps), strategy: 'random' }, seed, buggify: NO_BUGS });

describe('sim-job processes', () => {
  it('run a job to its result, then the next in the same process; a timeout kills it and says the step; the next job gets a new one', async () => {
    const pool = new SimProcessPool(1);
    const never = new AbortController();
    try {
      const a = await pool.run(spec(2000), 120_000, never.signal);
      expect(a).toMatchObject({ ok: true });
      const first = [...pool.children][0]!;
      const b = await pool.run(spec(2000, 2), 120_000, never.signal);
      expect(b).toMatchObject({ ok: true });
      // The same process ran both.
      expect([...pool.children]).toEqual([first]);
      // 50 M decisions never end in 4 s: killed at the timeout, with the last step it reported (every 10 000).
      const t = await pool.run(spec(50_000_000), 4000, never.signal);
      expect(t).toHaveProperty('timeout_at_step');
      expect(first.killed).toBe(true);
      const c = await pool.run(spec(2000, 3), 120_000, never.signal);
      expect(c).toMatchObject({ ok: true });
      expect([...pool.children]).not.toContain(first);
    } finally {
      await pool.destroy();
    }
    expect(pool.children.size).toBe(0);
  }, 180_000);

  it('a stop ends the job at once as stopped; a process killed while idle is replaced, not sent the next job', async () => {
    const pool = new SimProcessPool(1);
    const never = new AbortController();
    try {
      const stop = new AbortController();
      const running = pool.run(spec(50_000_000), 120_000, stop.signal);
      setTimeout(() => stop.abort(), 1500);
      expect(await running).toBe('stopped');
      // An idle process killed from outside: the next job starts another instead of waiting on it until its timeout.
      expect(await pool.run(spec(2000), 120_000, never.signal)).toMatchObject({ ok: true });
      const idle = [...pool.children][0]!;
      idle.kill('SIGKILL');
      await new Promise((res) => idle.once('exit', res));
      expect(await pool.run(spec(2000, 2), 60_000, never.signal)).toMatchObject({ ok: true });
    } finally {
      await pool.destroy();
    }
  }, 180_000);
});
