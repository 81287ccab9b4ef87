import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// `npm run mutate` (stryker.config.json): the fast unit tests that exercise
// the mutated files, not the whole-system suite (docs/verification.md §7).
export default defineConfig({
  test: {
    ...base.test,
    include: ['hypervisor/xen/iomem.test.ts', 'hypervisor/designs/primitives/primitives.test.ts'],
  },
});
