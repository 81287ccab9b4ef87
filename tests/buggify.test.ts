/**
 * The checker is proven, not assumed (docs/semantics.md §6): each deliberate bug makes
 * the invariant it breaks fire, and the same run without it is clean.
 */
import { describe, expect, it } from 'vitest';
import { explain, hostOf, outOf, runFor, testSeed, totalViolations } from './harness.js';
import type { Host } from '../hypervisor/host/host.js';

function unmapUnderWriter(seed: number, bugs: string): Host {
  return hostOf(
    [
      { workload: { kind: 'idle' }, vcpus: 1 },
      { workload: { kind: 'race-one-grant', peer: 2 }, vcpus: 1 },
      { workload: { kind: 'race-unmap-under-writer', granter: 1 }, vcpus: 2 },
    ],
    { seed, bugs },
  );
}

function grantPing(seed: number, bugs: string): Host {
  return hostOf(
    [
      { workload: { kind: 'grant-ping' }, vcpus: 1, peers: [1] },
      { workload: { kind: 'grant-ping' }, vcpus: 2, peers: [0, 2] },
      { workload: { kind: 'grant-ping' }, vcpus: 2, peers: [1] },
    ],
    { seed, bugs },
  );
}

describe('BUGGIFY', () => {
  it('skip-tlb-flush-on-unmap: a write through a stale TLB after unmap returned is caught', async () => {
    const seed = testSeed('skip-tlb-flush-on-unmap');
    const r = await runFor(unmapUnderWriter(seed, 'skip-tlb-flush-on-unmap'), 1000);
    expect(outOf(r, 2, 'unmap_ok')).toBeGreaterThan(0);
    expect(r.invariants['no_use_after_revoke']!.violations, explain(r)).toBeGreaterThan(0);
  });

  it('the same race with the flush in place is clean', async () => {
    const seed = testSeed('unmap under writer, no bug');
    const r = await runFor(unmapUnderWriter(seed, ''), 1000);
    expect(outOf(r, 2, 'unmap_ok')).toBeGreaterThan(0);
    expect(totalViolations(r), explain(r)).toBe(0);
    expect(r.errors).toEqual([]);
  });

  it('no-scrub: a frame handed out with its old owner\'s data is caught', async () => {
    const seed = testSeed('no-scrub');
    const r = await runFor(grantPing(seed, 'no-scrub'), 1000);
    expect(r.invariants['scrubbed']!.violations, explain(r)).toBeGreaterThan(0);
  });

  it('grant-unmap-skip-unpin: pins left without mappings are caught', async () => {
    const seed = testSeed('grant-unmap-skip-unpin');
    const r = await runFor(grantPing(seed, 'grant-unmap-skip-unpin'), 1000);
    expect(r.invariants['grant_flags']!.violations + r.invariants['no_leaks']!.violations, explain(r)).toBeGreaterThan(0);
    expect(r.frames.free).toBeLessThan(r.frames.total);
  });

  it('grant-ping without bugs is clean', async () => {
    const seed = testSeed('grant-ping clean');
    const r = await runFor(grantPing(seed, ''), 1000);
    expect(totalViolations(r), explain(r)).toBe(0);
    expect(r.errors).toEqual([]);
    expect(r.stats['check_fails'], explain(r)).toBe(0);
    // Some takes were grant copies (grant to gfn and grant to grant).
    expect(r.stats['grant_copies'], explain(r)).toBeGreaterThan(0);
    expect(r.frames.free).toBe(r.frames.total);
  });

  it('gnttab-copy-double-lock: grant-ping\'s grant-to-grant copies hold two grant-table locks, and lockdep says so', async () => {
    const seed = testSeed('gnttab-copy-double-lock grant-ping');
    const r = await runFor(grantPing(seed, 'gnttab-copy-double-lock'), 1000);
    expect(r.invariants['lock_order']!.violations, explain(r)).toBeGreaterThan(0);
    expect(r.violations.some((v) => v.text.includes('grant.copy.double_gt_lock'))).toBe(true);
    // The copies themselves are right either way.
    expect(r.stats['check_fails'], explain(r)).toBe(0);
  });
});
