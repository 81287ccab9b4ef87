import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['hypervisor/**/*.test.ts', 'domains/**/*.test.ts', 'transport/**/*.test.ts', 'orchestrator/**/*.test.ts', 'tests/**/*.test.ts'],
    // Two cores, and most files start a machine of 5–12 vCPU threads of their
    // own: one file at a time keeps the runs meaningful (and the suite ~4 min).
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
