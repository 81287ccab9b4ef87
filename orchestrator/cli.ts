/**
 * The xgsim command line. Exit codes: 0 pass, 1 a violation or failed run,
 * 2 bad input or unusable environment — always one line, never a stack
 * trace (XGSIM_VERBOSE=1 or --verbose shows it).
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Command, CommanderError, Option } from 'commander';
import { BuggifyError, parseBuggify } from '../hypervisor/buggify.js';
import { isInputError } from './config/errors.js';
import { EXIT, UsageError } from './errors.js';
import { HostDied, parseSeed, up } from './up.js';
import { scenarioCommand } from './scenario/command.js';
import { ADVERSARIES, stressRevoke } from './stress.js';
import { formatBench, runBench } from './bench.js';
import { CURVES, curveNames } from './bench-curves.js';
import { chaos } from './chaos.js';
import { NEMESIS_KINDS } from '../hypervisor/chaos.js';

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
  .argument('<topology>', 'topology YAML (format: SCENARIOS.md)')
  .option('-d, --duration <time>', 'how long to run: 500ms, 10s, 2m (default: the topology\'s, else 10s)')
  .option('--seed <n>', 'seed for the guests\' randomness (default: the topology\'s, else random; always printed)')
  .option('--json', 'print the summary as JSON (SCENARIOS.md "Summary")')
  .addOption(new Option('--transport <kind>', 'IOREQ transport: auto (Redis if it answers, else ring), redis, ring').choices(['auto', 'redis', 'ring']))
  .option('--redis-url <url>', 'Redis for the redis transport (default: REDIS_URL or redis://127.0.0.1:6379)')
  .option('--check-interval <time>', 'period of the running invariant checker', '250ms')
  .option('--no-checks', 'turn off the hot-path checks (use-after-unmap detection, lockdep, scrub check)')
  .addHelpText(
    'after',
    `
Examples:
  $ xgsim up examples/two-guests.yaml
  $ xgsim up examples/two-guests.yaml --duration 10s --json
  $ xgsim up examples/gpu-desktop.yaml --transport redis --duration 30s
  $ XGSIM_BUGGIFY=skip-tlb-flush-on-unmap xgsim up examples/two-guests.yaml --seed 7`,
  )
  .action(async (file: string, opts: { duration?: string; seed?: string; json?: boolean; transport?: string; redisUrl?: string; checkInterval?: string; checks?: boolean }) => {
    const buggify = parseBuggify(process.env['XGSIM_BUGGIFY']);
    const { exitCode } = await up(file, { ...opts, buggify });
    process.exitCode = exitCode;
  });

program
  .command('scenario')
  .description('run declarative step-by-step scenarios, one verdict per file: SUCCESS / FAILURE / ERROR / SKIP')
  .argument('<files...>', 'scenario YAML files (format: SCENARIOS.md)')
  .option('--json', 'print [{file, name, verdict, step, expected, got}]')
  .option('--seed <n>', 'seed for the vCPU contexts of the steps')
  .addHelpText(
    'after',
    `
Examples:
  $ xgsim scenario examples/scenarios/*.yaml
  $ xgsim scenario examples/scenarios/steal-granted-ebusy.yaml --json
  $ XGSIM_BUGGIFY=steal-skip-grant-check xgsim scenario examples/scenarios/*.yaml`,
  )
  .action(async (files: string[], opts: { json?: boolean; seed?: string }) => {
    const buggify = parseBuggify(process.env['XGSIM_BUGGIFY']);
    const seed = parseSeed(opts.seed);
    const { exitCode } = await scenarioCommand(files, { ...(opts.json !== undefined ? { json: opts.json } : {}), ...(seed !== undefined ? { seed } : {}), buggify });
    process.exitCode = exitCode;
  });

const stress = program.command('stress').description('stress tests of the primitives under concurrent load');
stress
  .command('revoke')
  .description('backend threads Map / Revoke / re-Map buffers while every frontend vCPU hammers them; revoke latency, cycles/s, violations')
  .option('--guests <n>', 'frontend domains', '4')
  .option('--vcpus <n>', 'vCPUs per frontend', '2')
  .option('--backend-vcpus <n>', 'dom0 vCPUs issuing Map/Revoke', '2')
  .option('--pages <n>', 'pages per mapped buffer', '8')
  .option('-d, --duration <time>', 'how long to run', '10s')
  .option('--seed <n>', 'seed (default random; always printed)')
  .option('--adversary <kind>', `frontend behaviour: ${ADVERSARIES.join(' | ')}`, 'none')
  .option('--pcpus <n|auto>', 'schedule the vCPUs on this many pCPUs, Xen-style (auto: one per core); default none: the OS schedules every vCPU thread')
  .option('--json', 'print the summary as JSON')
  .addHelpText(
    'after',
    `
Examples:
  $ xgsim stress revoke --guests 4 --vcpus 2 --duration 20s --json
  $ xgsim stress revoke --adversary mix --duration 10s
  $ xgsim stress revoke --guests 1 --vcpus 8 --backend-vcpus 1 --pcpus auto
  $ XGSIM_BUGGIFY=skip-tlb-flush-on-revoke xgsim stress revoke --duration 5s   # must find violations`,
  )
  .action(async (opts: { guests?: string; vcpus?: string; backendVcpus?: string; pages?: string; duration?: string; seed?: string; adversary?: string; pcpus?: string; json?: boolean }) => {
    const buggify = parseBuggify(process.env['XGSIM_BUGGIFY']);
    const { exitCode } = await stressRevoke({ ...opts, buggify });
    process.exitCode = exitCode;
  });

program
  .command('chaos')
  .description('run a topology while injecting faults from a chaos plan (schedule and/or random rates); every injection logged, invariants checked throughout, recovery measured')
  .argument('<plan>', 'chaos plan YAML (format: docs/chaos.md)')
  .option('-d, --duration <time>', "how long to run (default: the plan's, else the topology's, else 30s)")
  .option('--seed <n>', 'seed for the random nemeses and the guests (default: the plan\'s, else random; always printed)')
  .option('--json', 'print the summary as JSON (SCENARIOS.md "Summary", plus `chaos`)')
  .addOption(new Option('--transport <kind>', 'IOREQ transport: auto, redis, ring (default: the plan\'s, else the topology\'s)').choices(['auto', 'redis', 'ring']))
  .option('--redis-url <url>', 'Redis for the redis transport (default: REDIS_URL or redis://127.0.0.1:6379)')
  .option('--check-interval <time>', 'period of the running invariant checker', '250ms')
  .addHelpText(
    'after',
    `
Nemeses: ${NEMESIS_KINDS.join(', ')}

Examples:
  $ xgsim chaos examples/chaos/everything.yaml --duration 60s --json
  $ xgsim chaos examples/chaos/device-model-kills.yaml --seed 7
  $ xgsim chaos examples/chaos/transport.yaml --transport ring`,
  )
  .action(async (file: string, opts: { duration?: string; seed?: string; json?: boolean; transport?: string; redisUrl?: string; checkInterval?: string }) => {
    const buggify = parseBuggify(process.env['XGSIM_BUGGIFY']);
    const { exitCode } = await chaos(file, { ...opts, buggify });
    process.exitCode = exitCode;
  });

program
  .command('bench')
  .description('measure the hot paths as ratios to floors measured in the same run (Atomics ping-pong, typed-array access, lock pair, raw Redis stream round trip)')
  .option('--json', 'print the report as JSON')
  .option('--quick', 'few repetitions: a smoke test (CI)')
  .option('--filter <word>', 'only figures whose name contains it (access, hypercall, ioreq, revoke, steal, topology)')
  .option('--curves [names]', `sweep one parameter per curve instead of the figures: ${Object.keys(CURVES).join(', ')} or all (default all)`)
  .option('--out <file>', 'also write the report (figures or curves) as JSON to this file')
  .option('--pcpus <n|auto>', 'the curves\' machines schedule their vCPUs on this many pCPUs (auto: one per core); default none')
  .option('--redis-url <url>', 'Redis for the Redis figures (default: REDIS_URL or redis://127.0.0.1:6379; skipped if none answers)')
  .addHelpText('after', `
Examples:
  $ xgsim bench
  $ xgsim bench --quick --json
  $ xgsim bench --filter ioreq
  $ xgsim bench --curves hostile,pages --out curves.json`)
  .action(async (opts: { json?: boolean; quick?: boolean; filter?: string; curves?: string | boolean; out?: string; pcpus?: string; redisUrl?: string }) => {
    const tty = process.stderr.isTTY === true;
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
  });

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
      process.stderr.write(`xgsim: ${isInputError(e) ? e.toString() : e.message}\n`);
      if (verbose && e instanceof Error) process.stderr.write(`${e.stack ?? ''}\n`);
      process.exitCode = EXIT.BAD_INPUT;
      return;
    }
    if (e instanceof HostDied) {
      process.stderr.write(`xgsim: ${e.message}\n`);
      process.exitCode = EXIT.FAIL;
      return;
    }
    process.stderr.write(`xgsim: internal error: ${e instanceof Error ? e.message : String(e)}${verbose ? '' : ' (--verbose for the stack)'}\n`);
    if (verbose && e instanceof Error) process.stderr.write(`${e.stack ?? ''}\n`);
    process.exitCode = EXIT.FAIL;
  }
}

await main();
