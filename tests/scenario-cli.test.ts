/**
 * `xgsim scenario` as xtf-runner's users expect it: the worst result decides
 * the exit code (SUCCESS 0, SKIP 3, ERROR 4, FAILURE 5; 2 for bad input),
 * `--list` runs nothing, `-q`/`-qq` print less, `--junit` writes JUnit XML.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';
import { scenarioExitCode } from '../orchestrator/scenario/command.js';
import { junitXml, xmlText } from '../orchestrator/scenario/junit.js';
import type { ScenarioResult, Verdict } from '../orchestrator/scenario/run.js';

const BIN = join(PROJECT_ROOT, 'bin', 'xgsim.js');
const OK = 'examples/scenarios/foundation-grant-bad-gntref.yaml';
// Caught by skip-tlb-flush-on-revoke (tests/scenarios.test.ts's catches list).
const CAUGHT = 'examples/scenarios/lifecycle-destroy-backend-with-maps.yaml';

function xgsim(args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, 'scenario', ...args], { cwd: PROJECT_ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A copy of OK that says `skip:`. */
function skipped(): string {
  const f = join(mkdtempSync(join(tmpdir(), 'xgsim-scn-')), 'skipped-one.yaml');
  writeFileSync(f, readFileSync(join(PROJECT_ROOT, OK), 'utf8').replace(/^name: .*$/m, 'name: skipped-one\nskip: "not on this host"'));
  return f;
}

describe('xgsim scenario, xtf-runner style', () => {
  it('the worst result decides the exit code: FAILURE > ERROR > SKIP > SUCCESS', () => {
    const r = (...v: Verdict[]): ScenarioResult[] => v.map((verdict) => ({ file: 'x.yaml', name: 'x', verdict, reason: '' }));
    expect(scenarioExitCode(r())).toBe(0);
    expect(scenarioExitCode(r('SUCCESS', 'SUCCESS'))).toBe(0);
    expect(scenarioExitCode(r('SUCCESS', 'SKIP'))).toBe(3);
    expect(scenarioExitCode(r('SKIP', 'ERROR', 'SUCCESS'))).toBe(4);
    expect(scenarioExitCode(r('ERROR', 'FAILURE', 'SKIP'))).toBe(5);
  });

  it('on the command line: 0 all SUCCESS, 3 with a SKIP, 5 with a FAILURE; 2 for bad input, nothing run', () => {
    expect(xgsim([OK]).code).toBe(0);
    const skip = skipped();
    const s = xgsim([OK, skip]);
    expect(s.code, s.stdout + s.stderr).toBe(3);
    expect(s.stdout).toContain('skipped-one: SKIP — not on this host');
    const f = xgsim([OK, skip, CAUGHT], { XGSIM_BUGGIFY: 'skip-tlb-flush-on-revoke' });
    expect(f.code, f.stdout + f.stderr).toBe(5);
    expect(f.stdout).toContain('3 scenarios: 1 SUCCESS, 1 FAILURE, 0 ERROR, 1 SKIP');
    const bad = xgsim([OK, 'examples/bad/topology-unknown-key.yaml']);
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe('');
  });

  it('--list names each scenario and its file, runs nothing, and still refuses bad input', () => {
    const r = xgsim(['--list', OK, skipped()]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe(`foundation-grant-bad-gntref\t${OK}`);
    expect(lines[1]).toMatch(/^skipped-one\t.*skipped-one\.yaml\t\(skip\)$/);
    expect(xgsim(['-l', 'examples/bad/topology-unknown-key.yaml']).code).toBe(2);
  });

  it('-q prints result lines only; -qq leaves out the SUCCESS ones', () => {
    const env = { XGSIM_BUGGIFY: 'skip-tlb-flush-on-revoke' };
    const q = xgsim(['-q', OK, CAUGHT], env);
    expect(q.code).toBe(5);
    expect(q.stdout.trim().split('\n').map((l) => l.replace(/ +/g, ' '))).toEqual(['foundation-grant-bad-gntref SUCCESS', 'lifecycle-destroy-backend-with-maps FAILURE']);
    const qq = xgsim(['-qq', OK, CAUGHT], env);
    expect(qq.code).toBe(5);
    expect(qq.stdout.trim().replace(/ +/g, ' ')).toBe('lifecycle-destroy-backend-with-maps FAILURE');
  });

  it('--junit writes one testcase per scenario: <failure>, <skipped>, counts in the suite', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'xgsim-junit-')), 'scenarios.xml');
    const r = xgsim(['-qq', OK, skipped(), CAUGHT, '--junit', out], { XGSIM_BUGGIFY: 'skip-tlb-flush-on-revoke' });
    expect(r.code).toBe(5);
    const xml = readFileSync(out, 'utf8');
    expect(xml).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<testsuites /);
    expect(xml).toMatch(/<testsuite name="xgsim scenario" tests="3" failures="1" errors="0" skipped="1" /);
    expect(xml.match(/<testcase /g)).toHaveLength(3);
    expect(xml).toMatch(/<testcase classname="foundation" name="foundation-grant-bad-gntref" file="[^"]+" time="\d+\.\d{3}"\/>/);
    expect(xml).toMatch(/<testcase classname="lifecycle" name="lifecycle-destroy-backend-with-maps"[^>]*>\n\s*<failure message="[^"]+" type="FAILURE">/);
    expect(xml).toMatch(/<skipped message="not on this host"\/>/);
  });

  it('JUnit text escapes markup and drops what XML 1.0 cannot carry', () => {
    expect(xmlText(`a<b>&"c'\u0001\u001b`)).toBe('a&lt;b&gt;&amp;&quot;c&apos;\\x01\\x1b');
    const xml = junitXml([{ file: 'examples/scenarios/x-y.yaml', name: 'x-y', verdict: 'ERROR', reason: 'bad <thing>', time_ms: 1500 }]);
    expect(xml).toContain('<testcase classname="x" name="x-y" file="examples/scenarios/x-y.yaml" time="1.500">');
    expect(xml).toContain('<error message="bad &lt;thing&gt;" type="ERROR"></error>');
    expect(xml).toContain('errors="1"');
  });
});
