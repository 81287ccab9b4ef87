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
    // Two files at a time on the two cores. Most files start a machine of
    // 5–12 vCPU threads of their own, but many of them spend their time
    // waiting (a run's duration, a host's claim, a nemesis's window), and no
    // test asserts a time: two at once took the suite from 871 s to 745 s
    // at load ~10 (2026-12-07), every test passing. Files use their own
    // Redis keys, run stores and redis-servers, so two never see each other.
    maxWorkers: 2,
    fileParallelism: true,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    env: { XGSIM_RUNS_DIR: runsDir },
  },
});
