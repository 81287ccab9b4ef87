import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// `npm run mutate` (stryker.config.mjs): the fast unit tests that exercise
// the mutated files, not the whole-system suite (docs/verification.md §8).
const TESTS = [
  'hypervisor/xen/iomem.test.ts',
  'hypervisor/xen/p2m.test.ts',
  'hypervisor/xen/p2m-bounds.test.ts',
  'hypervisor/xen/mmu.test.ts',
  'hypervisor/xen/mmu-bounds.test.ts',
  'hypervisor/xen/grant-table.test.ts',
  'hypervisor/xen/grant-bounds.test.ts',
  'hypervisor/xen/memory.test.ts',
  'hypervisor/xen/memory-bounds.test.ts',
  'hypervisor/xen/mm.test.ts',
  'hypervisor/xen/locks.test.ts',
  'hypervisor/xen/locks-bounds.test.ts',
  'hypervisor/xen/locks-load.test.ts',
  'hypervisor/xen/bufioreq.test.ts',
  'hypervisor/xen/ioreq-bounds.test.ts',
  'hypervisor/xen/domain-bounds.test.ts',
  'hypervisor/xen/schedule-bounds.test.ts',
  'hypervisor/xen/machine-bounds.test.ts',
  'hypervisor/xen/guest-cpu-bounds.test.ts',
  'hypervisor/designs/primitives/primitives.test.ts',
  'hypervisor/designs/primitives/refusals.test.ts',
  'hypervisor/designs/primitives/primitives-bounds.test.ts',
  'hypervisor/designs/primitives/return-bounds.test.ts',
  'hypervisor/designs/primitives/design-bounds.test.ts',
  'hypervisor/designs/primitives/common-bounds.test.ts',
  // The registry index against the scans it replaced (8 000 random steps, 8–18 s): it imports registry.ts
  // alone, so per-test coverage runs it for registry.ts's mutants only.
  'hypervisor/designs/primitives/registry.test.ts',
  // The rest of the Xen core (vcpu, domain-ref, isolation, record-table, dm, domctl, iommu): their own tests.
  // Not schedule.test.ts: schedule.ts keeps each slot's credit in module arrays of the thread (since_us,
  // burnt_us), which this config's shared module graph carries from file to file, so its boost test failed
  // a dry run when a file that burnt slot 2's credit happened to run first (docs/verification.md §8).
  'hypervisor/xen/isolation.test.ts',
  'hypervisor/xen/iommu.test.ts',
  'hypervisor/xen/vcpu-bounds.test.ts',
  'hypervisor/xen/domain-ref-bounds.test.ts',
  'hypervisor/xen/isolation-bounds.test.ts',
  'hypervisor/xen/record-table-bounds.test.ts',
  'hypervisor/xen/dm-bounds.test.ts',
  'hypervisor/xen/domctl-bounds.test.ts',
  'hypervisor/xen/iommu-bounds.test.ts',
];
// mmu.test.ts's property tests (160 machines, ~3.5 s of the subset's ~6 s) run for every mutant that
// survives: a `MUTATE=` run of the grant table or the primitives only (stryker.config.mjs) leaves them out.
const NEEDS_MMU_TESTS = new Set(['rangeset', 'iomem', 'p2m', 'mmu', 'memory', 'mm']);
// The primitives' shared files (the registry, its look-ups, the checker's pass, teardown, the design object)
// are reached by nearly every test, so each surviving mutant ran the whole subset (~35 s at load 10–20).
// `MUTATE=` of these only runs the primitives' own tests: fewer tests can only kill fewer mutants, so such
// a run's score is a lower bound of the whole subset's (docs/verification.md §8).
const PRIMITIVES_SHARED = new Set(['check', 'common', 'registry', 'index', 'teardown']);
// locks.ts is imported by nearly every test (every machine has a LockSpace), so each surviving mutant ran
// the whole subset, and a run of its 630 mutants stopped at half after 30 min. `MUTATE=locks` runs the lock
// tests only: as with PRIMITIVES_SHARED, the score is then a lower bound of the whole subset's. Their worker
// tests load locks.ts compiled from dist/, never the mutated source: they kill only through the calls made
// on the test's own thread.
const LOCK_TESTS = ['hypervisor/xen/locks.test.ts', 'hypervisor/xen/locks-bounds.test.ts', 'hypervisor/xen/locks-load.test.ts'];
// domain.ts builds every test machine (testMachine creates and populates its domains) and destroys them, so each
// surviving mutant of it ran the whole subset (~26 s at load 8–10, 2026-12-07). `MUTATE=domain` runs only the tests
// that drive it on purpose: its own bounds tests, the IOREQ ones (servers a death takes), and the two that destroy
// domains with foreign maps, grants, Steals and Maps still held. A lower bound, as PRIMITIVES_SHARED's.
const DOMAIN_TESTS = ['hypervisor/xen/domain-bounds.test.ts', 'hypervisor/xen/ioreq-bounds.test.ts', 'hypervisor/xen/memory-bounds.test.ts', 'hypervisor/designs/primitives/design-bounds.test.ts'];
// machine.ts builds every test's machine, so every test covers its constructor: `MUTATE=machine` alone runs
// machine-bounds.test.ts and schedule-bounds.test.ts only, a lower bound as above.
const MACHINE_TESTS = ['hypervisor/xen/machine-bounds.test.ts', 'hypervisor/xen/schedule-bounds.test.ts'];
const picked = process.env['MUTATE']?.split(',').map((n) => n.trim()) ?? [];
function include(): string[] {
  if (picked.length === 1 && picked[0] === 'locks') return LOCK_TESTS;
  if (picked.length === 1 && picked[0] === 'domain') return DOMAIN_TESTS;
  if (picked.length === 1 && picked[0] === 'machine') return MACHINE_TESTS;
  if (picked.length > 0 && picked.every((n) => PRIMITIVES_SHARED.has(n))) return TESTS.filter((f) => f.includes('/designs/primitives/'));
  return picked.length > 0 && picked.every((n) => !NEEDS_MMU_TESTS.has(n)) ? TESTS.filter((f) => !f.endsWith('/mmu.test.ts')) : TESTS;
}

export default defineConfig({
  test: {
    ...base.test,
    // Stryker's vitest runner runs the tests in worker threads, which refuse node flags (--expose-gc was one).
    execArgv: [],
    // As the mutation runs were measured: one file at a time (the suite's config runs two).
    maxWorkers: 1,
    fileParallelism: false,
    // One module graph for every file and run: the dry run 14 s → 6 s, a mutant ~20 % faster.
    // Stryker switches mutants at run time (__stryker__.activeMutant), no re-import needed.
    isolate: false,
    include: include(),
  },
});
