/**
 * Concurrent Map / access / Revoke on real threads (the load of
 * `xgsim stress revoke`): no use after revoke with the flush, caught
 * without it, and Revoke finishing — within the bound the hypervisor
 * itself enforces — whatever the guests do (docs/revoke.md).
 */
import { describe, expect, it } from 'vitest';
import { TLB_SHOOTDOWN_BOUND_MS } from '../hypervisor/layout/constants.js';
import { Host } from '../hypervisor/host/host.js';
import { VC } from '../hypervisor/layout/vcpus.js';
import { parseBuggify } from '../hypervisor/xen/buggify.js';
import { stressSpec, type Adversary } from '../orchestrator/up/stress.js';
import { percentiles } from '../orchestrator/stats.js';
import { explain, runFor, testSeed, totalViolations } from './harness.js';

/** pcpus absent: one per core, the default of every host; 0: the OS schedules the vCPU threads. */
function stressHost(seed: number, adversary: Adversary, bugs = '', pcpus?: number): Host {
  return new Host(stressSpec({ guests: 4, vcpus: 2, backendVcpus: 2, pages: 8, adversary, seed, buggify: parseBuggify(bugs), pcpus }));
}
const sum = (r: Awaited<ReturnType<typeof runFor>>, k: string): number => r.vcpu_results.reduce((a, v) => a + (v.out[k] ?? 0), 0);

describe('stress revoke', () => {
  it('frontends hammering mapped buffers never reach a frame after Revoke returned', async () => {
    const seed = testSeed('stress revoke clean');
    const r = await runFor(stressHost(seed, 'none'), 2000);
    expect(r.errors).toEqual([]);
    expect(totalViolations(r), explain(r)).toBe(0);
    expect(sum(r, 'revoke')).toBeGreaterThan(10);
    expect(sum(r, 'accesses_ok')).toBeGreaterThan(0);
    expect(sum(r, 'faults')).toBeGreaterThan(0);
    expect(sum(r, 'poison_seen')).toBe(0);
    expect(sum(r, 'revoke_fail') + sum(r, 'map_fail')).toBe(0);
    expect(r.frames.free).toBe(r.frames.total);
  });

  it('with the OS scheduling the vCPU threads (no pCPUs), frontends hammering never reach a frame after Revoke returned either', async () => {
    const seed = testSeed('stress revoke os-scheduled');
    const r = await runFor(stressHost(seed, 'none', '', 0), 2000);
    expect(r.errors).toEqual([]);
    expect(totalViolations(r), explain(r)).toBe(0);
    expect(sum(r, 'revoke')).toBeGreaterThan(10);
    expect(sum(r, 'poison_seen')).toBe(0);
    // Nothing was scheduled on pCPUs: no pCPU taken, none counted.
    expect(r.sched.pcpus).toBe(0);
    expect(r.stats['sched_runs']).toBe(0);
  });

  it('with skip-tlb-flush-on-revoke the late accesses are caught', async () => {
    const seed = testSeed('stress revoke skip-tlb-flush-on-revoke');
    const r = await runFor(stressHost(seed, 'none', 'skip-tlb-flush-on-revoke'), 2000);
    expect(r.invariants['no_use_after_revoke']!.violations + sum(r, 'poison_seen'), explain(r)).toBeGreaterThan(0);
  });

  it('with revoke-put-before-flush the isolation oracle sees frontends reach frames they lost the right to (no other invariant does)', async () => {
    const seed = testSeed('stress revoke revoke-put-before-flush');
    const r = await runFor(stressHost(seed, 'none', 'revoke-put-before-flush'), 2000);
    expect(r.invariants['isolation']!.violations, explain(r)).toBeGreaterThan(0);
  });

  it('on 2 pCPUs: never more than 2 vCPUs on one, every vCPU runs, Revoke stays exact against the adversaries', async () => {
    const seed = testSeed('stress revoke on pcpus');
    const host = stressHost(seed, 'mix', '', 2);
    let most = 0;
    const r = await runFor(host, 2500, async () => {
      // Sample who holds a pCPU while the run goes on.
      for (let i = 0; i < 200; i++) {
        let n = 0;
        for (let s = 0; s < 10; s++) n += host.m.vcpus.at(s, VC.PCPU);
        most = Math.max(most, n);
        await new Promise((res) => setTimeout(res, 2));
      }
    });
    expect(r.errors).toEqual([]);
    expect(totalViolations(r), explain(r)).toBe(0);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(2);
    // 10 vCPUs on 2 pCPUs: they took turns, by slices and by blocking (the descheduled adversaries sleep).
    expect(r.sched.pcpus).toBe(2);
    expect(r.stats['sched_runs']).toBeGreaterThan(10);
    expect(r.stats['sched_waits']).toBeGreaterThan(0);
    expect(r.stats['sched_blocks']).toBeGreaterThan(0);
    expect(r.stats['sched_wait_us']).toBeGreaterThan(0);
    expect(sum(r, 'revoke')).toBeGreaterThan(10);
    expect(sum(r, 'spins')).toBeGreaterThan(0);
    expect(sum(r, 'accesses_ok')).toBeGreaterThan(0);
    expect(sum(r, 'poison_seen')).toBe(0);
    expect(r.frames.free).toBe(r.frames.total);
  });

  it('on 2 pCPUs, skip-tlb-flush-on-revoke is still caught (a descheduled vCPU keeps its TLB)', async () => {
    const seed = testSeed('stress revoke on pcpus skip-tlb-flush-on-revoke');
    const r = await runFor(stressHost(seed, 'none', 'skip-tlb-flush-on-revoke', 2), 2000);
    expect(r.invariants['no_use_after_revoke']!.violations + sum(r, 'poison_seen'), explain(r)).toBeGreaterThan(0);
  });

  it('Revoke completes within its bound against spinning, fault-flooding and descheduled guests', async () => {
    const seed = testSeed('revoke vs adversaries');
    const r = await runFor(stressHost(seed, 'mix'), 2500);
    // A shootdown that outlived TLB_SHOOTDOWN_BOUND_MS would have been a fatal HypervisorBug on the revoking thread.
    expect(r.errors).toEqual([]);
    expect(totalViolations(r), explain(r)).toBe(0);
    expect(sum(r, 'revoke')).toBeGreaterThan(10);
    expect(sum(r, 'spins')).toBeGreaterThan(0);
    expect(sum(r, 'sleeps')).toBeGreaterThan(0);
    expect(sum(r, 'faults')).toBeGreaterThan(0);
    const lat = percentiles(r.vcpu_results.flatMap((v) => v.samples['revoke_us'] ?? []));
    console.log(`[revoke vs adversaries] revoke latency µs: p50 ${lat.p50}, p99 ${lat.p99}, max ${lat.max} over ${lat.n} revokes (bound ${TLB_SHOOTDOWN_BOUND_MS} ms)`);
  });
});
