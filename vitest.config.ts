import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['hypervisor/**/*.test.ts', 'domains/**/*.test.ts', 'transport/**/*.test.ts', 'orchestrator/**/*.test.ts', 'tests/**/*.test.ts'],
    // Two cores: tests spawn their own vCPU threads, so running many files at
    // once only adds scheduler noise.
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
