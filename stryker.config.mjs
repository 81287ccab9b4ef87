// @ts-check
/**
 * `npm run mutate`: StrykerJS over the Xen core and the four primitives
 * (docs/verification.md §8), with the fast unit tests of vitest.mutate.config.ts;
 * incremental, not in CI.
 *
 * Some files only: `MUTATE=p2m npm run mutate` (names below, comma-separated)
 * mutates those and keeps its own incremental and JSON reports
 * (.stryker/<names>.incremental.json, .stryker/<names>.mutation.json), so
 * per-file runs overwrite neither each other's nor the whole run's.
 */
const FILES = {
  rangeset: 'hypervisor/xen/rangeset.ts',
  iomem: 'hypervisor/xen/iomem.ts',
  p2m: 'hypervisor/xen/p2m.ts',
  mmu: 'hypervisor/xen/mmu.ts',
  'grant-table': 'hypervisor/xen/grant-table.ts',
  memory: 'hypervisor/xen/memory.ts',
  mm: 'hypervisor/xen/mm.ts',
  domain: 'hypervisor/xen/domain.ts',
  ioreq: 'hypervisor/xen/ioreq.ts',
  // The rest of the Xen core: not measured whole yet (docs/verification.md §8).
  locks: 'hypervisor/xen/locks.ts',
  schedule: 'hypervisor/xen/schedule.ts',
  machine: 'hypervisor/xen/machine.ts',
  'guest-cpu': 'hypervisor/xen/guest-cpu.ts',
  check: 'hypervisor/designs/primitives/check.ts',
  common: 'hypervisor/designs/primitives/common.ts',
  index: 'hypervisor/designs/primitives/index.ts',
  map: 'hypervisor/designs/primitives/map.ts',
  registry: 'hypervisor/designs/primitives/registry.ts',
  return: 'hypervisor/designs/primitives/return.ts',
  revoke: 'hypervisor/designs/primitives/revoke.ts',
  steal: 'hypervisor/designs/primitives/steal.ts',
  teardown: 'hypervisor/designs/primitives/teardown.ts',
  // The rest of the Xen core, smallest first (docs/verification.md §8).
  vcpu: 'hypervisor/xen/vcpu.ts',
  'domain-ref': 'hypervisor/xen/domain-ref.ts',
  isolation: 'hypervisor/xen/isolation.ts',
  'record-table': 'hypervisor/xen/record-table.ts',
  dm: 'hypervisor/xen/dm.ts',
  domctl: 'hypervisor/xen/domctl.ts',
  iommu: 'hypervisor/xen/iommu.ts',
};

const pick = process.env['MUTATE'];
const names = pick === undefined || pick === '' ? null : pick.split(',').map((s) => s.trim());
for (const n of names ?? []) if (!(n in FILES)) throw new Error(`MUTATE: no file named ${n} (one of ${Object.keys(FILES).join(', ')})`);
const tag = names === null ? '' : `${names.join('+')}.`;

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  // `related` (the default) runs only the test files that import a mutated file. locks-load.test.ts imports
  // locks.ts inside its test, out of the import graph's sight, so a `MUTATE=locks` run, whose tests are the
  // three lock files only (vitest.mutate.config.ts), turns the filter off.
  vitest: { configFile: 'vitest.mutate.config.ts', related: !(names?.length === 1 && names[0] === 'locks') },
  mutate: names === null ? Object.values(FILES) : names.map((n) => FILES[/** @type {keyof typeof FILES} */ (n)]),
  // Not copied into the sandbox: run records (`npm start` leaves xgsim-runs/, whose `latest` is a
  // symlink to a directory Stryker's copy fails on) and other output the unit tests never read.
  ignorePatterns: ['xgsim-runs', '.xgsim', 'out'],
  coverageAnalysis: 'perTest',
  incremental: true,
  incrementalFile: `.stryker/${tag}incremental.json`,
  tempDirName: '.stryker/tmp',
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: `.stryker/${tag}mutation.json` },
  concurrency: 1,
  // A fresh test runner every 25 mutants: one runner's test machines (SharedArrayBuffers)
  // were not given back, and it grew past 10 GB within 200 mutants.
  maxTestRunnerReuse: 25,
  // Added to 1.5 × a test's normal time: the tests are in-process and deterministic, so
  // 10 s over it is a mutant that loops (a walk that never ends, a shootdown never acked).
  timeoutMS: 10000,
};
