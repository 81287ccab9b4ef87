import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// `npm run mutate` (stryker.config.mjs): the fast unit tests that exercise
// the mutated files, not the whole-system suite (docs/verification.md §8).
const TESTS = [
  'hypervisor/xen/iomem.test.ts',
  'hypervisor/xen/p2m.test.ts',
  'hypervisor/xen/p2m-bounds.test.ts',
  'hypervisor/xen/mmu.test.ts',
  'hypervisor/xen/grant-table.test.ts',
  'hypervisor/xen/grant-bounds.test.ts',
  'hypervisor/xen/memory.test.ts',
  'hypervisor/xen/mm.test.ts',
  'hypervisor/designs/primitives/primitives.test.ts',
  'hypervisor/designs/primitives/refusals.test.ts',
  'hypervisor/designs/primitives/primitives-bounds.test.ts',
  'hypervisor/designs/primitives/return-bounds.test.ts',
  'hypervisor/designs/primitives/design-bounds.test.ts',
  // The registry index against the scans it replaced (8 000 random steps, 8–18 s): it imports registry.ts
  // alone, so per-test coverage runs it for registry.ts's mutants only.
  'hypervisor/designs/primitives/registry.test.ts',
];
// mmu.test.ts's property tests (160 machines, ~3.5 s of the subset's ~6 s) run for every mutant that
// survives: a `MUTATE=` run of the grant table or the primitives only (stryker.config.mjs) leaves them out.
const NEEDS_MMU_TESTS = new Set(['rangeset', 'iomem', 'p2m', 'mmu', 'memory', 'mm']);

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
    include: process.env['MUTATE'] !== undefined && process.env['MUTATE'].split(',').every((n) => !NEEDS_MMU_TESTS.has(n.trim())) ? TESTS.filter((f) => !f.endsWith('/mmu.test.ts')) : TESTS,
  },
});
