/**
 * A failing sim run's printed replay (`--steps <failing step> --horizon
 * <steps>`) is the same run: the same decisions and hash. With liveness mode
 * the quiet tail starts at the horizon, not at the cut: a tail begun at the
 * failing step stopped the nemeses there, which the longer run did not, and
 * the replay ended with another hash (seed 625357667, found by a campaign
 * test after the access points came in).
 */
import { describe, expect, it } from 'vitest';
import { bugSetOf } from '../hypervisor/xen/buggify.js';
import { simOnce } from '../orchestrator/sim/sim.js';

describe('a sim failure replays bit for bit from its cut replay command', () => {
  for (const strategy of ['random', 'pct'] as const) {
    it(`seed 625357667, skip-tlb-flush-on-revoke, ${strategy}: the run cut at its failing step has its hash`, async () => {
      const buggify = bugSetOf(['skip-tlb-flush-on-revoke']);
      const full = await simOnce({ seed: 625357667, steps: 5000, strategy, buggify });
      expect(full.verdict).toBe('fail');
      const at = full.failed_at_step!;
      expect(full.replay).toContain(`--steps ${at} --horizon 5000`);
      const cut = await simOnce({ seed: 625357667, steps: at, horizon: 5000, strategy, buggify });
      expect({ verdict: cut.verdict, at: cut.failed_at_step, hash: cut.hash }).toEqual({ verdict: 'fail', at, hash: full.hash });
    });
  }
});
