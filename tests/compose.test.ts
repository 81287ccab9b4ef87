/**
 * docker-compose.yml and the Dockerfile, checked offline (no Docker engine
 * here): dclint, `docker-compose config -q` when Debian's docker-compose (or
 * a v2 plugin) is installed, and the structural properties the scale-out
 * relies on. Every checker is also shown a broken file, to prove it can fail.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';
import { checkCompose, checkDockerfile, composeConfig, dclintVersion, findComposeTools, runDclint, type DockerfileContext } from './compose-check.js';

const COMPOSE_FILE = join(PROJECT_ROOT, 'docker-compose.yml');
const DCLINT_CONFIG = join(PROJECT_ROOT, '.dclintrc.yml');
const COMPOSE_TEXT = readFileSync(COMPOSE_FILE, 'utf8');
const DOCKERFILE_TEXT = readFileSync(join(PROJECT_ROOT, 'Dockerfile'), 'utf8');

const tmp = mkdtempSync(join(tmpdir(), 'xgsim-compose-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** docker-compose.yml with one edit made through the YAML document model. */
function composeWith(edit: (doc: ReturnType<typeof parseDocument>) => void): string {
  const doc = parseDocument(COMPOSE_TEXT);
  edit(doc);
  return doc.toString();
}
function writeTemp(name: string, text: string): string {
  const file = join(tmp, name);
  writeFileSync(file, text);
  return file;
}

describe('docker-compose.yml: dclint', () => {
  it(`has no errors and no warnings (dclint ${dclintVersion()})`, () => {
    const r = runDclint(COMPOSE_FILE, { config: DCLINT_CONFIG, cwd: PROJECT_ROOT });
    expect(r.ran, r.stderr).toBe(true);
    expect(r.messages).toEqual([]);
    expect(r.errorCount).toBe(0);
    expect(r.exitCode).toBe(0);
  });

  it('rejects a file that breaks the Compose schema', () => {
    const bad = writeTemp('schema.yml', composeWith((d) => d.setIn(['services', 'redis', 'restart_policy'], 'sometimes')));
    const r = runDclint(bad, { config: DCLINT_CONFIG, cwd: tmp });
    expect(r.ran, r.stderr).toBe(true);
    expect(r.errorCount).toBeGreaterThan(0);
    expect(r.messages.join('\n')).toContain('invalid-schema');
    expect(r.exitCode).toBe(1);
  });
});

describe('docker-compose.yml: docker-compose config', () => {
  const tools = findComposeTools();
  if (tools.length === 0) {
    console.warn(
      '\n!!! SKIPPED: no docker-compose here — `docker-compose config` did not validate docker-compose.yml.\n' +
        '!!! Install Debian\'s: apt-get install -y --no-install-recommends docker-compose (.ci/run does); under CI this fails.\n',
    );
  }
  for (const tool of tools) {
    it(`${tool.name} ${tool.version}: accepts it with REDIS_PASSWORD set`, () => {
      const r = composeConfig(tool, COMPOSE_FILE, { REDIS_PASSWORD: 'x' });
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
    });

    it(`${tool.name} ${tool.version}: refuses it without REDIS_PASSWORD`, () => {
      const r = composeConfig(tool, COMPOSE_FILE, { REDIS_PASSWORD: undefined });
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain('set REDIS_PASSWORD');
    });

    it(`${tool.name} ${tool.version}: rejects a replica count that is not a number`, () => {
      const r = composeConfig(tool, COMPOSE_FILE, { REDIS_PASSWORD: 'x', XGSIM_HOSTS: 'many' });
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(/replicas/);
    });
  }
  // Loud skip on a developer's machine; under CI (.ci/run installs it) a missing tool fails.
  if (tools.length === 0) (process.env['CI'] !== undefined ? it : it.skip)('docker-compose config -q (no docker-compose installed)', () => {
    expect(tools.length, 'no docker-compose: `docker-compose config` cannot validate docker-compose.yml').toBeGreaterThan(0);
  });
});

describe('docker-compose.yml: the properties the scale-out relies on', () => {
  it('holds them all', () => {
    expect(checkCompose(COMPOSE_TEXT)).toEqual([]);
  });

  it('flags a published Redis port (a temp file with ports: ["6379:6379"])', () => {
    const file = writeTemp('ports.yml', composeWith((d) => d.setIn(['services', 'redis', 'ports'], ['6379:6379'])));
    expect(checkCompose(readFileSync(file, 'utf8'))).toEqual(['redis: must not publish ports (reachable only on the compose network)']);
  });

  it('flags a Redis port published on loopback only, which dclint accepts', () => {
    const file = writeTemp('ports-loopback.yml', composeWith((d) => d.setIn(['services', 'redis', 'ports'], ['127.0.0.1:6379:6379'])));
    expect(checkCompose(readFileSync(file, 'utf8'))).toEqual(['redis: must not publish ports (reachable only on the compose network)']);
    // The generic linter only asks that a published port name its interface:
    // keeping Redis off the host entirely is this project's rule.
    expect(runDclint(file, { config: DCLINT_CONFIG, cwd: tmp }).errorCount).toBe(0);
  });

  it('flags a password written into the file', () => {
    const text = composeWith((d) => d.setIn(['services', 'redis', 'environment', 'REDIS_PASSWORD'], 'hunter2'));
    expect(checkCompose(text)).toEqual(['redis: environment REDIS_PASSWORD must be ${REDIS_PASSWORD:?…}, got "hunter2"']);
  });

  it('flags a password with a default (Compose would start without one)', () => {
    const text = COMPOSE_TEXT.replace('REDIS_PASSWORD: ${REDIS_PASSWORD:?set REDIS_PASSWORD}', 'REDIS_PASSWORD: ${REDIS_PASSWORD:-changeme}');
    expect(text).not.toBe(COMPOSE_TEXT);
    expect(checkCompose(text)).toHaveLength(1);
  });

  it('flags a password on a command line, where ps and docker inspect show it', () => {
    const onRedis = composeWith((d) => d.setIn(['services', 'redis', 'command'], ['sh', '-c', "exec redis-server --requirepass \"${REDIS_PASSWORD:?x}\" --save '' --appendonly no"]));
    expect(checkCompose(onRedis)).toEqual([
      "redis: the password must not be on redis-server's command line (ps shows it): write requirepass into its config file",
      "redis: the script must write `requirepass` from $$REDIS_PASSWORD (expanded by the container's shell) into a config file",
      'redis: the script must exec redis-server on that config file',
    ]);
    const onHost = composeWith((d) => d.setIn(['services', 'host', 'command'], ['host', '--redis-url', 'redis://:${REDIS_PASSWORD:?x}@redis:6379']));
    expect(checkCompose(onHost)).toEqual(['host: the Redis password must not be on the command line (ps shows it): use REDIS_URL in environment']);
  });

  it('flags a healthcheck that cannot authenticate or does not look for PONG', () => {
    const text = composeWith((d) => {
      d.deleteIn(['services', 'redis', 'environment', 'REDISCLI_AUTH']);
      d.setIn(['services', 'redis', 'healthcheck', 'test'], ['CMD', 'redis-cli', 'ping']);
    });
    expect(checkCompose(text)).toEqual([
      'redis: healthcheck must authenticate (REDISCLI_AUTH or -a)',
      'redis: healthcheck must look for PONG (redis-cli exits 0 on an error reply)',
    ]);
  });

  it('flags hosts without replicas and a dependency that does not wait for health', () => {
    const text = composeWith((d) => {
      d.deleteIn(['services', 'host', 'deploy']);
      d.setIn(['services', 'orchestrator', 'depends_on'], ['redis']);
    });
    expect(checkCompose(text)).toEqual([
      'orchestrator: must depend on redis with condition service_healthy (else it starts before Redis answers)',
      'host: deploy.replicas must be a positive count or ${XGSIM_HOSTS:-N}, got undefined',
    ]);
  });

  it('flags a host pointed at another Redis, and a missing service', () => {
    const text = composeWith((d) => {
      d.setIn(['services', 'host', 'environment', 'REDIS_URL'], 'redis://127.0.0.1:6379');
      d.deleteIn(['services', 'orchestrator']);
    });
    expect(checkCompose(text)).toEqual(['service orchestrator is missing', 'host: environment REDIS_URL must be redis://:${REDIS_PASSWORD:?…}@redis:6379, got "redis://127.0.0.1:6379"']);
  });

  it("the README's and the file's own `docker compose up` return when the campaign ends, with its exit code", () => {
    const readme = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8');
    // Command lines (no backquote: not prose about the command), in the README and the file's header.
    const ups = [...readme.split('\n'), ...COMPOSE_TEXT.split('\n').filter((l) => l.startsWith('#'))].filter((l) => l.includes('docker compose up') && !l.includes('`'));
    expect(ups.length).toBeGreaterThanOrEqual(2);
    for (const line of ups) expect(line, line).toMatch(/--exit-code-from orchestrator\b/);
    // …which needs an orchestrator that exits and is not restarted.
    const orch = (parseDocument(COMPOSE_TEXT).toJS() as { services: Record<string, { restart?: string }> }).services['orchestrator'];
    expect(orch?.restart).toBe('no');
  });
});

describe('docker-compose.yml: the xgsim commands it runs', () => {
  const compose = parseDocument(COMPOSE_TEXT).toJS() as { services: Record<string, { command: string[] }> };
  const help = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'xgsim.js'), '--help'], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  const listed = help.stdout.slice(help.stdout.indexOf('\nCommands:'));
  const commands = new Set([...listed.matchAll(/^ {2}(\S+)/gm)].map((m) => m[1]!));

  it('bin/xgsim.js --help lists the commands (dist/ is built)', () => {
    expect(help.status, help.stderr).toBe(0);
    expect(commands.has('up')).toBe(true);
  });

  for (const service of ['orchestrator', 'host']) {
    const argv = compose.services[service]!.command;
    const name = argv[0]!;
    it(`${service}: \`xgsim ${name}\` exists and takes ${argv.filter((a) => a.startsWith('--')).join(', ')}`, () => {
      expect(commands.has(name), `xgsim ${name} is not a command of this build`).toBe(true);
      const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'xgsim.js'), name, '--help'], { cwd: PROJECT_ROOT, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      for (const flag of argv.filter((a) => a.startsWith('--'))) expect(r.stdout).toContain(flag);
      for (const file of argv.filter((a) => a.startsWith('examples/'))) {
        expect(() => readFileSync(join(PROJECT_ROOT, file)), file).not.toThrow();
      }
    });
  }
});

describe('Dockerfile', () => {
  const tsconfig = JSON.parse(readFileSync(join(PROJECT_ROOT, 'tsconfig.json'), 'utf8')) as { compilerOptions: { outDir: string } };
  const tsconfigBuild = JSON.parse(readFileSync(join(PROJECT_ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
  const ctx: DockerfileContext = {
    root: PROJECT_ROOT,
    buildInclude: tsconfigBuild.include,
    outDir: tsconfig.compilerOptions.outDir,
    dockerignore: readFileSync(join(PROJECT_ROOT, '.dockerignore'), 'utf8'),
  };

  it('builds in stages on node:20-bookworm-slim, npm ci then build, runs bin/xgsim.js as a non-root user, copies only paths that exist', () => {
    expect(checkDockerfile(DOCKERFILE_TEXT, ctx)).toEqual([]);
  });

  it('.dockerignore keeps host builds and dependencies out of the context', () => {
    const lines = ctx.dockerignore.split('\n').map((l) => l.trim());
    for (const p of ['node_modules', 'dist', '.git', 'coverage', 'reports', 'traces']) expect(lines, p).toContain(p);
  });

  /** `line N: …` for the line of the edited text that holds `needle`. */
  const at = (text: string, needle: string, problem: string): string => `line ${text.slice(0, text.indexOf(needle)).split('\n').length}: ${problem}`;
  const broken: Array<[string, (t: string) => string, string | ((edited: string) => string)]> = [
    ['no USER', (t) => t.replace(/^USER node\n/m, ''), 'runtime: no USER: the container would run as root'],
    ['USER root', (t) => t.replace(/^USER node$/m, 'USER root'), 'runtime: USER root is root'],
    ['a COPY of a path the repository lacks', (t) => t.replace('COPY bin/ bin/', 'COPY bin/ bin/\nCOPY scripts/ scripts/'), (e) => at(e, 'COPY scripts/', 'COPY scripts/: no such path in the repository')],
    ['a COPY of a path .dockerignore drops', (t) => t.replace('COPY bin/ bin/', 'COPY bin/ bin/\nCOPY node_modules/ node_modules/'), (e) => at(e, 'COPY node_modules/', 'COPY node_modules/: excluded by .dockerignore')],
    ['a source folder missing from the build stage', (t) => t.replace('COPY transport/ transport/\n', ''), 'build: `npm run build` needs transport copied first'],
    ['the runtime npm ci running prepare', (t) => t.replace('npm ci --omit=dev --ignore-scripts', 'npm ci --omit=dev'), 'runtime: `npm ci --ignore-scripts` (prepare would run tsc, a devDependency)'],
    ['dist/ not taken from the build stage', (t) => t.replace('COPY --from=build /app/dist/ dist/', ''), 'runtime: COPY --from=build /app/dist/ (the compiled code)'],
    ['a shell-form ENTRYPOINT', (t) => t.replace('ENTRYPOINT ["node", "bin/xgsim.js"]', 'ENTRYPOINT node bin/xgsim.js'), 'runtime: ENTRYPOINT must be ["node", "bin/xgsim.js"] (exec form, so signals reach node), is node bin/xgsim.js'],
    ['another base image', (t) => t.replace('FROM node:20-bookworm-slim AS runtime', 'FROM node:20-alpine AS runtime'), 'stage runtime: base must be node:20-bookworm-slim, is node:20-alpine'],
  ];
  for (const [what, edit, problem] of broken) {
    it(`flags ${what}`, () => {
      const text = edit(DOCKERFILE_TEXT);
      expect(text).not.toBe(DOCKERFILE_TEXT);
      expect(checkDockerfile(text, ctx)).toEqual([typeof problem === 'string' ? problem : problem(text)]);
    });
  }

  it('flags a single-stage build', () => {
    const single = DOCKERFILE_TEXT.slice(0, DOCKERFILE_TEXT.indexOf('# ---- runtime'));
    expect(checkDockerfile(single, ctx)).toEqual(['want a multi-stage build (build, runtime), found 1 stage(s)']);
  });
});
