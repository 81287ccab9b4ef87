/**
 * Multi-threaded races of the foundation (issue 2), each seeded and
 * replayable: every outcome must be a legal one, the race must really
 * happen (both outcomes seen), and no invariant may break.
 */
import { describe, expect, it } from 'vitest';
import { explain, hostOf, outOf, runFor, testSeed, totalViolations } from './harness.js';

describe('races', () => {
  it('grant map/unmap vs end_access vs the granter rewriting its entries', async () => {
    const seed = testSeed('grant map/unmap vs end_access');
    const host = hostOf(
      [
        { workload: { kind: 'idle' }, vcpus: 1 },
        { workload: { kind: 'race-grant-flipper', peer: 2, refs: 4 }, vcpus: 2 },
        { workload: { kind: 'race-grant-hammer', granter: 1, nrefs: 8 }, vcpus: 2 },
      ],
      { seed },
    );
    const r = await runFor(host, 1500);
    expect(r.errors).toEqual([]);
    expect(totalViolations(r), explain(r)).toBe(0);
    expect(outOf(r, 2, 'map_GNTST_okay'), explain(r)).toBeGreaterThan(0);
    // A scribbled entry (wrong grantee, read-only) is refused by _set_status_v1: GNTST_general_error.
    expect(outOf(r, 2, 'map_GNTST_general_error'), explain(r)).toBeGreaterThan(0);
    expect(outOf(r, 1, 'end_busy'), explain(r)).toBeGreaterThan(0);
    expect(outOf(r, 1, 'end_ok')).toBeGreaterThan(0);
    expect(outOf(r, 2, 'unmap_fail')).toBe(0);
    expect(outOf(r, 2, 'bad_access')).toBe(0);
    const legal = new Set(['map_GNTST_okay', 'map_GNTST_general_error', 'map_GNTST_bad_page', 'unmap_ok']);
    for (const v of r.vcpu_results.filter((x) => x.domid === 2)) for (const k of Object.keys(v.out)) expect(legal, k).toContain(k);
    expect(r.frames.free).toBe(r.frames.total);
  });

  it('populate vs balloon of the same gfns on two vCPUs', async () => {
    const seed = testSeed('populate vs balloon');
    const host = hostOf([{ workload: { kind: 'idle' }, vcpus: 1 }, { workload: { kind: 'race-memory', first: 8, count: 8 }, vcpus: 2, memory_pages: 64 }], { seed });
    const r = await runFor(host, 1200);
    expect(r.errors).toEqual([]);
    expect(totalViolations(r), explain(r)).toBe(0);
    expect(outOf(r, 1, 'populate_ok')).toBeGreaterThan(0);
    expect(outOf(r, 1, 'balloon_ok')).toBeGreaterThan(0);
    expect(outOf(r, 1, 'populate_none') + outOf(r, 1, 'balloon_none')).toBeGreaterThan(0);
    expect(outOf(r, 1, 'populated_dirty')).toBe(0);
    const unexpected = r.vcpu_results.flatMap((v) => Object.keys(v.out).filter((k) => k.includes('unexpected')));
    expect(unexpected).toEqual([]);
    expect(r.frames.free).toBe(r.frames.total);
  });

  it('destroy of a domain while another maps its grants', async () => {
    const seed = testSeed('destroy while mapped');
    const host = hostOf(
      [
        { workload: { kind: 'race-destroyer', target: 1, after: 50 }, vcpus: 1 },
        { workload: { kind: 'race-static-granter', peer: 2, refs: 8 }, vcpus: 2 },
        { workload: { kind: 'race-holding-mapper', granter: 1, refs: 8 }, vcpus: 2 },
      ],
      { seed },
    );
    let sawZombie = false;
    const r = await runFor(host, 1500, (h) => {
      sawZombie = h.m.dom.state(1) !== 2;
    });
    expect(r.errors).toEqual([]);
    expect(totalViolations(r), explain(r)).toBe(0);
    expect(outOf(r, 0, 'destroy_rc'), explain(r)).toBe(0);
    expect(sawZombie).toBe(true);
    expect(outOf(r, 2, 'map_GNTST_okay')).toBeGreaterThan(0);
    // The dying granter is still found (Xen's rcu_lock_domain_by_id) while the mapper keeps it a
    // zombie; an entry nobody pins meets its torn-down p2m: GNTST_bad_page.
    expect(outOf(r, 2, 'map_GNTST_bad_page'), explain(r)).toBeGreaterThan(0);
    expect(outOf(r, 2, 'unmap_fail')).toBe(0);
    expect(outOf(r, 2, 'bad_content')).toBe(0);
    expect(r.domains[1]!.state).not.toBe('running');
    // Everything came back once the mapper let go.
    expect(r.frames.free).toBe(r.frames.total);
  });
});
