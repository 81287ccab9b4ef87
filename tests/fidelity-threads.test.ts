/**
 * The fidelity switches (docs/fidelity.md) on real threads: the simulator's
 * default topology (examples/sim/default.yaml) run as a host, each vCPU on
 * its own worker thread, for a short while with one switch on. The
 * workloads check the answers Xen (or the seed) gives — dom0's toolstack
 * and device model, the adversary's memop-probe and steal-reuse, the
 * viewer — and the run's summary must carry the switch's own failed check
 * (or violation). The same run with no switch has none of them.
 * `xgsim sim` finds each switch too (hypervisor/host/sim/sim.test.ts).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Host } from '../hypervisor/host/host.js';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';
import { parseBuggify } from '../hypervisor/xen/buggify.js';
import { loadTopology } from '../orchestrator/config/topology.js';
import { hostSpecOf } from '../orchestrator/up/host-spec.js';
import { explain, runFor, signatures, testSeed, untilCaught } from './harness.js';

const TOPOLOGY = join(PROJECT_ROOT, 'examples', 'sim', 'default.yaml');
/** How long the clean run goes on once every vCPU runs. */
const RUN_MS = 600;
/** A run with a switch on goes on until a check fails or an invariant is violated, at most this long. */
const CATCH_MS = 15_000;
/**
 * The adversary plays only the attacks whose checks a run needs, so that
 * each comes round often within it: steal-record-by-gfn needs many
 * steal-reuse rounds (each meets the bug's path only when its second Steal
 * lands where the first was and the device model Returns without a Map of
 * its own first).
 */
const attacksFor = (bug: string): string[] => (bug === 'steal-record-by-gfn' ? ['steal-reuse'] : ['memop-probe', 'steal-reuse', 'balloon-mapped']);
/** The switches the adversary's checks catch (the others need it dead, or not at all). */
const ADVERSARY_CAUGHT = new Set(['mapped-gfn-distinguishable', 'memop-errno-per-call', 'occupied-gfn-eexist', 'steal-record-by-gfn']);

/** What each switch must leave in the summary: a counter of a failed check, or an invariant's violation. */
const SIGNATURES: ReadonlyArray<[string, RegExp]> = [
  ['iomem-exact-ranges', /^failed_toolstack_iomem_deny_middle_got_/],
  ['iomem-permission-unchecked-caller', /^failed_toolstack_iomem_permit_unheld_got_0$/],
  ['foreign-map-old-rules', /^failed_toolstack_foreign_map_self_got_0$/],
  ['mapped-gfn-distinguishable', /^succeeded_memop-probe$/],
  ['memop-errno-per-call', /^failed_(memop_errno|populate_far)_/],
  ['occupied-gfn-eexist', /^failed_(remove_own_ram|populate_over_ram)_/],
  ['steal-keeps-quota', /^failed_quota_moved_/],
  ['return-revoke-before-checks', /^failed_return_got_-17$/],
  ['fault-to-first-server', /^failed_viewer_fault_misrouted$/],
  ['revoke-dead-frontend-esrch', /^failed_revoke_(released|gone)_frontend_got_-3$/],
  ['steal-record-by-gfn', /^records_match_frames$/],
];

/** The topology with a short attack list; `crash_ms`: the adversary crashes then, and the toolstack destroys it (its backend is told through xenstore). */
function spec(seed: number, bug: string, crash_ms?: number): ConstructorParameters<typeof Host>[0] {
  const s = hostSpecOf(loadTopology(TOPOLOGY), { seed, checking: true, buggify: parseBuggify(bug), check_interval_ms: 100 });
  const domains = s.domains.map((d) => (d.name === 'evil' ? { ...d, workload: { ...d.workload, attacks: attacksFor(bug) } } : d));
  return { ...s, domains, transport: { kind: 'ring' }, ...(crash_ms !== undefined ? { chaos: [{ at_ms: crash_ms, kind: 'crash-domain', target: 'evil' }] } : {}) };
}


describe('fidelity switches on real threads', () => {
  it('the run with no switch on has no failed check and no violation', async () => {
    const seed = testSeed('fidelity threads clean');
    const r = await runFor(new Host(spec(seed, '', RUN_MS / 2)), RUN_MS);
    expect(signatures(r), explain(r)).toEqual([]);
    expect(r.stats['check_fails'], explain(r)).toBe(0);
    expect(r.errors).toEqual([]);
  });

  it.each(SIGNATURES.map(([bug, sig]) => [bug, sig]))('XGSIM_BUGGIFY=%s leaves its failed check %s', async (bug, sig) => {
    const seed = testSeed(`fidelity threads ${bug}`);
    const r = await runFor(new Host(spec(seed, bug, ADVERSARY_CAUGHT.has(bug) ? undefined : RUN_MS / 4)), 0, (h) => untilCaught(h, CATCH_MS));
    const got = signatures(r);
    expect(got.some((k) => sig.test(k)), `${bug}: ${got.join(', ')}; ${explain(r).slice(0, 2000)}`).toBe(true);
  });
});
