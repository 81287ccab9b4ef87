/**
 * The command line as a new user meets it: `xgsim up` end to end (forked
 * host process, real threads), and bad input → one line, exit 2.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';
import { formatSummary, type Summary } from '../orchestrator/up/summary.js';

const BIN = join(PROJECT_ROOT, 'bin', 'xgsim.js');

function xgsim(args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: PROJECT_ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('xgsim up', () => {
  it('runs examples/two-guests.yaml: dom0 + 2 guests × 2 vCPUs, pass, everything checked, every frame free', () => {
    const seed = process.env['SEED'] ?? String(Math.floor(Math.random() * 2 ** 31));
    console.log(`[xgsim up] seed ${seed}`);
    const r = xgsim(['up', 'examples/two-guests.yaml', '--duration', '3s', '--json', '--seed', seed]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`seed ${seed}`);
    const s = JSON.parse(r.stdout) as {
      seed: number;
      verdict: string;
      domains: Array<{ name: string; state: string }>;
      ops: Record<string, number>;
      invariants: Record<string, { checks: number; violations: number }>;
      frames: { total: number; free: number; conserved: boolean };
      threads: { vcpus: number; distinct: number };
      sched: { pcpus: number; context_switches: number; waits: number };
    };
    expect(s.seed).toBe(Number(seed));
    // On pCPUs by default, one per core: 6 CPU-bound vCPUs took turns on them.
    expect(s.sched.pcpus).toBe(Math.min(availableParallelism(), 64));
    expect(r.stderr).toContain(`${s.sched.pcpus} pCPU`);
    if (s.sched.pcpus < 6) expect(s.sched.waits).toBeGreaterThan(0);
    expect(s.sched.context_switches).toBeGreaterThanOrEqual(6);
    expect(s.verdict).toBe('pass');
    expect(s.domains.map((d) => d.name)).toEqual(['dom0', 'guest1', 'guest2']);
    expect(s.threads).toEqual({ vcpus: 6, distinct: 6 });
    for (const k of ['hypercalls', 'accesses', 'grant_map', 'grant_unmap', 'foreign_map', 'populate', 'balloon', 'hypercall_copy']) {
      expect(s.ops[k], k).toBeGreaterThan(0);
    }
    for (const [name, v] of Object.entries(s.invariants)) {
      expect(v.checks, name).toBeGreaterThan(0);
      expect(v.violations, name).toBe(0);
    }
    expect(s.frames.conserved).toBe(true);
    expect(s.frames.free).toBe(s.frames.total);
  });

  it('--pcpus: auto, os or 1…64, else one line and exit 2', () => {
    for (const bad of ['0', '65', 'none']) {
      const r = xgsim(['up', 'examples/two-guests.yaml', '--duration', '1ms', '--pcpus', bad]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain('--pcpus: expected auto (one pCPU per core), os (the OS schedules the vCPU threads) or an integer 1…64');
    }
  });

  it('only regular files of a bounded size are read: /dev/zero, a FIFO and an oversized file are one line and exit 2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xgsim-cli-input-'));
    const fifo = join(dir, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const big = join(dir, 'big.yaml');
    writeFileSync(big, `name: big\n# ${'x'.repeat(2 * 1024 * 1024)}\n`);
    for (const [file, env, why] of [
      ['/dev/zero', {}, 'not a regular file'],
      [fifo, {}, 'not a regular file'],
      [big, { XGSIM_MAX_INPUT_MIB: '1' }, 'over the 1 MiB limit'],
    ] as const) {
      const r = xgsim(['up', file], env);
      expect(r.code, `${file}: ${r.stderr}`).toBe(2);
      expect(r.stderr.trim().split('\n'), file).toHaveLength(1);
      expect(r.stderr).toContain(why);
    }
  });

  it('an error that quotes the input shows its control characters escaped: no escape sequence reaches the terminal', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'xgsim-cli-esc-')), 'esc.yaml');
    writeFileSync(file, 'name: x\ndomains:\n  - { name: dom0, role: backend, memory: 1MiB }\n"evil\u001b]0;pwned\u0007": 1\n');
    const r = xgsim(['up', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('evil\\x1b]0;pwned\\x07');
    expect([...r.stderr].filter((c) => c !== '\n' && (c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f))).toEqual([]);
  });

  it('a reader that goes away (| head -1) ends it quietly: no stack trace, the code of SIGPIPE', () => {
    const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${BIN}" scenario examples/scenarios/steal-*.yaml | head -1`], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(r.stdout.split('\n').filter((l) => l !== '')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/EPIPE|Error|at /);
    expect(r.status).toBe(141);
  });

  /**
   * `xgsim up` of two-guests for a minute, sent `signals` once it said it
   * started (its first line). A second signal is sent only once the first was
   * handled (its "stopping" line): two signals sent at once are one pending
   * signal to the kernel. With `freezeHost` the host process is stopped
   * (SIGSTOP) first, so it cannot finish its summary between the two signals.
   */
  function interrupted(signals: NodeJS.Signals[], freezeHost = false): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const c = spawn(process.execPath, [BIN, 'up', 'examples/two-guests.yaml', '--duration', '60s', '--json', '--seed', '3'], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      let next = 0;
      c.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      c.stderr.on('data', (b: Buffer) => {
        stderr += b.toString();
        const wanted = next === 0 ? /\n/ : /xgsim: stopping \(/;
        if (next >= signals.length || !wanted.test(stderr)) return;
        if (next === 0 && freezeHost) {
          for (const pid of readFileSync(`/proc/${c.pid}/task/${c.pid}/children`, 'utf8').trim().split(/\s+/)) process.kill(Number(pid), 'SIGSTOP');
        }
        c.kill(signals[next++]!);
      });
      c.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
  }

  it('on a terminal (a pseudo-terminal from `script`) the progress bar is cleared before the summary, not left at 80 %', () => {
    expect(spawnSync('script', ['--version']).status, 'script (util-linux) is needed for the terminal tests').toBe(0);
    const r = spawnSync('script', ['-qec', `"${process.execPath}" "${BIN}" up examples/two-guests.yaml --duration 2500ms --seed 4`, '/dev/null'], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stdout).toBe(0);
    const out = r.stdout;
    const lastBar = out.lastIndexOf('running [');
    const verdict = out.indexOf('verdict: PASS');
    expect(lastBar, 'a bar was drawn').toBeGreaterThan(0);
    expect(verdict).toBeGreaterThan(lastBar);
    // Between the last frame and the summary: the line is erased (ESC[2K), and the cursor shown again.
    const between = out.slice(lastBar, verdict);
    expect(between).toContain('\u001b[2K');
    expect(between).toContain('\u001b[?25h');
  });

  it('a run stopped by Ctrl-C or SIGTERM says it was interrupted (not a pass) and exits 130', async () => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      const r = await interrupted([sig]);
      expect(r.code, r.stderr).toBe(130);
      expect((JSON.parse(r.stdout) as { verdict: string }).verdict, sig).toBe('interrupted');
    }
  });

  it('a second signal stops the run at once, with no summary, exit 130', async () => {
    const r = await interrupted(['SIGTERM', 'SIGTERM'], true);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/stopping at once/);
  });

  it('an orderly end leaves nothing in flight: gpu-desktop ends PASS with every ioreq answered, none given up at the stop', () => {
    const seed = process.env['SEED'] ?? String(Math.floor(Math.random() * 2 ** 31));
    console.log(`[xgsim up gpu-desktop] seed ${seed}`);
    const r = xgsim(['up', 'examples/gpu-desktop.yaml', '--duration', '2s', '--transport', 'ring', '--json', '--seed', seed], { XGSIM_RUNS_DIR: mkdtempSync(join(tmpdir(), 'xgsim-cli-test-')) });
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as { verdict: string; unknown: string[]; ioreq: { sent: number; completed: number; abandoned: number; abandoned_at_stop: number; unaccounted: number } };
    expect(s.verdict, JSON.stringify(s.unknown)).toBe('pass');
    expect(s.ioreq.sent).toBeGreaterThan(0);
    // Before the drain, the stop cut 10–40 ioreqs short in such a run (they were counted `abandoned`, and it still passed).
    expect(s.ioreq.abandoned_at_stop, JSON.stringify(s.ioreq)).toBe(0);
    expect(s.ioreq.unaccounted).toBe(0);
  });

  /**
   * A chaos plan (in a directory of its own, also the run store) whose one injection deschedules dom0's
   * device model (vCPU 0) at `at` for `for_`, over dom0 and GPU frontends; its seed printed (SEED=n to replay).
   */
  function dmHungPlan(name: string, at: string, for_: string, frontends: string[]): { plan: string; dir: string; seed: string } {
    const seed = process.env['SEED'] ?? String(Math.floor(Math.random() * 2 ** 31));
    console.log(`[xgsim chaos ${name}] seed ${seed}`);
    const dir = mkdtempSync(join(tmpdir(), 'xgsim-cli-test-'));
    const plan = join(dir, `${name}.yaml`);
    const workloads: Record<string, string> = { desktop: '{ kind: render, buffers: 4, buffer_pages: 4 }', compute: '{ kind: compute-svm, buffers: 4, buffer_pages: 4 }' };
    writeFileSync(plan, `name: ${name}
topology:
  name: hung
  host: { frames: 16384 }
  domains:
    - { name: dom0, role: backend, memory: 16MiB, max_memory: 24MiB, vcpus: 2, devices: [{ kind: virtio-gpu, name: gpu0, bar: 4MiB }] }
${frontends.map((f) => `    - { name: ${f}, role: frontend, backend: dom0, memory: 4MiB, vcpus: 1, workload: ${workloads[f]} }`).join('\n')}
schedule:
  - { at: ${at}, kind: hang-vcpu, target: dom0, vcpu: 0, for: ${for_} }
`);
    return { plan, dir, seed };
  }

  it('a device model that stops answering near the end: `unknown` with the unanswered ioreqs, exit 3, not a pass', () => {
    // dom0's device model descheduled from 1.5 s to 5 s: each frontend's next command waits on it (a status read is
    // synchronous), through the end of the run at 2 s and the drain's 2 s of grace.
    const { plan, dir, seed } = dmHungPlan('hung-at-end', '1500ms', '3500ms', ['desktop', 'compute']);
    const r = xgsim(['chaos', plan, '--duration', '2s', '--transport', 'ring', '--json', '--seed', seed], { XGSIM_RUNS_DIR: dir });
    expect(r.code, r.stderr).toBe(3);
    const s = JSON.parse(r.stdout) as { verdict: string; unknown: string[]; violations: unknown[]; errors: string[]; ioreq: { abandoned_at_stop: number; unaccounted: number } };
    expect(s.verdict).toBe('unknown');
    expect(s.violations).toEqual([]);
    expect(s.errors).toEqual([]);
    expect(s.ioreq.abandoned_at_stop, JSON.stringify(s)).toBeGreaterThan(0);
    expect(s.ioreq.unaccounted).toBe(0);
    expect(s.unknown, JSON.stringify(s.unknown)).toEqual([expect.stringMatching(new RegExp(`^${s.ioreq.abandoned_at_stop} ioreqs? still unanswered \\d+ ms after the end of the run: .*vCPU 0 \\(waiting on an ioreq to dom0's device model`)) as unknown]);
  });

  it('a device model descheduled for 5.5 s mid-run: the watchdog reports the vCPUs waiting on it, in the summary and its events; the run still passes', () => {
    // The frontend's next commands wait on dom0's device model from 0.5 s to 6 s: past HUNG_VCPU_MS (5 s), and
    // every ioreq is answered before the end of the run at 7 s.
    const { plan, dir, seed } = dmHungPlan('hung-mid-run', '500ms', '5500ms', ['desktop']);
    const r = xgsim(['chaos', plan, '--duration', '7s', '--transport', 'ring', '--json', '--seed', seed], { XGSIM_RUNS_DIR: dir });
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as { verdict: string; hung_vcpus: number; events: string[]; ioreq: { abandoned_at_stop: number } };
    expect(s.verdict).toBe('pass');
    expect(s.hung_vcpus, JSON.stringify(s.events)).toBeGreaterThan(0);
    const hangs = s.events.filter((e) => e.startsWith('watchdog: '));
    expect(hangs).toHaveLength(s.hung_vcpus);
    // dom0's vCPU 0 itself (the nemesis blocks it), and the frontend's vCPU waiting on it when it got there in time.
    for (const h of hangs) expect(h).toMatch(/^watchdog: (dom0|desktop) vCPU 0 blocked without progress for \d+ ms$/);
    expect(s.ioreq.abandoned_at_stop).toBe(0);
    // The text summary says it too (the JSON is the summary the text is made from).
    const text = formatSummary(JSON.parse(r.stdout) as Summary);
    expect(text).toMatch(new RegExp(`^watchdog: ${s.hung_vcpus} vCPU hangs? of 5 s or more without progress`, 'm'));
  });

  it('with XGSIM_BUGGIFY=no-scrub fails with exit 1 and prints a replay line', () => {
    const r = xgsim(['up', 'examples/two-guests.yaml', '--duration', '2s', '--seed', '5'], { XGSIM_BUGGIFY: 'no-scrub', XGSIM_RUNS_DIR: mkdtempSync(join(tmpdir(), 'xgsim-cli-test-')) });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toContain('FAIL');
    expect(r.stderr).toContain('replay: XGSIM_BUGGIFY=no-scrub npx xgsim up examples/two-guests.yaml --seed 5');
    // …and saves a run record that `xgsim replay` takes (tests/campaign.test.ts replays records).
    const rec = /replay: npx xgsim replay (\S+\/two-guests\/\d{8}T\d{6}\.\d{3}\/record\.json)/.exec(r.stderr)?.[1];
    expect(rec, r.stderr).toBeDefined();
    const saved = JSON.parse(readFileSync(rec!, 'utf8')) as { kind: string; file: string; seed: number; buggify: string[]; verdict: string };
    expect(saved).toMatchObject({ kind: 'up', file: 'examples/two-guests.yaml', seed: 5, buggify: ['no-scrub'], verdict: 'fail' });
  });
});

describe('bad input exits 2 with one line', () => {
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['syntax error', ['up', 'examples/bad/topology-syntax-error.yaml'], {}, /topology-syntax-error\.yaml:\d+:\d+/],
    ['missing file', ['up', 'examples/nope.yaml'], {}, /nope\.yaml/],
    ['bad duration flag', ['up', 'examples/two-guests.yaml', '--duration', '10 parsecs'], {}, /--duration/],
    ['bad seed flag', ['up', 'examples/two-guests.yaml', '--seed', '-3'], {}, /--seed/],
    ['unknown bug', ['up', 'examples/two-guests.yaml'], { XGSIM_BUGGIFY: 'skip-everything' }, /unknown bug `skip-everything`/],
    ['unknown command', ['frobnicate'], {}, /unknown command/],
    ['unknown option (commander)', ['up', 'examples/two-guests.yaml', '--bogus'], {}, /unknown option '--bogus'/],
    ['missing argument (commander)', ['up'], {}, /missing required argument 'topology'/],
    ['bad transport', ['up', 'examples/two-guests.yaml', '--transport', 'carrier-pigeon'], {}, /transport/],
    ['a --redis-url that is no URL', ['up', 'examples/two-guests.yaml', '--redis-url', 'notaurl'], {}, /--redis-url: `notaurl` is not a Redis URL/],
    ['a REDIS_URL of another scheme, password kept out', ['up', 'examples/two-guests.yaml', '--transport', 'redis'], { REDIS_URL: 'http://u:hunter2@x' }, /^xgsim: REDIS_URL: `http:\/\/u:\*\*\*@x` is not a Redis URL/],
    ['bench --filter that matches nothing', ['bench', '--quick', '--filter', 'nothing'], {}, /--filter: `nothing` matches no section/],
  ];
  for (const [name, args, env, re] of cases) {
    it(name, () => {
      const r = xgsim(args, env);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(re);
      // One prefix for every error, commander's own included.
      expect(r.stderr).toMatch(/^xgsim: /);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }

  /**
   * Every malformed file under examples/bad/ with `prefix`, through the real
   * CLI: all of them in one `xgsim check` (one error line each, with its
   * file:line:col), and a spread sample through the command itself (`up`,
   * `chaos`), which loads them with the same loader — one process per file
   * for all of them cost half a minute of the suite's time.
   */
  function malformed(prefix: string, as: string, run: (f: string) => string[]): void {
    const files = readdirSync(join(PROJECT_ROOT, 'examples', 'bad')).filter((f) => f.startsWith(prefix));
    const where = (f: string): RegExpExecArray | null => /line (\d+), col (\d+)/.exec(readFileSync(join(PROJECT_ROOT, 'examples', 'bad', f), 'utf8').split('\n')[0]!);
    it(`${files.length} malformed ${prefix}*.yaml: file:line:col, exit 2, no stack trace`, () => {
      expect(files.length).toBeGreaterThanOrEqual(10);
      const c = xgsim(['check', '--as', as, ...files.map((f) => `examples/bad/${f}`)]);
      expect(c.code, c.stderr).toBe(2);
      expect(c.stderr).not.toMatch(/\n\s+at /);
      const lines = c.stderr.trim().split('\n');
      for (const f of files) {
        const mine = lines.filter((l) => l.startsWith(`xgsim: examples/bad/${f}:`));
        expect(mine, `${f}: ${c.stderr}`).toHaveLength(1);
        const m = where(f);
        if (m !== null) expect(mine[0], f).toContain(`${f}:${m[1]}:${m[2]}`);
      }
      expect(c.stdout).toContain(`${files.length} files: 0 ok, ${files.length} bad`);
      // The command itself, on five files spread over the list (the same ones every run: a random pick would hide which one broke).
      const every = Math.ceil(files.length / 5);
      for (const f of files.filter((_, k) => k % every === 0)) {
        const r = xgsim(run(`examples/bad/${f}`));
        expect(r.code, `${f}: ${r.stderr}`).toBe(2);
        const m = where(f);
        if (m !== null) expect(r.stderr, f).toContain(`${f}:${m[1]}:${m[2]}`);
        expect(r.stderr.trim().split('\n'), f).toHaveLength(1);
        expect(r.stderr, f).not.toMatch(/\n\s+at /);
      }
    });
  }
  malformed('topology-', 'topology', (f) => ['up', f, '--duration', '1ms']);
  malformed('chaos-', 'chaos', (f) => ['chaos', f, '--duration', '1ms', '--transport', 'ring']);
});
