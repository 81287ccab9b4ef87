/**
 * `xgsim chaos <plan.yaml>`: a topology plus a schedule and/or random rates
 * of nemeses, injected into a running host; every injection logged with its
 * time and target, invariants checked throughout, recovery measured (time
 * until every vCPU of every running domain progressed again).
 *
 * The plan is expanded into concrete injections here, from the seed, before
 * the host starts: the list is printed (and in --json), so a run is
 * replayed with the same seed, plan and duration.
 */
import { NEMESIS_KINDS } from '../../hypervisor/host/chaos.js';
import { expandPlan, loadChaosPlan } from '../config/chaos-plan.js';
import { hostSpecOf } from './host-spec.js';
import { formatSummary, summarize, type Summary } from './summary.js';
import { buggifyPrefix } from '../runs/record.js';
import { chooseTransport, finishRun, runHost, type RunOutcome } from './up.js';
import { parseDurationFlag, parseRunFlags, type TopologyRunFlags } from './run-flags.js';

export type ChaosOptions = TopologyRunFlags;

export interface ChaosSummary extends Summary {
  chaos: {
    plan: string;
    topology: string;
    /** Injections per nemesis kind that acted (not skipped). */
    kinds: Record<string, number>;
    /** Kinds of the plan's nemeses that never acted in this run. */
    kinds_missing: string[];
    recovery_ms: { p50: number; max: number; unrecovered: number };
  };
}

export async function chaos(file: string, o: ChaosOptions): Promise<RunOutcome & { summary: ChaosSummary }> {
  const plan = loadChaosPlan(file);
  const { print, duration_ms, check_interval_ms, seed, outputs, bugs } = parseRunFlags(o, { duration_ms: plan.duration_ms ?? 30_000, seed: plan.seed ?? plan.topology.seed });
  const timeout_ms = parseDurationFlag('--transport-timeout', o.transportTimeout);
  const tr = await chooseTransport(o.transport ?? plan.transport ?? plan.topology.transport, o.redisUrl, seed, timeout_ms);
  const actions = expandPlan(plan, seed, duration_ms);
  const startLine = `xgsim chaos ${file}: seed ${seed}, topology ${plan.topology.name}, transport ${tr.describe}, ${duration_ms} ms, ${actions.length} injections planned${bugs.length > 0 ? `, BUGGIFY ${bugs.join(',')}` : ''}`;
  const spec = { ...hostSpecOf(plan.topology, { seed, checking: true, buggify: o.buggify, check_interval_ms }), transport: tr.choice, chaos: actions, ...outputs.spec };
  const report = await runHost(spec, duration_ms, { quiet: !print, startLine });
  const base = summarize(report, { seed, transport: tr.kind, buggify: bugs });
  const acted = base.faults_injected.filter((f) => f.skipped === undefined);
  const kinds: Record<string, number> = {};
  for (const f of acted) kinds[f.kind] = (kinds[f.kind] ?? 0) + 1;
  const planned = new Set([...plan.schedule, ...plan.random].map((a) => a.kind));
  const rec = acted.map((f) => f.recovery_ms).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
  const summary: ChaosSummary = {
    ...base,
    chaos: {
      plan: file,
      topology: plan.topology_file,
      kinds,
      kinds_missing: NEMESIS_KINDS.filter((k) => planned.has(k) && kinds[k] === undefined),
      recovery_ms: { p50: rec[Math.floor(rec.length / 2)] ?? 0, max: rec[rec.length - 1] ?? 0, unrecovered: acted.length - rec.length },
    },
  };
  if (print) {
    if (o.json === true) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else {
      process.stdout.write(`${formatSummary(summary)}\n`);
      const c = summary.chaos;
      process.stdout.write(`chaos: ${acted.length} injections acted (${Object.entries(c.kinds).map(([k, n]) => `${k} ${n}`).join(', ')}); recovery p50 ${c.recovery_ms.p50} ms, max ${c.recovery_ms.max} ms, ${c.recovery_ms.unrecovered} not recovered by the end${c.kinds_missing.length > 0 ? `; never acted: ${c.kinds_missing.join(', ')}` : ''}\n`);
    }
  }
  const replay = `${buggifyPrefix(bugs)}npx xgsim chaos ${file} --seed ${seed} --duration ${duration_ms}ms --transport ${tr.kind}`;
  const flags = { duration: `${duration_ms}ms`, transport: tr.kind, ...(timeout_ms !== undefined ? { 'transport-timeout': `${timeout_ms}ms` } : {}) };
  return { ...finishRun({ kind: 'chaos', file, flags, seed, buggify: bugs, transport: tr.kind, summary, replay }, { print, save: o.save, outputs, report }), summary };
}
