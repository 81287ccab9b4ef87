/**
 * The simulator's cost model (hypervisor/host/sim/cost-model.ts): the flat
 * model is the simulator as it always was (same hash, same clock); a
 * measured one moves the clock by what each operation costs, names itself
 * in the replay command, and travels whole in a shrunk replay file; a bad
 * file is one line and exit 2.
 */
import { NO_BUGS } from '../hypervisor/xen/buggify.js';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FLAT_COST_MODEL, loadCostModel, type CostModel } from '../hypervisor/host/sim/cost-model.js';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';
import { simOnce } from '../orchestrator/sim/sim.js';

const BIN = join(PROJECT_ROOT, 'bin', 'xgsim.js');
const dir = mkdtempSync(join(tmpdir(), 'xgsim-cost-'));
const write = (name: string, body: string): string => {
  const f = join(dir, name);
  writeFileSync(f, body);
  return f;
};
const dear: CostModel = { source: 'test: every operation dear', step_us: 2, access_us: 0.5, hypercall_us: 3, shootdown_us: 40, ioreq_us: 200, gpu_command_us: 50 };

describe('the cost model', () => {
  it('flat (a file with the flat figures) is the simulator as without one: the same decisions, the same clock', async () => {
    const flat = write('flat.json', JSON.stringify(FLAT_COST_MODEL));
    const a = await simOnce({ seed: 11, steps: 3000, strategy: 'random', buggify: NO_BUGS });
    const b = await simOnce({ seed: 11, steps: 3000, strategy: 'random', buggify: NO_BUGS, costModel: flat });
    expect(b.hash).toBe(a.hash);
    expect(b.sim_us).toBe(a.sim_us);
    expect(a.replay).not.toContain('--cost-model');
    expect(b.replay).toContain(`--cost-model ${flat}`);
  });

  it('a dearer model moves the clock further for the same seed, and the run is as deterministic as ever', async () => {
    const f = write('dear.json', JSON.stringify(dear));
    const a = await simOnce({ seed: 12, steps: 3000, strategy: 'random', buggify: NO_BUGS });
    const b = await simOnce({ seed: 12, steps: 3000, strategy: 'random', buggify: NO_BUGS, costModel: f });
    const c = await simOnce({ seed: 12, steps: 3000, strategy: 'random', buggify: NO_BUGS, costModel: f });
    expect(b.sim_us).toBeGreaterThan(a.sim_us);
    expect(c.hash).toBe(b.hash);
    expect(c.sim_us).toBe(b.sim_us);
  });

  it('a shrunk replay file carries the model whole, and replays with it', () => {
    const f = write('shrink.json', JSON.stringify(dear));
    const out = join(dir, 'replay.yaml');
    const env = { ...process.env, XGSIM_BUGGIFY: 'skip-tlb-flush-on-revoke' };
    const found = spawnSync(process.execPath, [BIN, 'sim', '--seed', '1', '--steps', '3000', '--cost-model', f, '--shrink', '--write', out], { cwd: PROJECT_ROOT, encoding: 'utf8', env, timeout: 300_000 });
    expect(found.status, found.stderr).toBe(1);
    const replay = readFileSync(out, 'utf8');
    expect(replay).toContain(`cost_model: ${JSON.stringify(dear)}`);
    // The model file may be gone by then: the replay holds it.
    rmSync(f);
    const again = spawnSync(process.execPath, [BIN, 'sim', '--replay', out], { cwd: PROJECT_ROOT, encoding: 'utf8', env: { ...process.env, XGSIM_BUGGIFY: '' }, timeout: 300_000 });
    expect(again.stdout).toContain('expected fail: reproduced');
  });

  it('a file that is not a cost model: one line naming the file and what is wrong', () => {
    expect(() => loadCostModel(join(dir, 'none.json'))).toThrow(/none\.json: no such file/);
    expect(() => loadCostModel(write('text.json', 'hello'))).toThrow(/not JSON/);
    expect(() => loadCostModel(write('neg.json', JSON.stringify({ ...dear, ioreq_us: -1 })))).toThrow(/ioreq_us/);
    expect(() => loadCostModel(write('extra.json', JSON.stringify({ ...dear, typo_us: 1 })))).toThrow(/typo_us|unrecognized/i);
    expect(() => loadCostModel(dir)).toThrow(/not a regular file/);
  });

  it('xgsim sim --cost-model with a bad file exits 2 with one line; with a good one it says which model it runs', () => {
    const bad = spawnSync(process.execPath, [BIN, 'sim', '--seed', '1', '--steps', '100', '--cost-model', join(dir, 'none.json')], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^xgsim: --cost-model: .*none\.json: no such file/);
    const good = spawnSync(process.execPath, [BIN, 'sim', '--seed', '1', '--steps', '500', '--no-liveness', '--cost-model', write('good.json', JSON.stringify(dear))], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(good.status, good.stderr).toBe(0);
    expect(good.stderr).toContain('cost model: test: every operation dear: decision 2.00 µs, access 0.50 µs, hypercall 3.00 µs, shootdown 40 µs, ioreq 200 µs, GPU command 50 µs');
  });

  it('xgsim bench --cost-model with a --filter that leaves out a section it needs: exit 2 before measuring', () => {
    const r = spawnSync(process.execPath, [BIN, 'bench', '--filter', 'access', '--cost-model', join(dir, 'out.json')], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--cost-model: needs the access, hypercall, ioreq sections/);
  });
});
