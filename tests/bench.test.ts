/**
 * `xgsim bench --quick` as a smoke test: it runs, measures its floors and
 * prints every figure with a ratio. No assertion on timing (speed belongs
 * to the benchmark itself, not to the tests).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../hypervisor/worker-path.js';

describe('xgsim bench --quick', () => {
  it('measures the floors and reports every figure as a ratio to one', () => {
    const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'xgsim.js'), 'bench', '--quick', '--json'], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout) as { floors: Record<string, number>; rows: Array<{ figure: string; ratio: number; floor_value: number }>; machine: { cores: number } };
    for (const f of ['raw_access_per_s', 'lock_pair_ns', 'spin_pingpong_p50_us', 'wait_pingpong_p50_us']) expect(rep.floors[f], f).toBeGreaterThan(0);
    const figures = rep.rows.map((x) => x.figure);
    for (const f of ['guest access through p2m + software TLB', 'null hypercall on a vCPU thread', 'ring IOREQ round trip, server hot (p50)', 'ring IOREQ round trip, server idle (p50)']) expect(figures).toContain(f);
    for (const x of rep.rows) {
      expect(Number.isFinite(x.ratio), x.figure).toBe(true);
      expect(x.floor_value, x.figure).toBeGreaterThan(0);
    }
    expect(rep.machine.cores).toBeGreaterThan(0);
  });
});
