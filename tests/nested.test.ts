/**
 * The compositor chain (docs/gpu.md §12) on real threads: dom0 Maps blobs
 * into a render frontend, which re-Maps pages of them into the viewer it
 * serves (nested Map); the viewer reads them. Clean with transitive Revoke;
 * with XGSIM_BUGGIFY=revoke-skip-nested the nested Map outlives dom0's
 * Revoke and the checker (and the viewer itself) must say so. Either side of
 * the chain crashing is not a failure of the other.
 */
import { describe, expect, it } from 'vitest';
import { Host, type HostSpec } from '../hypervisor/host/host.js';
import { parseBuggify } from '../hypervisor/xen/buggify.js';
import { domainCrash } from '../hypervisor/xen/domain-crash.js';
import { loadTopology } from '../orchestrator/config/topology.js';
import { hostSpecOf } from '../orchestrator/up/host-spec.js';
import { explain, outOf, runFor, testSeed, totalViolations } from './harness.js';

function spec(seed: number, bugs = ''): HostSpec {
  const t = loadTopology('examples/compositor.yaml');
  return { ...hostSpecOf(t, { seed, checking: true, buggify: parseBuggify(bugs), check_interval_ms: 100 }), transport: { kind: 'ring' } };
}

/** Run until the viewer has read through a nested Map and some shares were left to UNMAP_BLOB's Revoke (at most ~20 s). */
async function untilShared(h: Host): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const s = h.stats();
    if ((s['maps'] ?? 0) > 200 && (s['revokes'] ?? 0) > 100) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('compositor chain (nested Map)', () => {
  it('clean with transitive Revoke, and the viewer really reads through nested Maps', async () => {
    const seed = testSeed('compositor chain clean');
    const r = await runFor(new Host(spec(seed)), 1500, untilShared);
    expect(r.errors).toEqual([]);
    expect(totalViolations(r), explain(r)).toBe(0);
    expect(r.stats['check_fails'], explain(r)).toBe(0);
    expect(outOf(r, 1, 'shares'), explain(r)).toBeGreaterThan(0);
    expect(outOf(r, 1, 'shares_left_to_unmap'), explain(r)).toBeGreaterThan(0);
    expect(outOf(r, 1, 'shares_revoked'), explain(r)).toBeGreaterThan(0);
    expect(outOf(r, 2, 'viewer_reads'), explain(r)).toBeGreaterThan(0);
    // After a share was taken back (by the compositor or transitively), nothing reached memory.
    expect(outOf(r, 2, 'viewer_after_revoke_faults'), explain(r)).toBeGreaterThan(0);
    expect(outOf(r, 2, 'viewer_read_after_revoke')).toBe(0);
    expect(outOf(r, 1, 'share_eexist')).toBe(0);
    expect(r.frames.free).toBe(r.frames.total);
  });

  it('revoke-skip-nested: the nested Map that outlives Revoke is caught', async () => {
    const seed = testSeed('compositor chain revoke-skip-nested');
    const r = await runFor(new Host(spec(seed, 'revoke-skip-nested')), 1500, untilShared);
    expect(outOf(r, 1, 'shares_left_to_unmap'), explain(r)).toBeGreaterThan(0);
    expect(r.invariants['no_use_after_revoke']!.violations, explain(r)).toBeGreaterThan(0);
    expect(r.violations.some((v) => v.text.includes('nested mapping'))).toBe(true);
  });

  for (const victim of [1, 2] as const) {
    it(`the ${victim === 1 ? 'compositor' : 'viewer'} crashing is no failure of the others`, async () => {
      const seed = testSeed(`compositor chain crash d${victim}`);
      const host = new Host(spec(seed));
      const r = await runFor(host, 1000, async (h) => {
        domainCrash(h.m, victim, 'test');
        await new Promise((res) => setTimeout(res, 1000));
      });
      expect(r.errors).toEqual([]);
      expect(totalViolations(r), explain(r)).toBe(0);
      const survivors = r.vcpu_results.filter((v) => v.domid !== victim);
      expect(survivors.reduce((a, v) => a + v.check_fails, 0), explain(r)).toBe(0);
      expect(r.frames.free).toBe(r.frames.total);
    });
  }
});
