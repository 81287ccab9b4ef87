/**
 * `xgsim check`: every shipped example validates without running, every
 * malformed file under examples/bad/ is refused with its own one line
 * (file:line:col where its first line names a position), and `--version`
 * answers.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';

const BIN = join(PROJECT_ROOT, 'bin', 'xgsim.js');
function xgsim(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
const yamls = (dir: string): string[] => readdirSync(join(PROJECT_ROOT, dir)).filter((f) => f.endsWith('.yaml')).map((f) => `${dir}/${f}`);

describe('xgsim check', () => {
  it('every shipped topology, scenario, chaos plan, campaign plan and XSA file is ok, each told apart by its keys', () => {
    const files = [...yamls('examples'), ...yamls('examples/scenarios'), ...yamls('examples/xsa'), ...yamls('examples/chaos'), ...yamls('examples/campaigns'), ...yamls('examples/sim')];
    const r = xgsim(['check', ...files]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.at(-1)).toBe(`${files.length} files: ${files.length} ok, 0 bad`);
    expect(lines.find((l) => l.startsWith('ok: examples/two-guests.yaml: '))).toMatch(/: topology two-guests: 3 domains, 6 vCPUs$/);
    expect(lines.find((l) => l.startsWith('ok: examples/chaos/smoke.yaml: '))).toMatch(/: chaos plan smoke: /);
    expect(lines.find((l) => l.startsWith('ok: examples/campaigns/revoke-chaos.yaml: '))).toMatch(/: campaign plan revoke-chaos: \d+ job templates$/);
    expect(lines.filter((l) => / scenario [\w-]+: \d+ steps/.test(l)).length).toBeGreaterThanOrEqual(100);
  });

  it('every file under examples/bad/ is refused: one line each, its position, exit 2; a good one beside them still says ok', () => {
    const bad = readdirSync(join(PROJECT_ROOT, 'examples', 'bad')).filter((f) => f.endsWith('.yaml')).sort();
    expect(bad.length).toBeGreaterThanOrEqual(100);
    // Read as the kind their names say (a file missing its defining key, e.g. a topology with no `domains`, cannot be told apart otherwise).
    for (const kind of ['topology', 'scenario', 'chaos', 'campaign'] as const) {
      const mine = bad.filter((f) => f.startsWith(`${kind}-`));
      expect(mine.length, kind).toBeGreaterThan(0);
      const r = xgsim(['check', '--as', kind, ...mine.map((f) => `examples/bad/${f}`), ...(kind === 'topology' ? ['examples/two-guests.yaml'] : [])]);
      expect(r.code, kind).toBe(2);
      const good = kind === 'topology' ? 1 : 0;
      expect(r.stdout.trim().split('\n').at(-1), kind).toBe(`${mine.length + good} files: ${good} ok, ${mine.length} bad`);
      const errors = r.stderr.trim().split('\n');
      expect(errors, kind).toHaveLength(mine.length);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      for (const f of mine) {
        const line = errors.find((l) => l.startsWith(`xgsim: examples/bad/${f}`));
        expect(line, f).toBeDefined();
        const m = /line (\d+), col (\d+)/.exec(readFileSync(join(PROJECT_ROOT, 'examples', 'bad', f), 'utf8').split('\n')[0]!);
        if (m !== null) expect(line, f).toContain(`${f}:${m[1]}:${m[2]}`);
      }
    }
  });

  it('--as reads a file as the kind it names; a file of no kind is refused with a hint', () => {
    const asScenario = xgsim(['check', '--as', 'scenario', 'examples/two-guests.yaml']);
    expect(asScenario.code).toBe(2);
    expect(asScenario.stderr).toMatch(/^xgsim: examples\/two-guests\.yaml:\d+:\d+: /);
    const none = xgsim(['check', 'package-lock.json']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/cannot tell what this is: .* say it with --as\n$/);
    expect(xgsim(['check', '--as', 'recipe', 'examples/two-guests.yaml']).stderr).toMatch(/--as: expected one of topology, scenario, chaos, campaign, sim-replay/);
  });

  it('a plan may not name a file outside its directory and the working directory, unless allowed; the file is never quoted', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xgsim-outside-'));
    const plan = join(dir, 'c.yaml');
    writeFileSync(plan, 'name: outside\njobs:\n  - { kind: up, topology: /etc/hostname }\n');
    const secret = readFileSync('/etc/hostname', 'utf8').trim();
    const r = xgsim(['check', plan]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/c\.yaml:3:\d+: jobs\[0\]\.topology: `\/etc\/hostname` is outside the plan's directory and the working directory \(XGSIM_ALLOW_OUTSIDE_PATHS=1 or --allow-outside-paths allows it\)/);
    const allowed = spawnSync(process.execPath, [BIN, 'check', plan], { cwd: PROJECT_ROOT, encoding: 'utf8', env: { ...process.env, XGSIM_ALLOW_OUTSIDE_PATHS: '1' } });
    expect(allowed.status).toBe(2); // read now, and refused as a topology — without its contents
    expect(allowed.stderr).not.toMatch(/is outside/);
    if (secret.length >= 4) expect(allowed.stderr + r.stderr).not.toContain(secret);
  });

  it('--version prints the package version', () => {
    const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = xgsim(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`xgsim ${pkg.version} (Node ${process.versions.node})\n`);
  });
});
