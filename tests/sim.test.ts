/**
 * `xgsim sim` as a user drives it: the determinism check, exploration of a
 * seed range, a BUGGIFY bug found with a replay command that reproduces it,
 * shrinking to a replay file, and bad input → one line, exit 2.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';

const BIN = join(PROJECT_ROOT, 'bin', 'xgsim.js');

function xgsim(args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: PROJECT_ROOT, encoding: 'utf8', env: { ...process.env, XGSIM_BUGGIFY: '', ...env }, timeout: 300_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Run a printed replay command (`[XGSIM_BUGGIFY=x ]npx xgsim sim …`) through bin/xgsim.js. */
function runReplay(cmd: string): { code: number; stdout: string; stderr: string } {
  const m = /^(?:XGSIM_BUGGIFY=(\S+) )?npx xgsim (.*)$/.exec(cmd);
  expect(m, cmd).not.toBeNull();
  return xgsim(m![2]!.split(' '), m![1] !== undefined ? { XGSIM_BUGGIFY: m![1] } : {});
}

describe('xgsim sim', () => {
  it('--check-determinism: two runs of a seed, identical hashes, steps/s reported', () => {
    const seed = process.env['SEED'] ?? String(Math.floor(Math.random() * 2 ** 31));
    console.log(`[xgsim sim determinism] seed ${seed}`);
    const r = xgsim(['sim', '--seed', seed, '--steps', '30000', '--check-determinism', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`seed ${seed}`);
    const j = JSON.parse(r.stdout) as { verdict: string; hash: string; steps: number; tail_steps: number; swarm: Record<string, string[]> | null; steps_per_s: number; sim_ratio: number; determinism: { identical: boolean; runs: Array<{ hash: string }> } };
    expect(j.verdict).toBe('pass');
    // Liveness mode and swarm testing are the command's defaults: a quiet tail after the 30000 steps, a drawn subset.
    expect(j.tail_steps).toBeGreaterThan(0);
    expect(j.steps).toBeGreaterThanOrEqual(30000 + j.tail_steps);
    expect(j.swarm).not.toBeNull();
    expect(j.determinism.identical).toBe(true);
    expect(j.determinism.runs.map((x) => x.hash)).toEqual([j.hash, j.hash]);
    expect(j.steps_per_s).toBeGreaterThan(0);
    expect(j.sim_ratio).toBeGreaterThan(0);
  });

  it('--seeds explores a range: no failure without a bug', () => {
    const r = xgsim(['sim', '--topology', 'examples/sim/default.yaml', '--seeds', '1..4', '--json']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const j = JSON.parse(r.stdout) as { runs: number; failed: number; stuck: number; real_ms: number; sim_ms: number; sim_ratio: number; cost_model: { source: string } };
    expect(j).toMatchObject({ runs: 4, failed: 0, stuck: 0 });
    // Simulated time of the four runs, its ratio to their real time, and the cost model that charged it.
    expect(j.sim_ms).toBeGreaterThan(0);
    expect(j.sim_ratio).toBeCloseTo(j.sim_ms / j.real_ms, 1);
    expect(j.cost_model.source).toBe('flat');
  });

  it('with a BUGGIFY bug: finds it, prints a replay command that reproduces it, shrinks it to a replay file that does too', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xgsim-sim-'));
    const file = join(dir, 'found.yaml');
    const bug = 'skip-tlb-flush-on-revoke';
    const r = xgsim(['sim', '--seeds', '1..30', '--shrink', '--write', file, '--json'], { XGSIM_BUGGIFY: bug });
    expect(r.code, r.stderr).toBe(1);
    const j = JSON.parse(r.stdout) as { failed: number; first_failing_seed: number; failures: Array<{ seed: number; step: number; reason: string; replay: string }>; written: string };
    expect(j.failed).toBeGreaterThan(0);
    const f = j.failures[0]!;
    expect(f.seed).toBe(j.first_failing_seed);
    expect(f.replay).toContain(`XGSIM_BUGGIFY=${bug}`);
    expect(f.replay).toContain(`--seed ${f.seed} --steps ${f.step}`);
    // The printed command reproduces the failure, with the same reason.
    const again = runReplay(f.replay);
    expect(again.code, again.stderr).toBe(1);
    expect(again.stdout).toContain(`failed at step ${f.step}`);
    expect(again.stdout).toContain(f.reason.slice(0, 60));
    // The shrunk replay file exists, says what it is, and fails when run.
    expect(j.written).toBe(file);
    expect(existsSync(file)).toBe(true);
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('kind: sim-replay');
    expect(text).toContain(`buggify: [${bug}]`);
    // The subset of behaviours the seed drew (swarm testing, the default) is written down: a replay runs that one.
    expect(text).toMatch(/^swarm: \{"/m);
    const rep = xgsim(['sim', '--replay', file]);
    expect(rep.code, rep.stderr).toBe(1);
    expect(rep.stdout).toContain('expected fail: reproduced');
    // …and is a scenario: SUCCESS while it fails as expected, FAILURE once it says `expect: pass`.
    const sc = xgsim(['scenario', file]);
    expect(sc.code, sc.stderr + sc.stdout).toBe(0);
    expect(sc.stdout).toMatch(/sim seed \d+: SUCCESS — failed at step \d+/);
    writeFileSync(file, text.replace('expect: fail', 'expect: pass'));
    const sc2 = xgsim(['scenario', file]);
    expect(sc2.code).toBe(5);
    expect(sc2.stdout).toContain('FAILURE');
  });

  it('bad input: one line, exit 2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xgsim-sim-bad-'));
    const badYaml = join(dir, 'bad.yaml');
    writeFileSync(badYaml, 'kind: sim-replay\nseed: [1\n');
    const notReplay = join(dir, 'not.yaml');
    writeFileSync(notReplay, 'name: x\n');
    const cases: Array<[string[], RegExp]> = [
      [['sim', '--seeds', '5..1'], /--seeds: 5\.\.1 is empty/],
      [['sim', '--seeds', 'many'], /--seeds: expected a\.\.b/],
      [['sim', '--steps', '0'], /--steps: expected an integer/],
      [['sim', '--strategy', 'fifo'], /--strategy: expected random, pct or mixed/],
      [['sim', '--seed', '1', '--seeds', '1..2'], /give one of them/],
      [['sim', 'examples/no-such.yaml'], /no-such\.yaml/],
      [['sim', '--topology', 'examples/no-such.yaml'], /no-such\.yaml/],
      [['sim', 'examples/two-guests.yaml', '--topology', 'examples/gpu-desktop.yaml'], /two topologies/],
      [['sim', '--replay', badYaml], /bad\.yaml:\d+:\d+: /],
      [['sim', '--replay', notReplay], /kind: sim-replay` missing/],
    ];
    for (const [args, re] of cases) {
      const r = xgsim(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines.length, r.stderr).toBe(1);
      expect(lines[0]).toMatch(re);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const b = xgsim(['sim', '--seed', '1'], { XGSIM_BUGGIFY: 'no-such-bug' });
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/unknown bug `no-such-bug`/);
  });
});
