/**
 * Every scenario under examples/scenarios/ is SUCCESS; and each deliberate
 * bug of the primitives makes at least one of them fail (the checker and the
 * scenarios are proven, not assumed).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DESIGN_NAMES } from '../hypervisor/designs/index.js';
import { NOT_FOUND_BY_SIM, parseBuggify, NO_BUGS } from '../hypervisor/xen/buggify.js';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';
import { scenarioCommand } from '../orchestrator/scenario/command.js';

const dir = join(PROJECT_ROOT, 'examples', 'scenarios');
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => join('examples', 'scenarios', f));

describe('scenarios', () => {
  it(`all ${files.length} scenarios under examples/scenarios/ are SUCCESS`, async () => {
    expect(files.length).toBeGreaterThanOrEqual(60);
    const { results, exitCode } = await scenarioCommand(files, { buggify: NO_BUGS, quiet: true });
    const bad = results.filter((r) => r.verdict !== 'SUCCESS').map((r) => `${r.name}: ${r.verdict} — ${r.reason}`);
    expect(bad).toEqual([]);
    expect(exitCode).toBe(0);
  });

  // For each bug, the scenarios that catch it (found by running all of them with the bug on).
  const catches: Array<[string, string[]]> = [
    ['skip-tlb-flush-on-revoke', ['lifecycle-destroy-backend-with-maps', 'interact-bar-vs-ram']],
    ['revoke-skip-nested', ['revoke-nested-only', 'revoke-range-transitive']],
    ['steal-skip-grant-check', ['steal-granted-ebusy']],
    ['steal-skip-refcount-check', ['steal-foreign-mapped-ebusy', 'steal-grant-mapped-ebusy']],
    ['map-as-ram-rw', ['lifecycle-destroy-frontend-with-maps', 'map-ram-roundtrip']],
    // Issue 13, fidelity: each switch brings an old deviation back (docs/fidelity.md).
    ['steal-record-by-gfn', ['fidelity-steal-tied-to-frame']],
    ['revoke-dead-frontend-esrch', ['fidelity-revoke-dead-frontend', 'fidelity-revoke-range-not-a-slot']],
    ['steal-keeps-quota', ['fidelity-steal-quota-moves', 'return-quota-moves-back', 'fidelity-memop-reservation']],
    ['return-revoke-before-checks', ['fidelity-return-all-or-nothing', 'return-ebusy-backend-reference']],
    ['fault-to-first-server', ['fidelity-fault-to-mapping-backend']],
    ['iomem-exact-ranges', ['fidelity-iomem-rangeset', 'map-bar-iomem-caps-eperm']],
    ['iomem-permission-unchecked-caller', ['fidelity-iomem-caller-caps', 'foundation-iomem-permit', 'map-bar-frontend-caps-ignored']],
    ['mapped-gfn-distinguishable', ['fidelity-memop-mapped-like-hole', 'fidelity-foreign-map-onto-populated']],
    ['foreign-map-old-rules', ['fidelity-foreign-map-authority', 'fidelity-foreign-map-crashed', 'fidelity-foreign-map-onto-populated']],
    ['memop-errno-per-call', ['fidelity-memop-extents-done']],
    ['occupied-gfn-eexist', ['fidelity-memop-populate-occupied', 'fidelity-memop-reservation']],
    ['grant-map-status-before-checks', ['fidelity-grant-refused-map-no-status']],
    ['revoke-put-before-flush', ['fidelity-revoke-rights-until-flushed']],
    ['grant-map-refuse-crashed-granter', ['fidelity-grant-crashed-granter', 'fidelity-grant-dying-granter']],
    // Issue 15: each design's unsafe variant fails its refusal scenario (docs/designs.md).
    ['grants-end-access-while-mapped', ['design-grants-refusals', 'foundation-grant-end-while-mapped']],
    ['pinned-userptr-unpin-while-mapped', ['design-pinned-userptr-refusals', 'foundation-foreign-map']],
    ['lending-revoke-skip-flush', ['design-lending-refusals']],
    ['lending-lent-in-iommu', ['design-lending-iommu']],
  ];
  // Issue 15: a design that breaks a rule shows it (docs/designs.md). The seed's primitives predate the
  // design-* scenarios: their refusals and unsafe variants are the map/revoke/steal/return scenarios above.
  it.each(DESIGN_NAMES.filter((d) => d !== 'primitives').map((d) => [d]))('design %s has refusal scenarios naming it and an unsafe variant one of them catches', (design) => {
    const own = files.filter((f) => f.includes(`design-${design}-`));
    expect(own.length).toBeGreaterThan(0);
    for (const f of own) expect(readFileSync(join(PROJECT_ROOT, f), 'utf8'), f).toMatch(new RegExp(`^  design: ${design}$`, 'm'));
    const variants = catches.filter(([bug, names]) => bug.startsWith(`${design}-`) && names.some((n) => n.startsWith(`design-${design}-`)));
    expect(variants.map(([bug]) => bug), `an XGSIM_BUGGIFY switch named ${design}-… in catches`).not.toEqual([]);
  });

  it('every bug the simulator cannot find is caught by a scenario here, or named with the test that catches it', () => {
    const byScenario = new Set(catches.map(([b]) => b));
    const missing = Object.entries(NOT_FOUND_BY_SIM).filter(([b, why]) => !byScenario.has(b) && !/tests\/[\w-]+\.test\.ts/.test(why ?? ''));
    expect(missing).toEqual([]);
  });

  for (const [bug, names] of catches) {
    it(`with XGSIM_BUGGIFY=${bug} a scenario fails`, async () => {
      const picked = names.map((n) => join('examples', 'scenarios', `${n}.yaml`));
      const clean = await scenarioCommand(picked, { buggify: NO_BUGS, quiet: true });
      expect(clean.results.map((r) => r.verdict)).toEqual(picked.map(() => 'SUCCESS'));
      const buggy = await scenarioCommand(picked, { buggify: parseBuggify(bug), quiet: true });
      expect(buggy.results.filter((r) => r.verdict === 'FAILURE').length, JSON.stringify(buggy.results)).toBeGreaterThan(0);
      expect(buggy.exitCode).toBe(5);
    });
  }
});
