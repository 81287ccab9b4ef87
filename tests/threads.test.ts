/**
 * vCPUs are real threads: distinct OS threads, running at the same time,
 * and a grant page shared by two domains is a real data race.
 */
import { describe, expect, it } from 'vitest';
import { explain, hostOf, outOf, runFor, testSeed, totalViolations } from './harness.js';

describe('vCPU threads', () => {
  it('run in parallel on distinct threads and race on a shared grant page', async () => {
    const seed = testSeed('vCPU threads run in parallel');
    const host = hostOf(
      [
        { workload: { kind: 'idle' }, vcpus: 1 },
        { workload: { kind: 'race-shared-word', role: 'granter', peer: 2 }, vcpus: 1 },
        { workload: { kind: 'race-shared-word', role: 'mapper', peer: 1 }, vcpus: 1 },
      ],
      { seed },
    );
    const r = await runFor(host, 600);
    expect(r.errors).toEqual([]);
    expect(totalViolations(r), explain(r)).toBe(0);
    // One thread per vCPU.
    expect(new Set(r.threads).size).toBe(3);
    const g = r.vcpu_results.find((v) => v.domid === 1)!;
    const mp = r.vcpu_results.find((v) => v.domid === 2)!;
    expect(g.threadId).not.toBe(mp.threadId);
    // Their access intervals overlap in time…
    expect(g.out['first_ms']!).toBeLessThan(mp.out['last_ms']!);
    expect(mp.out['first_ms']!).toBeLessThan(g.out['last_ms']!);
    // …and each read a value the other wrote between its own write and read:
    // an unsynchronised data race on the shared frame, observed from both sides.
    expect(outOf(r, 1, 'saw_peer')).toBeGreaterThan(0);
    expect(outOf(r, 2, 'saw_peer')).toBeGreaterThan(0);
  });
});
