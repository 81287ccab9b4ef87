/**
 * The xgsim command line. Exit codes: 0 pass, 1 a violation or failed run,
 * 2 bad input or unusable environment — always one line, never a stack
 * trace (XGSIM_VERBOSE=1 or --verbose shows it).
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { BuggifyError, parseBuggify, type BugSet } from '../hypervisor/xen/buggify.js';
import { isInputError } from './config/errors.js';
import { EXIT, HostDied, RunInterrupted, UsageError, printable } from './errors.js';
import { parseSeed, runFlag } from './up/flag-defs.js';
import type { CliFlags } from './up/run-flags.js';
import { ADVERSARIES, BENCH_SECTIONS, CURVE_NAMES, DEFAULT_POOL } from './cli-words.js';
import { NEMESIS_KINDS } from '../hypervisor/host/nemesis.js';
// Only types and light modules above: each command imports what runs it
// when it runs, so `xgsim --help` and a bad flag answer at once.
import type { UpOptions } from './up/up.js';
import type { StressOptions } from './up/stress.js';
import type { ChaosOptions } from './up/chaos.js';
import type { ReplayOptions } from './runs/replay.js';
import type { CampaignOptions } from './campaign/campaign.js';
import type { HostCommandOptions } from './campaign/host.js';

/**
 * A reader that went away (`xgsim scenario … | head -1`): stop quietly, as a
 * Unix tool killed by SIGPIPE would (128 + 13), instead of an unhandled
 * EPIPE's stack trace. Node ignores SIGPIPE, so the write fails instead.
 */
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(EXIT.BROKEN_PIPE);
    throw e;
  });
}

/** The package's version, from package.json beside dist/ (bin/xgsim.js runs dist/orchestrator/cli.js). */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

const program = new Command();
program
  .name('xgsim')
  .version(`xgsim ${packageVersion()} (Node ${process.versions.node})`, '-V, --version', 'print the version and exit')
  .description('A truly concurrent simulator of the Xen memory-management primitives GPU virtualization needs from an IOREQ server.')
  .option('--verbose', 'show stack traces of errors')
  .showHelpAfterError(false)
  .exitOverride()
  // Commander's own messages ("error: unknown option …") take the prefix of every other error: one prefix, `xgsim:`.
  .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: (s, write) => write(s.replace(/^error: /, 'xgsim: ')) });

program
  .command('up')
  .description('launch a multi-domain topology, run its workloads, check invariants, print a summary')
  .argument('<topology>', 'topology YAML (format: docs/formats.md)')
  .addOption(runFlag('duration', "how long to run: 500ms, 10s, 2m (default: the topology's, else 10s)"))
  .addOption(runFlag('seed', "seed for the guests' randomness (default: the topology's, else random; always printed)"))
  .addOption(runFlag('json', 'print the summary as JSON (docs/formats.md §7)'))
  .addOption(runFlag('transport'))
  .addOption(runFlag('redisUrl'))
  .addOption(runFlag('redisAcl'))
  .addOption(runFlag('transportTimeout'))
  .addOption(runFlag('checkInterval'))
  .option('--no-checks', 'turn off the hot-path checks (use-after-unmap detection, lockdep, scrub check)')
  .option('--swarm', "each domain runs a subset of its behaviours and attacks drawn from the seed (swarm testing, campaign jobs' default; docs/verification.md)")
  .addOption(runFlag('pcpus'))
  .addOption(runFlag('trace'))
  .addOption(runFlag('report'))
  .addOption(runFlag('save'))
  .addOption(runFlag('store'))
  .addHelpText(
    'after',
    `
Examples:
  $ xgsim up examples/two-guests.yaml
  $ xgsim up examples/two-guests.yaml --duration 10s --json
  $ xgsim up examples/gpu-desktop.yaml --transport redis --duration 30s
  $ xgsim up examples/many-domains.yaml --pcpus os       # the OS schedules the vCPU threads (no pCPUs)
  $ xgsim up examples/gpu-desktop.yaml --duration 5s --trace run.json --report run-report/
  $ XGSIM_BUGGIFY=skip-tlb-flush-on-unmap xgsim up examples/two-guests.yaml --seed 7
  $ xgsim up examples/two-guests.yaml --duration 5s --save runs/two-guests.json`,
  )
  .action(async (file: string, opts: CliFlags<UpOptions>) => {
    const { up } = await import('./up/up.js');
    return exitWith(up(file, { ...opts, buggify: envBuggify() }));
  });

program
  .command('check')
  .description('validate topologies, scenarios, chaos plans, campaign plans and sim replay files without running them (one line each; exit 2 if any is bad)')
  .argument('<files...>', 'YAML files; the kind is told from the top-level keys')
  .option('--as <kind>', 'read every file as this kind: topology, scenario, chaos, campaign, sim-replay')
  .option('-q, --quiet', 'print only the errors')
  .addHelpText(
    'after',
    `
Examples:
  $ xgsim check examples/*.yaml examples/scenarios/*.yaml examples/chaos/*.yaml examples/campaigns/*.yaml
  $ xgsim check my-topology.yaml && xgsim up my-topology.yaml`,
  )
  .action(async (files: string[], opts: { as?: string; quiet?: boolean }) => {
    const { checkCommand } = await import('./check.js');
    process.exitCode = checkCommand(files, opts).exitCode;
  });

program
  .command('scenario')
  .description('run declarative step-by-step scenarios, one verdict per file: SUCCESS / FAILURE / ERROR / SKIP (exit codes as xtf-runner\'s: the worst decides)')
  .argument('<files...>', 'scenario YAML files (format: docs/formats.md)')
  .option('-l, --list', 'list the scenarios (name, file) after checking them; run nothing')
  .option('-q, --quiet', 'once: result lines only (no reasons, no totals); twice: not even SUCCESS lines', (_: string, n: number) => n + 1, 0)
  .option('--json', 'print [{file, name, verdict, step, expected, got}]')
  .option('--junit <file>', 'also write JUnit XML (one testcase per scenario) for CI systems')
  .option('--seed <n>', 'seed for the vCPU contexts of the steps')
  .option('--own-bug', 'run each file with the bug its `buggify:` field names switched on (besides XGSIM_BUGGIFY); it must then FAIL')
  .addHelpText(
    'after',
    `
Exit codes (xtf-runner's; the worst result decides): 0 every scenario SUCCESS,
3 some SKIP, 4 some ERROR, 5 some FAILURE; 2 bad input (nothing run).

Examples:
  $ xgsim scenario examples/scenarios/*.yaml
  $ xgsim scenario --list examples/scenarios/fidelity-*.yaml
  $ xgsim scenario -qq examples/scenarios/*.yaml --junit scenarios.xml
  $ xgsim scenario examples/scenarios/steal-granted-ebusy.yaml --json
  $ XGSIM_BUGGIFY=steal-skip-grant-check xgsim scenario examples/scenarios/*.yaml
  $ xgsim scenario examples/xsa/*.yaml --own-bug        # every XSA scenario with its own bug: all FAILURE (exit 5)`,
  )
  .action(async (files: string[], opts: { json?: boolean; seed?: string; ownBug?: boolean; list?: boolean; quiet: number; junit?: string }) => {
    const buggify = envBuggify();
    const seed = parseSeed(opts.seed);
    const { scenarioCommand } = await import('./scenario/command.js');
    return exitWith(scenarioCommand(files, {
      ...(opts.json !== undefined ? { json: opts.json } : {}), ...(seed !== undefined ? { seed } : {}), ...(opts.ownBug === true ? { ownBug: true } : {}), buggify,
      ...(opts.list === true ? { list: true } : {}), quiet: opts.quiet, ...(opts.junit !== undefined ? { junit: opts.junit } : {}),
    }));
  });

const stress = program.command('stress').description('stress tests of the primitives under concurrent load');
stress
  .command('revoke')
  .description('backend threads Map / Revoke / re-Map buffers while every frontend vCPU hammers them; revoke latency, cycles/s, violations')
  .option('--guests <n>', 'frontend domains', '4')
  .option('--vcpus <n>', 'vCPUs per frontend', '2')
  .option('--backend-vcpus <n>', 'dom0 vCPUs issuing Map/Revoke', '2')
  .option('--pages <n>', 'pages per mapped buffer', '8')
  .addOption(runFlag('duration').default('10s'))
  .addOption(runFlag('seed'))
  .option('--adversary <kind>', `frontend behaviour: ${ADVERSARIES.join(' | ')}`, 'none')
  .option('--full-mix', 'with --adversary mix: the frontends take every mode in turn (default: swarm testing, a subset drawn from the seed; docs/verification.md)')
  .addOption(runFlag('pcpus', 'schedule the vCPUs on n pCPUs, Xen-style; auto: one per core (the default); os: no pCPU scheduler, the OS schedules every vCPU thread'))
  .addOption(runFlag('json'))
  .addOption(runFlag('trace'))
  .addOption(runFlag('report'))
  .addOption(runFlag('save'))
  .addOption(runFlag('store'))
  .addHelpText(
    'after',
    `
Examples:
  $ xgsim stress revoke --guests 4 --vcpus 2 --duration 20s --json
  $ xgsim stress revoke --adversary mix --duration 10s
  $ xgsim stress revoke --duration 3s --trace revoke.json --report revoke-report/
  $ xgsim stress revoke --guests 1 --vcpus 8 --backend-vcpus 1 --pcpus os   # OS-scheduled vCPU threads
  $ XGSIM_BUGGIFY=skip-tlb-flush-on-revoke xgsim stress revoke --duration 5s   # must find violations, saves a record
  $ xgsim stress revoke --guests 1 --duration 500ms --save runs/tiny.json`,
  )
  .action(async (opts: CliFlags<StressOptions>) => {
    const { stressRevoke } = await import('./up/stress.js');
    return exitWith(stressRevoke({ ...opts, buggify: envBuggify() }));
  });

program
  .command('report')
  .description('render the report of a saved run again: <summary.json> (written by --report) → <dir>/index.html')
  .argument('<summary.json>', 'a saved run, as `up --report <dir>` or `stress revoke --report <dir>` wrote it')
  .argument('<dir>', 'output directory (created if missing)')
  .addHelpText(
    'after',
    `
Examples:
  $ xgsim up examples/gpu-desktop.yaml --duration 5s --report run-report/
  $ xgsim report run-report/summary.json again/
  $ chromium again/index.html`,
  )
  .action(async (file: string, dir: string) => {
    const { loadSavedRun } = await import('./report/saved-run.js');
    const { writeReportDir } = await import('./up/outputs.js');
    await (await import('./report/plot.js')).loadPlots();
    const run = loadSavedRun(file);
    const index = writeReportDir(dir, run);
    process.stderr.write(`report: ${index}\n`);
  });

program
  .command('chaos')
  .description('run a topology while injecting faults from a chaos plan (schedule and/or random rates); every injection logged, invariants checked throughout, recovery measured')
  .argument('<plan>', 'chaos plan YAML (format: docs/chaos.md)')
  .addOption(runFlag('duration', "how long to run (default: the plan's, else the topology's, else 30s)"))
  .addOption(runFlag('seed', "seed for the random nemeses and the guests (default: the plan's, else random; always printed)"))
  .addOption(runFlag('json', 'print the summary as JSON (docs/formats.md §7, plus `chaos`)'))
  .addOption(runFlag('transport', "IOREQ transport: auto, redis, ring (default: the plan's, else the topology's)"))
  .addOption(runFlag('redisUrl', 'Redis for the redis transport; a plan with Redis nemeses then has them refused unless --allow-server-nemeses (default: a redis-server xgsim starts for the run)'))
  .addOption(runFlag('redisAcl', 'create a Redis ACL user per role on the Redis of --redis-url or REDIS_URL, deleted at the end (always done on a redis-server xgsim starts for the run)'))
  .addOption(runFlag('transportTimeout'))
  .option('--allow-server-nemeses', 'let redis-pause and redis-kill act on the Redis of --redis-url (a pause stops every client of that server)')
  .option('--swarm', "each domain runs a subset of its behaviours and attacks drawn from the seed (swarm testing, campaign jobs' default; docs/verification.md)")
  .addOption(runFlag('checkInterval'))
  .addOption(runFlag('pcpus', "schedule the vCPUs on n pCPUs, Xen-style; auto: one per core; os: no pCPU scheduler, the OS schedules every vCPU thread (default: the topology's, else auto)"))
  .addOption(runFlag('save'))
  .addOption(runFlag('store'))
  .addOption(runFlag('trace', 'write the timeline as Chrome trace JSON, injections included (open it in ui.perfetto.dev)'))
  .addOption(runFlag('report', 'write <dir>/index.html (plots with the injections, summary; self-contained) and <dir>/summary.json'))
  .addHelpText(
    'after',
    `
Nemeses: ${NEMESIS_KINDS.join(', ')}

redis-pause pauses the whole Redis server: a plan that has it (or redis-kill)
runs on a redis-server xgsim starts for the run on a free port, when one is
installed; a Redis someone else runs is never paused (those nemeses are then
refused, and the start line says why).

Examples:
  $ xgsim chaos examples/chaos/everything.yaml --duration 60s --json
  $ xgsim chaos examples/chaos/smoke.yaml --transport ring --seed 7
  $ xgsim chaos examples/chaos/smoke.yaml --duration 10s --trace chaos.json --report chaos-report/
  $ XGSIM_BUGGIFY=ioreq-no-dedup xgsim chaos examples/chaos/smoke.yaml   # must find violations, saves a record`,
  )
  .option('--allow-outside-paths', 'let the plan name a topology outside its directory and the working directory (XGSIM_ALLOW_OUTSIDE_PATHS=1)')
  .action(async (file: string, opts: CliFlags<ChaosOptions> & { allowOutsidePaths?: boolean }) => {
    allowOutsidePaths(opts.allowOutsidePaths);
    const { chaos } = await import('./up/chaos.js');
    return exitWith(chaos(file, { ...opts, buggify: envBuggify() }));
  });

program
  .command('runs')
  .description('the run store: list the kept runs (newest first), write its HTML index, or prune it')
  .option('--json', 'print the runs as JSON')
  .option('--dir <dir>', 'the store (default: XGSIM_RUNS_DIR, else xgsim-runs)')
  .option('--prune', 'remove runs: with --keep, all but the newest N of each name; with --older-than, those older')
  .option('--keep <n>', 'with --prune: keep the newest n runs of each name')
  .option('--older-than <time>', 'with --prune: remove runs older than this (e.g. 7d, 12h, 30m)')
  .addHelpText(
    'after',
    `
Every run of up, stress revoke and chaos is kept in <store>/<name>/<time>/ (record.json,
summary.json, index.html), with <store>/<name>/latest, <store>/latest and <store>/index.html.

Examples:
  $ xgsim runs
  $ xgsim runs --json | jq '.[] | select(.verdict == "fail")'
  $ xgsim runs --prune --keep 20
  $ xgsim runs --prune --older-than 7d`,
  )
  .action(async (opts: { json?: boolean; dir?: string; prune?: boolean; keep?: string; olderThan?: string }) => {
    const { runsCommand } = await import('./runs/runs-command.js');
    process.exitCode = runsCommand(opts).exitCode;
  });

program
  .command('replay')
  .description('run a recorded run again (same seed, flags and BUGGIFY bugs); with --attempts, until the failure shows again')
  .argument('<record>', 'a run record: saved by a failing up / stress revoke / chaos run (xgsim-runs/), by --save, or by a campaign (sim jobs too)')
  .option('--attempts <n>', 'run up to n times, stopping at the first failure (threads interleave differently each run)', '1')
  .option('--json', 'print {record, attempts, reproduced, runs, summary} as JSON')
  .option('--redis-url <url>', 'Redis for runs over the redis transport (default: REDIS_URL or redis://127.0.0.1:6379)')
  .addHelpText(
    'after',
    `
Exit codes: 1 a run failed (the failure reproduced), 0 every attempt passed, 2 a bad or missing record.

Examples:
  $ xgsim replay xgsim-runs/stress-revoke-seed-1234-20261126-101500-123.json
  $ xgsim replay xgsim-runs/campaign-revoke-chaos-7-m3x1a/job-17-seed-99.json --attempts 10
  $ xgsim replay runs/two-guests.json --json`,
  )
  .action(async (file: string, opts: ReplayOptions) => {
    const { replay } = await import('./runs/replay.js');
    return exitWith(replay(file, opts));
  });

program
  .command('campaign')
  .description('run many seeded stress / chaos / up / sim runs over Redis on `xgsim host` workers; pass/fail per seed, failing seeds with replay commands, merged Revoke latency, total violations')
  .argument('<plan>', 'campaign plan YAML (format: docs/campaigns.md)')
  .option('--runs <n>', 'how many runs (jobs) to enqueue')
  .option('--redis-url <url>', 'the Redis of the job and result streams (default: REDIS_URL or redis://127.0.0.1:6379)')
  .option('--spawn-hosts <k>', 'also start k local `xgsim host` processes (stopped at the end; logs in the campaign directory)', '0')
  .option('--host-jobs <n>', 'cores each spawned host gives its jobs (default: this machine\'s cores shared among the spawned hosts)')
  .option('--redis-acl', 'the spawned hosts talk to Redis as an ACL user of their own that reaches only the campaign keys (made on the Redis of --redis-url or REDIS_URL, deleted at the end); their runs go over the ring transport')
  .option('--json', 'print the campaign report as JSON')
  .option('--timeout <time>', 'give up waiting after this long (jobs without a result count as failed)')
  .option('--seed <n>', 'campaign seed: job i\'s seed and template derive from it (default: the plan\'s, else random; always printed)')
  .option('--pool <name>', 'the pool of hosts to use (hosts serve the campaigns of their pool)', DEFAULT_POOL)
  .option('--dir <dir>', 'where the report, failing runs\' records and host logs go (default: xgsim-runs/campaign-<id>)')
  .addHelpText(
    'after',
    `
BUGGIFY bugs come from XGSIM_BUGGIFY and are recorded in every job. Exit codes: 0 every run passed,
1 a run failed, errored, timed out or was never accounted, 2 bad input or no Redis.

Examples:
  $ xgsim campaign examples/campaigns/revoke-chaos.yaml --runs 200 --spawn-hosts 2
  $ xgsim host &  xgsim host &  xgsim campaign examples/campaigns/revoke-chaos.yaml --runs 200
  $ XGSIM_BUGGIFY=skip-tlb-flush-on-revoke xgsim campaign examples/campaigns/revoke-chaos.yaml --runs 20 --spawn-hosts 2
  $ xgsim campaign examples/campaigns/revoke-chaos.yaml --runs 1000 --redis-url redis://redis:6379 --json --timeout 30m`,
  )
  .option('--allow-outside-paths', 'let jobs name files outside the plan\'s directory and the working directory (XGSIM_ALLOW_OUTSIDE_PATHS=1; hosts it spawns inherit it)')
  .action(async (file: string, opts: CampaignOptions & { allowOutsidePaths?: boolean }) => {
    allowOutsidePaths(opts.allowOutsidePaths);
    const { campaign } = await import('./campaign/campaign.js');
    return exitWith(campaign(file, opts));
  });

program
  .command('compare')
  .description('compare memory-sharing designs: every design × workload of a plan with the same seeds on real threads (refusals: the design\'s refusal scenarios); one table of safety, Revoke latency, throughput and costs')
  .argument('<plan>', 'comparison plan YAML (format: orchestrator/config/compare.ts, docs/designs.md)')
  .option('--json', 'print the report as JSON instead of the table')
  .option('--report <dir>', 'also write <dir>/index.html (the table, then the run report\'s plots side by side per design), compare.json and compare.txt')
  .option('--sim <steps>', 'run each threaded cell in the deterministic simulator instead, <steps> decisions per seed (no chaos, no liveness tail): the same plan gives the same table')
  .addHelpText(
    'after',
    `
XGSIM_BUGGIFY bugs apply to every cell; a plan's design variant adds its own (an unsafe variant the table must show
UNSAFE). Exit codes: 0 every design as shipped came out safe, 1 one did not, 2 bad input.

Examples:
  $ xgsim compare examples/compare/gpu.yaml --report compare-report/
  $ xgsim compare examples/compare/designs-smoke.yaml --json`,
  )
  .action(async (file: string, opts: { json?: boolean; report?: string; sim?: string }) => {
    const { compare } = await import('./compare/compare.js');
    const { sim, ...rest } = opts;
    if (sim !== undefined && !(/^\d+$/.test(sim) && Number(sim) >= 1 && Number(sim) <= 100_000_000)) throw new UsageError(`--sim: expected a number of steps 1…100000000, got \`${sim}\``);
    return exitWith(compare(file, { ...rest, ...(sim !== undefined ? { sim_steps: Number(sim) } : {}), buggify: envBuggify() }));
  });

program
  .command('host')
  .description('a campaign worker: take jobs from the campaigns of a pool while it has cores for them, run each (real-thread jobs in forked host processes, sim jobs on threads), publish the results; reclaims the jobs of dead hosts')
  .option('--redis-url <url>', 'the Redis of the campaigns (default: REDIS_URL or redis://127.0.0.1:6379)')
  .option('--name <name>', 'consumer name in the group (default: <hostname>-<pid>)')
  .option('--max-jobs <m>', 'leave after m jobs (default: serve until Ctrl-C)')
  .option('--pool <name>', 'serve the campaigns of this pool', DEFAULT_POOL)
  .option('--jobs <n>', 'cores to give jobs: a sim job takes 1, a real-thread job its --pcpus (default: all) (default: this machine\'s cores)')
  .addHelpText(
    'after',
    `
Ctrl-C (or SIGTERM) stops the job in hand and gives it back, so another host takes it at once; a second Ctrl-C kills it.
Hosts resolve a job's files (topologies, chaos plans) from their working directory: run them from the repository root.

Examples:
  $ xgsim host
  $ xgsim host --name lab-1 --redis-url redis://10.0.0.5:6379
  $ xgsim host --max-jobs 10 --pool nightly`,
  )
  .action(async (opts: HostCommandOptions) => {
    const { hostCommand } = await import('./campaign/host.js');
    return exitWith(hostCommand(opts));
  });

program
  .command('sim')
  .description('deterministic simulation: every vCPU of a topology on one thread under a seeded scheduler (random walk or PCT), seeded nemeses, simulated time; same seed, same hash')
  .argument('[topology]', 'topology YAML (default: examples/sim/default.yaml)')
  .option('--topology <file>', 'the same as the argument')
  .option('--seed <n>', 'the seed (default: random; always printed)')
  .option('--seeds <a..b>', 'explore seeds a..b: failing seeds with the command that replays each')
  .option('--steps <n>', `scheduling decisions per run (default ${20_000})`)
  .option('--horizon <n>', 'steps the nemeses and PCT change points are spread over (default: --steps; replay commands set it)')
  .option('--strategy <s>', 'random (a random walk), pct (priorities with change points) or mixed (each seed picks)', 'mixed')
  .option('--no-chaos', 'no nemeses (default: each nemesis on or off per seed, BUGGIFY-style)')
  .option('--full-mix', 'every behaviour and attack the topology lists, every seed (default: swarm testing, each seed draws a subset per domain; docs/verification.md)')
  .option('--no-liveness', 'no quiet tail and no liveness checks (default: 2000 decisions after --steps with every nemesis stopped; every vCPU must progress, every ioreq be answered, every posted write be consumed)')
  .option('--check-determinism', 'run twice and compare the hashes (exit 1 if they differ)')
  .option('--shrink', 'shrink the (first) failing run — fewer steps, nemeses, vCPUs — and write it as a replay file')
  .option('--write <file>', 'where --shrink writes the replay file (default xgsim-runs/sim-seed-<n>.yaml)')
  .option('--replay <file>', 'run a replay file written by --shrink')
  .option('--cost-model <file>', 'simulated time from a cost model `xgsim bench --cost-model <file>` wrote (default: flat, 2 µs per decision); replay commands name it')
  .option('--json', 'print the result as JSON')
  .addHelpText(
    'after',
    `
Exit codes: 0 pass (and identical hashes), 1 a failure (or different hashes), 2 bad input.

Examples:
  $ xgsim sim --seed 7 --steps 200000 --check-determinism --json
  $ xgsim sim --seeds 1..1000
  $ XGSIM_BUGGIFY=skip-tlb-flush-on-revoke xgsim sim --seeds 1..1000 --shrink
  $ xgsim sim --replay xgsim-runs/sim-seed-12-skip-tlb-flush-on-revoke.yaml
  $ xgsim sim examples/two-guests.yaml --seed 3 --strategy pct
  $ xgsim sim --topology examples/gpu-desktop.yaml --seeds 1..100 --json`,
  )
  .action(async (file: string | undefined, opts: { topology?: string; seed?: string; seeds?: string; steps?: string; horizon?: string; strategy?: string; chaos?: boolean; liveness?: boolean; fullMix?: boolean; checkDeterminism?: boolean; shrink?: boolean; write?: string; replay?: string; json?: boolean; costModel?: string }) => {
    const buggify = envBuggify();
    if (file !== undefined && opts.topology !== undefined && file !== opts.topology) throw new UsageError(`sim: two topologies (\`${file}\` and --topology \`${opts.topology}\`): give one`);
    const { topology, ...rest } = opts;
    const { simCommand } = await import('./sim/sim.js');
    return exitWith(simCommand(file ?? topology, { ...rest, buggify }));
  });

program
  .command('bench')
  .description('measure the hot paths as ratios to floors measured in the same run (Atomics ping-pong, typed-array access, lock pair, raw Redis stream round trip)')
  .option('--json', 'print the report as JSON')
  .option('--quick', 'few repetitions: a smoke test (CI)')
  .option('--filter <word>', `only the sections whose name contains it (${BENCH_SECTIONS.join(', ')}); none matching is bad input`)
  .option('--curves [names]', `sweep one parameter per curve instead of the figures: ${CURVE_NAMES.join(', ')} or all (default all)`)
  .option('--out <file>', 'also write the report (figures or curves) as JSON to this file')
  .option('--report <dir>', 'with --curves: write <dir>/index.html (a plot per curve, self-contained) and <dir>/curves.json')
  .option('--pcpus <n|auto|os>', 'the curves\' machines schedule their vCPUs on n pCPUs; auto: one per core (the default); os: the OS schedules the vCPU threads')
  .option('--redis-url <url>', 'Redis for the Redis figures (default: REDIS_URL or redis://127.0.0.1:6379; skipped if none answers)')
  .option('--cost-model <file>', 'also write the simulator\'s cost model measured by this run (access, hypercall, IOREQ, shootdown) for `xgsim sim --cost-model <file>`')
  .addHelpText('after', `
Examples:
  $ xgsim bench
  $ xgsim bench --quick --json
  $ xgsim bench --filter ioreq
  $ xgsim bench --curves hostile,pages --out curves.json
  $ xgsim bench --curves --report curves-report/`)
  .action(async (opts: { json?: boolean; quick?: boolean; filter?: string; curves?: string | boolean; out?: string; report?: string; pcpus?: string; redisUrl?: string; costModel?: string }) => {
    const tty = process.stderr.isTTY === true;
    const [{ writeFileSync }, { formatBench, runBench }, { curveNames }, { writeCurvesReport }, { commandLine, prepareOutputs }, { parsePcpusFlag, pcpusOf }] = await Promise.all([
      import('node:fs'), import('./bench/bench.js'), import('./bench/curves.js'), import('./report/curves.js'), import('./up/outputs.js'), import('./up/run-flags.js'),
    ]);
    if (opts.report !== undefined && opts.curves === undefined) throw new UsageError('--report: only with --curves (the figures are a table: --json, --out)');
    const { COST_MODEL_SECTIONS, costModelFromBench } = await import('./bench/cost-model.js');
    if (opts.costModel !== undefined && (opts.curves !== undefined || (opts.filter !== undefined && !COST_MODEL_SECTIONS.every((x) => x.includes(opts.filter!))))) {
      throw new UsageError(`--cost-model: needs the ${COST_MODEL_SECTIONS.join(', ')} sections (no --curves, no --filter that leaves one out)`);
    }
    if (opts.report !== undefined) prepareOutputs({ report: opts.report });
    let curves: string[] | undefined;
    if (opts.curves !== undefined) {
      try {
        curves = curveNames(opts.curves === true ? 'all' : String(opts.curves));
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    }
    const r = await runBench({
      quick: opts.quick === true,
      ...(opts.filter !== undefined ? { filter: opts.filter } : {}),
      ...(opts.redisUrl !== undefined ? { redisUrl: opts.redisUrl } : {}),
      ...(curves !== undefined ? { curves } : {}),
      ...(opts.pcpus !== undefined ? { pcpus: pcpusOf(parsePcpusFlag(opts.pcpus)!) } : {}),
      progress: (s) => (tty || opts.json !== true) && process.stderr.write(`  bench: ${s}\n`),
    });
    if (opts.out !== undefined) writeFileSync(opts.out, `${JSON.stringify(r, null, 2)}\n`);
    if (opts.costModel !== undefined) {
      writeFileSync(opts.costModel, `${JSON.stringify(costModelFromBench(r), null, 2)}\n`);
      process.stderr.write(`cost model: ${opts.costModel} (xgsim sim --cost-model ${opts.costModel})\n`);
    }
    process.stdout.write(opts.json === true ? `${JSON.stringify(r, null, 2)}\n` : `${formatBench(r)}\n`);
    if (opts.report !== undefined && r.curves !== undefined) await (await import('./report/plot.js')).loadPlots();
    if (opts.report !== undefined && r.curves !== undefined) process.stderr.write(`report: ${writeCurvesReport(opts.report, r.curves, commandLine())}\n`);
  });

/** `--allow-outside-paths`: the plan loaders read XGSIM_ALLOW_OUTSIDE_PATHS (config/load.ts planPath). */
function allowOutsidePaths(on: boolean | undefined): void {
  if (on === true) process.env['XGSIM_ALLOW_OUTSIDE_PATHS'] = '1';
}

/** The bugs XGSIM_BUGGIFY names, as a bug set (a name it does not know: BuggifyError, exit 2). */
function envBuggify(): BugSet {
  return parseBuggify(process.env['XGSIM_BUGGIFY']);
}

/** A command's exit code becomes the process's. */
async function exitWith(run: Promise<{ exitCode: number }>): Promise<void> {
  process.exitCode = (await run).exitCode;
}

async function main(): Promise<void> {
  const verbose = process.argv.includes('--verbose') || process.env['XGSIM_VERBOSE'] === '1';
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander already printed its one-line message; help and version are not errors.
      process.exitCode = e.exitCode === 0 ? EXIT.PASS : EXIT.BAD_INPUT;
      return;
    }
    if (isInputError(e) || e instanceof UsageError || e instanceof BuggifyError) {
      process.stderr.write(`xgsim: ${printable(isInputError(e) ? e.toString() : e.message)}\n`);
      if (verbose && e instanceof Error) process.stderr.write(`${e.stack ?? ''}\n`);
      process.exitCode = EXIT.BAD_INPUT;
      return;
    }
    if (e instanceof HostDied) {
      process.stderr.write(`xgsim: ${printable(e.message)}\n`);
      process.exitCode = EXIT.FAIL;
      return;
    }
    if (e instanceof RunInterrupted) {
      process.stderr.write(`xgsim: ${printable(e.message)}\n`);
      process.exitCode = EXIT.INTERRUPTED;
      return;
    }
    process.stderr.write(`xgsim: internal error: ${printable(e instanceof Error ? e.message : String(e))}${verbose ? '' : ' (--verbose for the stack)'}\n`);
    if (verbose && e instanceof Error) process.stderr.write(`${e.stack ?? ''}\n`);
    process.exitCode = EXIT.FAIL;
  }
}

await main();
