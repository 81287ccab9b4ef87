/**
 * `xgsim campaign --redis-acl` (docs/security.md, "Redis ACL users per
 * role"), on a redis-server this file starts itself (tests/own-redis.ts: a
 * free port, a random password on its default user, stopped by pid) — ACL
 * SETUSER never reaches the shared Redis at REDIS_URL. The spawned host
 * talks to Redis only as the campaign's host user (its connections say so
 * in CLIENT LIST), its runs go over the ring, the campaign passes, and the
 * user is gone at the end. And the refusals: `--redis-acl` on the default
 * Redis nobody named, without spawned hosts, or with a job over Redis.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it as plain } from 'vitest';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';
import { ownRedisIt } from './own-redis.js';
import { testSeed } from './harness.js';
import { EXIT } from '../orchestrator/errors.js';

const BIN = join(PROJECT_ROOT, 'bin', 'xgsim.js');
const own = ownRedisIt('tests/campaign-acl.test.ts', 'the campaign --redis-acl test');
const work = mkdtempSync(join(tmpdir(), 'xgsim-campaign-acl-'));
const PLAN = join(work, 'plan.yaml');
// A stress run, and an `up` of a topology that asks for the redis transport: under --redis-acl it runs over the ring.
writeFileSync(
  PLAN,
  [
    'name: aclplan',
    'jobs:',
    '  - { name: tiny, kind: stress-revoke, guests: 1, vcpus: 1, backend_vcpus: 1, duration: 200ms, timeout: 60s }',
    `  - { name: gpu, kind: up, topology: ${join(PROJECT_ROOT, 'tests/faults/gpu-small.yaml')}, duration: 500ms, timeout: 60s }`,
    '',
  ].join('\n'),
);

/** The environment of a child: REDIS_URL as given (or none), nothing else of ours that picks a Redis. */
function envWith(redisUrl: string | undefined): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env['REDIS_URL'];
  delete env['XGSIM_REDIS_ACL'];
  return redisUrl === undefined ? env : { ...env, REDIS_URL: redisUrl };
}

describe('xgsim campaign --redis-acl', () => {
  own.it('the spawned host talks to Redis only as the campaign\'s host user; its runs go over the ring; the campaign passes; no user left', async () => {
    const seed = testSeed('campaign --redis-acl');
    const url = own.server().url;
    const root = new Redis(url, { maxRetriesPerRequest: 1 });
    const dir = join(work, 'run');
    const child = spawn(process.execPath, [BIN, 'campaign', PLAN, '--runs', '4', '--spawn-hosts', '1', '--redis-acl', '--seed', String(seed), '--pool', `acl-${process.pid}`, '--json', '--dir', dir], { cwd: PROJECT_ROOT, env: envWith(url), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const hostUsers = new Set<string>();
    const poll = setInterval(() => {
      void root
        .call('CLIENT', 'LIST')
        .then((list) => {
          for (const line of String(list).split('\n')) {
            if (!/ name=xgsim-host:/.test(line)) continue;
            const user = / user=(\S+)/.exec(line)?.[1];
            if (user !== undefined) hostUsers.add(user);
          }
        })
        .catch(() => undefined);
    }, 50);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    clearInterval(poll);
    try {
      expect(code, stderr).toBe(0);
      const rep = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { pass: number; accounted: number; verdict: string };
      expect(rep.accounted).toBe(4);
      expect(rep.pass, stderr).toBe(4);
      expect(rep.verdict).toBe('pass');
      expect(stderr).toMatch(/spawned hosts as Redis user xgsim-[0-9a-f]+-campaign-host: the campaign keys only/);
      expect([...hostUsers].length, 'no connection of the host was seen').toBeGreaterThan(0);
      for (const u of hostUsers) expect(u).toMatch(/^xgsim-[0-9a-f]+-campaign-host$/);
      expect(((await root.call('ACL', 'USERS')) as string[]).filter((u) => u.startsWith('xgsim-'))).toEqual([]);
      // The host's runs used no Redis (no run namespace was ever made), and its log has no ready-check warning.
      const logs = readdirSync(dir).filter((f) => f.startsWith('host-')).map((f) => readFileSync(join(dir, f), 'utf8')).join('\n');
      expect(logs).not.toMatch(/ready check|NOPERM/);
      expect(await root.keys('xgsim:*')).toEqual([]);
    } finally {
      root.disconnect();
    }
  });

  plain('refused, one line and exit 2: on the default Redis nobody named; without spawned hosts; with a job over the redis transport', () => {
    const run = (args: string[], redisUrl?: string): { status: number | null; stderr: string } => spawnSync(process.execPath, [BIN, ...args], { cwd: PROJECT_ROOT, env: envWith(redisUrl), encoding: 'utf8', timeout: 60_000 });
    const unnamed = run(['up', 'tests/faults/gpu-small.yaml', '--redis-acl', '--duration', '200ms']);
    expect(unnamed.status, unnamed.stderr).toBe(EXIT.BAD_INPUT);
    expect(unnamed.stderr).toMatch(/--redis-acl: .*name that Redis with --redis-url or REDIS_URL/);
    expect(unnamed.stderr.trim().split('\n')).toHaveLength(1);
    const noHosts = run(['campaign', PLAN, '--runs', '2', '--redis-acl'], 'redis://127.0.0.1:1');
    expect(noHosts.status, noHosts.stderr).toBe(EXIT.BAD_INPUT);
    expect(noHosts.stderr).toMatch(/--spawn-hosts is 0/);
    const overRedis = join(work, 'over-redis.yaml');
    writeFileSync(overRedis, ['name: overredis', 'jobs:', `  - { name: gpu, kind: up, topology: ${join(PROJECT_ROOT, 'tests/faults/gpu-small.yaml')}, transport: redis, duration: 500ms }`, ''].join('\n'));
    const r = run(['campaign', overRedis, '--runs', '1', '--spawn-hosts', '1', '--redis-acl'], 'redis://127.0.0.1:1');
    expect(r.status, r.stderr).toBe(EXIT.BAD_INPUT);
    expect(r.stderr).toMatch(/asks for the redis transport/);
  });
});
