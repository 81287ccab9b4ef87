/**
 * Offline checks of the deployment files (docker-compose.yml, Dockerfile)
 * for a machine with no Docker engine. Each checker returns a list of
 * problems, one sentence each, empty when the file is right — so a test can
 * feed it a deliberately broken file and see it complain.
 *
 * Three layers, from generic to ours:
 *   - dclint (npm devDependency): YAML validity, the Compose JSON schema,
 *     best-practice rules;
 *   - `docker-compose config -q` (Debian's v1, or a v2 plugin) when one is
 *     installed: what the real tool accepts, interpolation included;
 *   - checkCompose / checkDockerfile below: the properties this project
 *     relies on (Redis private and password-protected, hosts scaled, start
 *     order, a non-root image that builds dist/ and runs bin/xgsim.js).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { parseDocument } from 'yaml';

// ---------------------------------------------------------------- dclint --

export interface DclintResult {
  /** The process ran and printed a report (exit 0 or 1). */
  ran: boolean;
  exitCode: number;
  errorCount: number;
  warningCount: number;
  /** `line:col rule message`, errors and warnings. */
  messages: string[];
  stderr: string;
}

interface DclintFileReport {
  errorCount: number;
  warningCount: number;
  messages: Array<{ rule: string; type: string; message: string; line: number; column: number }>;
}

export const DCLINT_BIN = join(dirname(createRequire(import.meta.url).resolve('dclint/package.json')), 'bin', 'dclint.cjs');

export function dclintVersion(): string {
  return (JSON.parse(readFileSync(join(dirname(DCLINT_BIN), '..', 'package.json'), 'utf8')) as { version: string }).version;
}

/** Runs the dclint CLI on one file with the project's config (JSON report). */
export function runDclint(file: string, o: { config: string; cwd: string }): DclintResult {
  const r = spawnSync(process.execPath, [DCLINT_BIN, '--config', o.config, '--formatter', 'json', '--color', 'false', file], {
    cwd: o.cwd,
    encoding: 'utf8',
    timeout: 60_000,
  });
  const exitCode = r.status ?? -1;
  let reports: DclintFileReport[];
  try {
    reports = JSON.parse(r.stdout) as DclintFileReport[];
  } catch {
    return { ran: false, exitCode, errorCount: 0, warningCount: 0, messages: [], stderr: `${r.stderr}${r.stdout}` };
  }
  const messages = reports.flatMap((f) => f.messages.map((m) => `${m.line}:${m.column} ${m.type} ${m.rule}: ${m.message}`));
  return {
    ran: exitCode === 0 || exitCode === 1,
    exitCode,
    errorCount: reports.reduce((n, f) => n + f.errorCount, 0),
    warningCount: reports.reduce((n, f) => n + f.warningCount, 0),
    messages,
    stderr: r.stderr,
  };
}

// ------------------------------------------------------- docker-compose --

/** A Compose implementation found on this machine: `docker-compose` (v1) or `docker compose` (v2). */
export interface ComposeTool {
  name: string;
  argv: string[];
  version: string;
}

export function findComposeTools(): ComposeTool[] {
  const candidates: Array<{ name: string; argv: string[]; versionArgs: string[] }> = [
    { name: 'docker-compose', argv: ['docker-compose'], versionArgs: ['version', '--short'] },
    { name: 'docker compose', argv: ['docker', 'compose'], versionArgs: ['version', '--short'] },
  ];
  const found: ComposeTool[] = [];
  for (const c of candidates) {
    const r = spawnSync(c.argv[0]!, [...c.argv.slice(1), ...c.versionArgs], { encoding: 'utf8', timeout: 30_000 });
    if (r.error === undefined && r.status === 0) found.push({ name: c.name, argv: c.argv, version: r.stdout.trim() });
  }
  return found;
}

/**
 * `config -q`: parse, interpolate and validate without an engine. `env`
 * replaces the environment of the variables the file interpolates, so a
 * developer's own REDIS_PASSWORD never leaks into the verdict.
 */
export function composeConfig(tool: ComposeTool, file: string, env: Record<string, string | undefined>): { exitCode: number; stderr: string } {
  const full: NodeJS.ProcessEnv = { ...process.env };
  for (const k of [...COMPOSE_VARIABLES, ...Object.keys(env)]) {
    const v = env[k];
    if (v === undefined) delete full[k];
    else full[k] = v;
  }
  const r = spawnSync(tool.argv[0]!, [...tool.argv.slice(1), '-f', file, 'config', '-q'], { encoding: 'utf8', env: full, timeout: 60_000 });
  return { exitCode: r.status ?? -1, stderr: `${r.stderr}${r.error !== undefined ? String(r.error) : ''}` };
}

/** The variables docker-compose.yml reads from the environment. */
export const COMPOSE_VARIABLES = ['REDIS_PASSWORD', 'XGSIM_HOSTS', 'XGSIM_RUNS'];

// ------------------------------------------------ compose: our properties --

/** `${REDIS_PASSWORD:?message}`: Compose refuses to start without it. */
const REQUIRED_PASSWORD = /^\$\{REDIS_PASSWORD:\?[^}]*\}$/;
/** The URL every xgsim service uses: the password from the env, the redis service on the compose network. */
const REDIS_URL = /^redis:\/\/:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379\/?$/;
const XGSIM_IMAGE = 'xgsim:local';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The value after `flag` in an exec-form command, or undefined. */
function flagValue(command: string[], flag: string): string | undefined {
  const i = command.indexOf(flag);
  return i >= 0 ? command[i + 1] : undefined;
}

function checkDependsOnRedisHealthy(name: string, svc: Obj, problems: string[]): void {
  const dep = svc['depends_on'];
  const redis = isObj(dep) ? dep['redis'] : undefined;
  if (!isObj(redis) || redis['condition'] !== 'service_healthy') {
    problems.push(`${name}: must depend on redis with condition service_healthy (else it starts before Redis answers)`);
  }
}

/** A compose-interpolated password (`${REDIS_PASSWORD…}`) or a URL with one, anywhere in a command: it would be in the process's argv. */
const PASSWORD_IN_ARGV = /\$\{REDIS_PASSWORD|redis:\/\/[^@\s]*:[^@\s]+@/;

function checkXgsimService(name: string, svc: Obj, problems: string[]): string[] | undefined {
  if (svc['image'] !== XGSIM_IMAGE) problems.push(`${name}: image must be ${XGSIM_IMAGE} (one image for orchestrator and hosts)`);
  const build = svc['build'];
  const context = isObj(build) ? build['context'] : build;
  if (context !== '.') problems.push(`${name}: must build from the repository root (build: .)`);
  checkDependsOnRedisHealthy(name, svc, problems);
  if ('ports' in svc) problems.push(`${name}: publishes ports; nothing in the scale-out needs to be reached from outside`);
  const env = svc['environment'];
  const url = isObj(env) ? env['REDIS_URL'] : undefined;
  if (typeof url !== 'string' || !REDIS_URL.test(url)) {
    problems.push(`${name}: environment REDIS_URL must be redis://:\${REDIS_PASSWORD:?…}@redis:6379, got ${JSON.stringify(url)}`);
  }
  const command = svc['command'];
  if (!Array.isArray(command) || !command.every((c) => typeof c === 'string')) {
    problems.push(`${name}: command must be a list of strings (exec form)`);
    return undefined;
  }
  if (command.some((c) => PASSWORD_IN_ARGV.test(c) || c === '--redis-url')) problems.push(`${name}: the Redis password must not be on the command line (ps shows it): use REDIS_URL in environment`);
  return command;
}

/** Problems with docker-compose.yml's text; empty when it is right. */
export function checkCompose(text: string): string[] {
  const problems: string[] = [];
  const doc = parseDocument(text);
  if (doc.errors.length > 0) return doc.errors.map((e) => `YAML: ${e.message}`);
  const root: unknown = doc.toJS();
  const services = isObj(root) ? root['services'] : undefined;
  if (!isObj(services)) return ['no services: mapping'];
  for (const want of ['redis', 'orchestrator', 'host']) {
    if (!isObj(services[want])) problems.push(`service ${want} is missing`);
  }
  for (const [name, svc] of Object.entries(services)) {
    if (isObj(svc) && svc['network_mode'] === 'host') problems.push(`${name}: network_mode host puts it on the machine's network`);
  }

  const redis = services['redis'];
  if (isObj(redis)) {
    if (typeof redis['image'] !== 'string' || !/^redis:7[.-]/.test(redis['image'])) problems.push('redis: image must be redis:7-…');
    // Published ports would put a queue that runs jobs on the host's interfaces.
    if ('ports' in redis) problems.push('redis: must not publish ports (reachable only on the compose network)');
    const command = redis['command'];
    const env0 = redis['environment'];
    const pass = isObj(env0) ? env0['REDIS_PASSWORD'] : undefined;
    if (typeof pass !== 'string' || !REQUIRED_PASSWORD.test(pass)) {
      problems.push(`redis: environment REDIS_PASSWORD must be \${REDIS_PASSWORD:?…}, got ${JSON.stringify(pass)}`);
    }
    const script = Array.isArray(command) && command.length === 3 && command[0] === 'sh' && command[1] === '-c' && typeof command[2] === 'string' ? command[2] : undefined;
    if (script === undefined) {
      problems.push('redis: command must be ["sh", "-c", "<write the config, exec redis-server>"] (the password through a config file, not argv)');
    } else {
      if (PASSWORD_IN_ARGV.test(script) || /--requirepass/.test(script)) problems.push('redis: the password must not be on redis-server\'s command line (ps shows it): write requirepass into its config file');
      if (!/requirepass %s.*"\$\$REDIS_PASSWORD"\s*>\s*(\S+)/.test(script)) problems.push('redis: the script must write `requirepass` from $$REDIS_PASSWORD (expanded by the container\'s shell) into a config file');
      if (!/exec redis-server \S+\.conf\b/.test(script)) problems.push('redis: the script must exec redis-server on that config file');
      if (!/--save ''/.test(script)) problems.push('redis: --save \'\' (no snapshots of a scratch queue)');
      if (!/--appendonly no\b/.test(script)) problems.push('redis: --appendonly no');
    }
    const health = redis['healthcheck'];
    const test = isObj(health) ? health['test'] : undefined;
    const testText = Array.isArray(test) ? test.join(' ') : String(test);
    const env = redis['environment'];
    const cliAuth = isObj(env) && typeof env['REDISCLI_AUTH'] === 'string' && REQUIRED_PASSWORD.test(env['REDISCLI_AUTH']);
    if (!/redis-cli\b.*\bping\b/.test(testText)) problems.push('redis: healthcheck must run redis-cli ping');
    // Without the password redis-cli gets NOAUTH, which still exits 0.
    if (!cliAuth && !/\s-a\s/.test(testText)) problems.push('redis: healthcheck must authenticate (REDISCLI_AUTH or -a)');
    if (!/PONG/.test(testText)) problems.push('redis: healthcheck must look for PONG (redis-cli exits 0 on an error reply)');
  }

  const orchestrator = services['orchestrator'];
  if (isObj(orchestrator)) {
    const command = checkXgsimService('orchestrator', orchestrator, problems);
    if (command !== undefined) {
      if (command[0] !== 'campaign') problems.push(`orchestrator: must run \`xgsim campaign\`, runs ${JSON.stringify(command[0])}`);
      const runs = flagValue(command, '--runs');
      if (runs === undefined || !/^(\d+|\$\{XGSIM_RUNS:-\d+\})$/.test(runs)) problems.push(`orchestrator: --runs must be a count, got ${JSON.stringify(runs)}`);
    }
  }

  const host = services['host'];
  if (isObj(host)) {
    const command = checkXgsimService('host', host, problems);
    if (command !== undefined && command[0] !== 'host') problems.push(`host: must run \`xgsim host\`, runs ${JSON.stringify(command[0])}`);
    const deploy = host['deploy'];
    const replicas = isObj(deploy) ? deploy['replicas'] : undefined;
    const scaled = (typeof replicas === 'number' && Number.isInteger(replicas) && replicas > 0) || (typeof replicas === 'string' && /^\$\{XGSIM_HOSTS:-[1-9]\d*\}$/.test(replicas));
    if (!scaled) problems.push(`host: deploy.replicas must be a positive count or \${XGSIM_HOSTS:-N}, got ${JSON.stringify(replicas)}`);
    if (!['on-failure', 'always', 'unless-stopped'].includes(String(host['restart']))) problems.push('host: must restart after a failure (restart: on-failure)');
  }
  return problems;
}

// ------------------------------------------------------------ Dockerfile --

export interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

export interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Instructions with continuation lines joined; comments and blank lines dropped. */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i]!;
    if (/^\s*(#|$)/.test(first)) continue;
    const start = i;
    let joined = first;
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) {
      i++;
      const next = lines[i]!;
      if (/^\s*#/.test(next)) continue; // comments inside a continued RUN
      joined = `${joined.replace(/\\\s*$/, ' ')}${next}`;
    }
    const m = /^\s*(\S+)\s*(.*)$/.exec(joined);
    if (m !== null) out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start + 1 });
  }
  return out;
}

export function stagesOf(instructions: Instruction[]): Stage[] {
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const m = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      stages.push({ image: m?.[1] ?? '', name: m?.[2], instructions: [] });
    } else if (ins.keyword !== 'ARG' || stages.length > 0) {
      stages.at(-1)?.instructions.push(ins);
    }
  }
  return stages;
}

interface Copy {
  from: string | undefined;
  sources: string[];
  dest: string;
  line: number;
}

function copyOf(ins: Instruction): Copy {
  let rest = ins.args;
  let from: string | undefined;
  for (let m = /^--(\w+)(?:=(\S+))?\s+/.exec(rest); m !== null; m = /^--(\w+)(?:=(\S+))?\s+/.exec(rest)) {
    if (m[1] === 'from') from = m[2];
    rest = rest.slice(m[0].length);
  }
  const words = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/);
  return { from, sources: words.slice(0, -1), dest: words.at(-1) ?? '', line: ins.line };
}

function runs(stage: Stage, re: RegExp): Instruction | undefined {
  return stage.instructions.find((i) => i.keyword === 'RUN' && re.test(i.args));
}

/** A .dockerignore pattern as a test on a path from the context root (no `!` exceptions). */
function ignoreMatcher(pattern: string): (path: string) => boolean {
  const p = pattern.replace(/^\/+/, '').replace(/\/+$/, '');
  const body = p
    .split(/(\*\*|\*|\?)/)
    .map((t) => (t === '**' ? '.*' : t === '*' ? '[^/]*' : t === '?' ? '[^/]' : t.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
    .join('');
  const re = new RegExp(`^${body}$`);
  return (path) => {
    const parts = normalize(path).replace(/\/+$/, '').split('/');
    // Ignoring a directory ignores everything under it.
    for (let n = 1; n <= parts.length; n++) if (re.test(parts.slice(0, n).join('/'))) return true;
    return false;
  };
}

export interface DockerfileContext {
  /** Repository root: the build context. */
  root: string;
  /** tsconfig.build.json's `include`: what `npm run build` compiles. */
  buildInclude: string[];
  /** tsconfig's outDir (dist). */
  outDir: string;
  /** .dockerignore's text ('' when there is none). */
  dockerignore: string;
}

/** Problems with the Dockerfile's text; empty when it is right. */
export function checkDockerfile(text: string, ctx: DockerfileContext): string[] {
  const problems: string[] = [];
  const stages = stagesOf(parseDockerfile(text));
  if (stages.length < 2) return [`want a multi-stage build (build, runtime), found ${stages.length} stage(s)`];
  for (const s of stages) {
    if (s.image !== 'node:20-bookworm-slim') problems.push(`stage ${s.name ?? '?'}: base must be node:20-bookworm-slim, is ${s.image}`);
  }
  const build = stages.find((s) => s.name === 'build');
  const runtime = stages.at(-1)!;
  if (build === undefined) return [...problems, 'no stage named build'];
  if (runtime === build) return [...problems, 'the last stage (the image) must not be the build stage'];

  const ignored = ctx.dockerignore
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('!'))
    .map(ignoreMatcher);

  // Every path COPY takes from the context exists, stays inside it, and is not dropped by .dockerignore.
  const copiedBefore = (stage: Stage, line: number): string[] =>
    stage.instructions
      .filter((i) => i.keyword === 'COPY' && i.line < line)
      .map(copyOf)
      .filter((c) => c.from === undefined)
      .flatMap((c) => c.sources.map((s) => normalize(s).replace(/\/+$/, '')));
  for (const s of stages) {
    for (const c of s.instructions.filter((i) => i.keyword === 'COPY' || i.keyword === 'ADD').map(copyOf)) {
      if (c.from !== undefined) continue;
      for (const src of c.sources) {
        const rel = normalize(src).replace(/\/+$/, '');
        if (isAbsolute(rel) || rel.startsWith('..')) problems.push(`line ${c.line}: COPY ${src} reaches outside the build context`);
        else if (/[*?[]/.test(rel)) problems.push(`line ${c.line}: COPY ${src}: globs are not checked, name the paths`);
        else if (!existsSync(join(ctx.root, rel))) problems.push(`line ${c.line}: COPY ${src}: no such path in the repository`);
        else if (ignored.some((m) => m(rel))) problems.push(`line ${c.line}: COPY ${src}: excluded by .dockerignore`);
      }
    }
  }

  // build: npm ci with the lockfile, then the sources tsc compiles, then npm run build.
  const ciBuild = runs(build, /\bnpm ci\b/);
  const runBuild = runs(build, /\bnpm run build\b/) ?? runs(build, /\bnpm ci\b(?!.*--ignore-scripts)/);
  if (ciBuild === undefined) problems.push('build: no `npm ci`');
  else if (!copiedBefore(build, ciBuild.line).includes('package-lock.json')) problems.push('build: COPY package-lock.json before `npm ci`');
  if (runBuild === undefined) {
    problems.push('build: no `npm run build`');
  } else {
    const have = copiedBefore(build, runBuild.line);
    for (const need of ['tsconfig.json', 'tsconfig.build.json', ...ctx.buildInclude]) {
      if (!have.includes(need)) problems.push(`build: \`npm run build\` needs ${need} copied first`);
    }
  }

  // runtime: production dependencies without the prepare script (tsc is a devDependency), dist/ from build.
  const ciRuntime = runs(runtime, /\bnpm ci\b/);
  if (ciRuntime === undefined) {
    problems.push('runtime: no `npm ci`');
  } else {
    if (!/--omit=dev\b/.test(ciRuntime.args)) problems.push('runtime: `npm ci --omit=dev` (no dev toolchain in the image)');
    if (!/--ignore-scripts\b/.test(ciRuntime.args)) problems.push('runtime: `npm ci --ignore-scripts` (prepare would run tsc, a devDependency)');
    if (!copiedBefore(runtime, ciRuntime.line).includes('package-lock.json')) problems.push('runtime: COPY package-lock.json before `npm ci`');
  }
  const copies = runtime.instructions.filter((i) => i.keyword === 'COPY').map(copyOf);
  const buildWorkdir = build.instructions.filter((i) => i.keyword === 'WORKDIR').at(-1)?.args ?? '/';
  const distFromBuild = copies.some((c) => c.from === 'build' && c.sources.some((s) => normalize(s).replace(/\/+$/, '') === join(buildWorkdir, ctx.outDir)));
  if (!distFromBuild) problems.push(`runtime: COPY --from=build ${join(buildWorkdir, ctx.outDir)}/ (the compiled code)`);
  const runtimeHas = copies.filter((c) => c.from === undefined).flatMap((c) => c.sources.map((s) => normalize(s).replace(/\/+$/, '')));
  for (const need of ['bin', 'examples', 'package.json', 'package-lock.json']) {
    if (!runtimeHas.includes(need)) problems.push(`runtime: COPY ${need}`);
  }

  // The process runs unprivileged: the last USER before ENTRYPOINT is not root.
  const users = runtime.instructions.filter((i) => i.keyword === 'USER');
  const user = users.at(-1)?.args.split(':')[0];
  if (user === undefined) problems.push('runtime: no USER: the container would run as root');
  else if (user === 'root' || user === '0') problems.push(`runtime: USER ${user} is root`);

  const entry = runtime.instructions.filter((i) => i.keyword === 'ENTRYPOINT').at(-1);
  let argv: unknown;
  try {
    argv = entry === undefined ? undefined : JSON.parse(entry.args);
  } catch {
    argv = entry?.args;
  }
  if (JSON.stringify(argv) !== JSON.stringify(['node', 'bin/xgsim.js'])) {
    problems.push(`runtime: ENTRYPOINT must be ["node", "bin/xgsim.js"] (exec form, so signals reach node), is ${entry?.args ?? 'missing'}`);
  } else if (!existsSync(join(ctx.root, 'bin', 'xgsim.js'))) {
    problems.push('ENTRYPOINT bin/xgsim.js: no such file in the repository');
  }
  if (users.length > 0 && entry !== undefined && users.at(-1)!.line > entry.line) problems.push('runtime: USER after ENTRYPOINT');
  return problems;
}
