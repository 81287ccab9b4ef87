/**
 * The Redis password is never shown (issue 16, "Secrets"): a campaign on a
 * password-protected Redis — one this test starts itself, on a free port,
 * and stops by pid — with a spawned host. Nothing it prints, no file it
 * writes, and no command line of any process while it runs carries the
 * password; the errors that name the URL redact it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';
import { RedisIoreqBus } from '../transport/redis-bus.js';
import { freePort } from '../orchestrator/own-redis.js';

const BIN = join(PROJECT_ROOT, 'bin', 'xgsim.js');
const PASSWORD = `s3cret-${process.pid}-xgsim`;
const HAVE_REDIS_SERVER = spawnSync('redis-server', ['--version']).status === 0;
if (!HAVE_REDIS_SERVER) {
  const msg = '\n!!! redis-server is not installed: the password test is SKIPPED' + (process.env['CI'] !== undefined ? ' — and CI is set, so it FAILS' : '') + ' !!!\n';
  console.warn(msg);
}

/** Every file under dir, recursively. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

/** Command lines of every process now running that contain `needle`. */
function commandLinesWith(needle: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const cmd = readFileSync(join('/proc', pid, 'cmdline'), 'utf8').split('\0').join(' ');
      if (cmd.includes(needle)) out.push(`${pid}: ${cmd}`);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

describe.skipIf(!HAVE_REDIS_SERVER && process.env['CI'] === undefined)('the Redis password', () => {
  let server: ChildProcess | undefined;
  let url = '';
  const work = mkdtempSync(join(tmpdir(), 'xgsim-secrets-test-'));

  beforeAll(async () => {
    expect(HAVE_REDIS_SERVER, 'redis-server must be installed under CI').toBe(true);
    const port = await freePort();
    server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--requirepass', PASSWORD, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    url = `redis://:${PASSWORD}@127.0.0.1:${port}`;
    const t0 = Date.now();
    while (!(await RedisIoreqBus.reachable(url, 200))) {
      if (Date.now() - t0 > 10_000) throw new Error(`the test's redis-server on port ${port} did not answer`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  afterAll(() => {
    // Ours, started above: stopped by its pid, never the shared one.
    if (server?.pid !== undefined) process.kill(server.pid, 'SIGKILL');
  });

  it('is in no output, no file and no command line of a campaign with a spawned host', async () => {
    const plan = join(work, 'plan.yaml');
    writeFileSync(plan, ['name: secret', 'jobs:', '  - name: sim', '    kind: sim', '    steps: 3000', '    timeout: 60s', ''].join('\n'));
    const dir = join(work, 'runs');
    const child = spawn(process.execPath, [BIN, 'campaign', plan, '--runs', '2', '--spawn-hosts', '1', '--seed', '5', '--pool', `secret-${process.pid}`, '--dir', dir, '--redis-url', url], {
      cwd: PROJECT_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const seen = new Set<string>();
    const poll = setInterval(() => {
      // Our own campaign process was started with the URL on purpose (a user's flag); its children must not be.
      for (const c of commandLinesWith(PASSWORD)) if (!c.startsWith(`${child.pid}:`) && !c.includes(' campaign ')) seen.add(c);
    }, 50);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    clearInterval(poll);
    expect(code, out).toBe(0);
    expect(out).not.toContain(PASSWORD);
    expect(out).toContain('***');
    expect([...seen]).toEqual([]);
    const files = filesUnder(dir);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(readFileSync(f, 'utf8'), f).not.toContain(PASSWORD);
  });

  it('is redacted where no Redis answers at the URL', () => {
    const r = spawnSync(process.execPath, [BIN, 'up', 'examples/two-guests.yaml', '--transport', 'redis', '--redis-url', `redis://:${PASSWORD}@127.0.0.1:1`], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).not.toContain(PASSWORD);
    expect(r.stderr).toContain('***');
  });
});
