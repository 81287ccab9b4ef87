/**
 * The xgsim command line. Exit codes: 0 pass, 1 a violation or failed run,
 * 2 bad input or unusable environment — always one line, never a stack
 * trace (XGSIM_VERBOSE=1 or --verbose shows it).
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Command, CommanderError } from 'commander';
import { BuggifyError, parseBuggify } from '../hypervisor/xen/buggify.js';
import { isInputError } from './config/errors.js';
import { EXIT, RunInterrupted, UsageError, printable } from './errors.js';
import { HostDied, up, type UpOptions } from './up/up.js';
import { parseSeed, runFlag, type CliFlags } from './up/run-flags.js';
import { scenarioCommand } from './scenario/command.js';
import { ADVERSARIES, stressRevoke, type StressOptions } from './up/stress.js';
import { formatBench, runBench } from './bench/bench.js';
import { loadSavedRun } from './report/saved-run.js';
import { commandLine, prepareOutputs, writeReportDir } from './up/outputs.js';
import { writeCurvesReport } from './report/curves.js';
import { CURVES, curveNames } from './bench/curves.js';
import { chaos, type ChaosOptions } from './up/chaos.js';
import { NEMESIS_KINDS } from '../hypervisor/host/chaos.js';
import { replay, type ReplayOptions } from './runs/replay.js';
import { campaign, type CampaignOptions } from './campaign/campaign.js';
import { DEFAULT_POOL, hostCommand, type HostCommandOptions } from './campaign/host.js';
import { simCommand } from './sim/sim.js';

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

const program = new Command();
program
  .name('xgsim')
  .description('A truly concurrent simulator of the Xen memory-management primitives GPU virtualization needs from an IOREQ server.')
  .option('--verbose', 'show stack traces of errors')
  .showHelpAfterError(false)
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

program
  .command('up')
  .description('launch a multi-domain topology, run its workloads, check invariants, print a summary')
  .argument('<topology>', 'topology YAML (format: docs/formats.md)')
  .addOption(runFlag('duration', "how long to run: 500ms, 10s, 2m (default: the topology's, else 10s)"))
  .addOption(runFlag('seed', "seed for the guests' randomness (default: the topology's, else random; always printed)"))
  .addOption(runFlag('json', 'print the summary as JSON (docs/formats.md §7)'))
  .addOption(runFlag('transport'))
  .addOption(runFlag('redisUrl'))
  .addOption(runFlag('transportTimeout'))
  .addOption(runFlag('checkInterval'))
  .option('--no-checks', 'turn off the hot-path checks (use-after-unmap detection, lockdep, scrub check)')
  .addOption(runFlag('trace'))
  .addOption(runFlag('report'))
  .addOption(runFlag('save'))
  .addHelpText(
    'after',
    `
Examples:
  $ xgsim up examples/two-guests.yaml
  $ xgsim up examples/two-guests.yaml --duration 10s --json
  $ xgsim up examples/gpu-desktop.yaml --transport redis --duration 30s
  $ xgsim up examples/gpu-desktop.yaml --duration 5s --trace run.json --report run-report/
  $ XGSIM_BUGGIFY=skip-tlb-flush-on-unmap xgsim up examples/two-guests.yaml --seed 7
  $ xgsim up examples/two-guests.yaml --duration 5s --save runs/two-guests.json`,
  )
  .action((file: string, opts: CliFlags<UpOptions>) => exitWith(up(file, { ...opts, buggify: envBuggify() })));

program
  .command('scenario')
  .description('run declarative step-by-step scenarios, one verdict per file: SUCCESS / FAILURE / ERROR / SKIP')
  .argument('<files...>', 'scenario YAML files (format: docs/formats.md)')
  .option('--json', 'print [{file, name, verdict, step, expected, got}]')
  .option('--seed <n>', 'seed for the vCPU contexts of the steps')
  .option('--own-bug', 'run each file with the bug its `buggify:` field names switched on (besides XGSIM_BUGGIFY); it must then FAIL')
  .addHelpText(
    'after',
    `
Examples:
  $ xgsim scenario examples/scenarios/*.yaml
  $ xgsim scenario examples/scenarios/steal-granted-ebusy.yaml --json
  $ XGSIM_BUGGIFY=steal-skip-grant-check xgsim scenario examples/scenarios/*.yaml
  $ xgsim scenario examples/xsa/*.yaml --own-bug        # every XSA scenario with its own bug: all FAILURE`,
  )
  .action((files: string[], opts: { json?: boolean; seed?: string; ownBug?: boolean }) => {
    const buggify = envBuggify();
    const seed = parseSeed(opts.seed);
    return exitWith(scenarioCommand(files, {
      ...(opts.json !== undefined ? { json: opts.json } : {}), ...(seed !== undefined ? { seed } : {}), ...(opts.ownBug === true ? { ownBug: true } : {}), buggify,
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
  .option('--pcpus <n|auto>', 'schedule the vCPUs on this many pCPUs, Xen-style (auto: one per core); default none: the OS schedules every vCPU thread')
  .addOption(runFlag('json'))
  .addOption(runFlag('trace'))
  .addOption(runFlag('report'))
  .addOption(runFlag('save'))
  .addHelpText(
    'after',
    `
Examples:
  $ xgsim stress revoke --guests 4 --vcpus 2 --duration 20s --json
  $ xgsim stress revoke --adversary mix --duration 10s
  $ xgsim stress revoke --duration 3s --trace revoke.json --report revoke-report/
  $ xgsim stress revoke --guests 1 --vcpus 8 --backend-vcpus 1 --pcpus auto
  $ XGSIM_BUGGIFY=skip-tlb-flush-on-revoke xgsim stress revoke --duration 5s   # must find violations, saves a record
  $ xgsim stress revoke --guests 1 --duration 500ms --save runs/tiny.json`,
  )
  .action((opts: CliFlags<StressOptions>) => exitWith(stressRevoke({ ...opts, buggify: envBuggify() })));

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
  .action((file: string, dir: string) => {
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
  .addOption(runFlag('redisUrl'))
  .addOption(runFlag('transportTimeout'))
  .addOption(runFlag('checkInterval'))
  .addOption(runFlag('save'))
  .addOption(runFlag('trace', 'write the timeline as Chrome trace JSON, injections included (open it in ui.perfetto.dev)'))
  .addOption(runFlag('report', 'write <dir>/index.html (plots with the injections, summary; self-contained) and <dir>/summary.json'))
  .addHelpText(
    'after',
    `
Nemeses: ${NEMESIS_KINDS.join(', ')}

Examples:
  $ xgsim chaos examples/chaos/everything.yaml --duration 60s --json
  $ xgsim chaos examples/chaos/smoke.yaml --transport ring --seed 7
  $ xgsim chaos examples/chaos/smoke.yaml --duration 10s --trace chaos.json --report chaos-report/
  $ XGSIM_BUGGIFY=ioreq-no-dedup xgsim chaos examples/chaos/smoke.yaml   # must find violations, saves a record`,
  )
  .action((file: string, opts: CliFlags<ChaosOptions>) => exitWith(chaos(file, { ...opts, buggify: envBuggify() })));

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
  .action((file: string, opts: ReplayOptions) => exitWith(replay(file, opts)));

program
  .command('campaign')
  .description('run many seeded stress / chaos / up / sim runs over Redis on `xgsim host` workers; pass/fail per seed, failing seeds with replay commands, merged Revoke latency, total violations')
  .argument('<plan>', 'campaign plan YAML (format: docs/campaigns.md)')
  .option('--runs <n>', 'how many runs (jobs) to enqueue')
  .option('--redis-url <url>', 'the Redis of the job and result streams (default: REDIS_URL or redis://127.0.0.1:6379)')
  .option('--spawn-hosts <k>', 'also start k local `xgsim host` processes (stopped at the end; logs in the campaign directory)', '0')
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
  .action((file: string, opts: CampaignOptions) => exitWith(campaign(file, opts)));

program
  .command('host')
  .description('a campaign worker: take jobs one at a time from the campaigns of a pool, run each in a forked host process (sim jobs on its own thread), publish the result; reclaims the jobs of dead hosts')
  .option('--redis-url <url>', 'the Redis of the campaigns (default: REDIS_URL or redis://127.0.0.1:6379)')
  .option('--name <name>', 'consumer name in the group (default: <hostname>-<pid>)')
  .option('--max-jobs <m>', 'leave after m jobs (default: serve until Ctrl-C)')
  .option('--pool <name>', 'serve the campaigns of this pool', DEFAULT_POOL)
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
  .action((opts: HostCommandOptions) => exitWith(hostCommand(opts)));

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
  .option('--check-determinism', 'run twice and compare the hashes (exit 1 if they differ)')
  .option('--shrink', 'shrink the (first) failing run — fewer steps, nemeses, vCPUs — and write it as a replay file')
  .option('--write <file>', 'where --shrink writes the replay file (default xgsim-runs/sim-seed-<n>.yaml)')
  .option('--replay <file>', 'run a replay file written by --shrink')
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
  .action((file: string | undefined, opts: { topology?: string; seed?: string; seeds?: string; steps?: string; horizon?: string; strategy?: string; chaos?: boolean; checkDeterminism?: boolean; shrink?: boolean; write?: string; replay?: string; json?: boolean }) => {
    const buggify = envBuggify();
    if (file !== undefined && opts.topology !== undefined && file !== opts.topology) throw new UsageError(`sim: two topologies (\`${file}\` and --topology \`${opts.topology}\`): give one`);
    const { topology, ...rest } = opts;
    return exitWith(simCommand(file ?? topology, { ...rest, buggify }));
  });

program
  .command('bench')
  .description('measure the hot paths as ratios to floors measured in the same run (Atomics ping-pong, typed-array access, lock pair, raw Redis stream round trip)')
  .option('--json', 'print the report as JSON')
  .option('--quick', 'few repetitions: a smoke test (CI)')
  .option('--filter <word>', 'only figures whose name contains it (access, hypercall, ioreq, revoke, steal, topology)')
  .option('--curves [names]', `sweep one parameter per curve instead of the figures: ${Object.keys(CURVES).join(', ')} or all (default all)`)
  .option('--out <file>', 'also write the report (figures or curves) as JSON to this file')
  .option('--report <dir>', 'with --curves: write <dir>/index.html (a plot per curve, self-contained) and <dir>/curves.json')
  .option('--pcpus <n|auto>', 'the curves\' machines schedule their vCPUs on this many pCPUs (auto: one per core); default none')
  .option('--redis-url <url>', 'Redis for the Redis figures (default: REDIS_URL or redis://127.0.0.1:6379; skipped if none answers)')
  .addHelpText('after', `
Examples:
  $ xgsim bench
  $ xgsim bench --quick --json
  $ xgsim bench --filter ioreq
  $ xgsim bench --curves hostile,pages --out curves.json
  $ xgsim bench --curves --report curves-report/`)
  .action(async (opts: { json?: boolean; quick?: boolean; filter?: string; curves?: string | boolean; out?: string; report?: string; pcpus?: string; redisUrl?: string }) => {
    const tty = process.stderr.isTTY === true;
    if (opts.report !== undefined && opts.curves === undefined) throw new UsageError('--report: only with --curves (the figures are a table: --json, --out)');
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
      ...(opts.pcpus !== undefined ? { pcpus: pcpusFlag(opts.pcpus) } : {}),
      progress: (s) => (tty || opts.json !== true) && process.stderr.write(`  bench: ${s}\n`),
    });
    if (opts.out !== undefined) writeFileSync(opts.out, `${JSON.stringify(r, null, 2)}\n`);
    process.stdout.write(opts.json === true ? `${JSON.stringify(r, null, 2)}\n` : `${formatBench(r)}\n`);
    if (opts.report !== undefined && r.curves !== undefined) process.stderr.write(`report: ${writeCurvesReport(opts.report, r.curves, commandLine())}\n`);
  });

/** The bugs XGSIM_BUGGIFY names, as bits (a name it does not know: BuggifyError, exit 2). */
function envBuggify(): number {
  return parseBuggify(process.env['XGSIM_BUGGIFY']);
}

/** A command's exit code becomes the process's. */
async function exitWith(run: Promise<{ exitCode: number }>): Promise<void> {
  process.exitCode = (await run).exitCode;
}

function pcpusFlag(s: string): number {
  if (s === 'auto') return availableParallelism();
  if (!/^\d+$/.test(s) || Number(s) > 256) throw new UsageError(`--pcpus: expected auto or an integer 0…256, got \`${s}\``);
  return Number(s);
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
