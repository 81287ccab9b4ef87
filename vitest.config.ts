import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

// Runs the tests start keep their records here, not in the checkout's
// xgsim-runs/ (a test that looks at the store sets its own).
const runsDir = process.env['XGSIM_RUNS_DIR'] ?? mkdtempSync(join(tmpdir(), 'xgsim-test-runs-'));

export default defineConfig({
  test: {
    include: ['hypervisor/**/*.test.ts', 'domains/**/*.test.ts', 'transport/**/*.test.ts', 'orchestrator/**/*.test.ts', 'tests/**/*.test.ts'],
    // Two cores, and most files start a machine of 5–12 vCPU threads of their
    // own: one file at a time keeps the runs meaningful (and the suite ~4 min).
    maxWorkers: 1,
    fileParallelism: false,
    // The scenario command collects between scenarios when it may (orchestrator/scenario/command.ts GC_EVERY):
    // 165 scenarios' machines, shared memory V8 is slow to free, otherwise grew the worker past 8 GiB.
    execArgv: ['--expose-gc'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    env: { XGSIM_RUNS_DIR: runsDir },
  },
});
