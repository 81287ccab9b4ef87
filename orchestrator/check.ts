/**
 * `xgsim check <file…>`: validate topologies, scenarios, chaos plans,
 * campaign plans and sim replay files without running anything — `xl
 * create -n`'s habit. Each file's kind is told from its top-level keys (or
 * `--as`); each file gets one line, `ok` with what it holds, or its error
 * (file:line:col for YAML); exit 2 when any file is bad, 0 otherwise.
 */
import { isInputError } from './config/errors.js';
import { readYamlFile } from './config/load.js';
import { loadTopology } from './config/topology.js';
import { loadScenario } from './config/scenario.js';
import { loadChaosPlan } from './config/chaos-plan.js';
import { loadCampaignPlan } from './config/campaign.js';
import { loadReplayFile } from './sim/sim.js';
import { EXIT, UsageError, printable } from './errors.js';

export const CHECK_KINDS = ['topology', 'scenario', 'chaos', 'campaign', 'sim-replay'] as const;
export type CheckKind = (typeof CHECK_KINDS)[number];

/** What a file is, from its top-level keys: the same keys the loaders require. */
export function kindOf(file: string): CheckKind {
  const d = readYamlFile(file).data as Record<string, unknown> | null;
  if (d === null || typeof d !== 'object' || Array.isArray(d)) throw new UsageError(`${file}: expected a mapping at the top (a topology, scenario, chaos plan, campaign plan or sim replay)`);
  if (d['kind'] === 'sim-replay') return 'sim-replay';
  if ('steps' in d) return 'scenario';
  if ('jobs' in d) return 'campaign';
  if ('topology' in d) return 'chaos';
  if ('domains' in d) return 'topology';
  throw new UsageError(`${file}: cannot tell what this is: no \`domains\` (topology), \`steps\` (scenario), \`topology\` (chaos plan), \`jobs\` (campaign plan) or \`kind: sim-replay\`; say it with --as`);
}

/** Load `file` as `kind`; what it holds, in a few words. Throws the loader's error. */
function checkOne(file: string, kind: CheckKind): string {
  switch (kind) {
    case 'topology': {
      const t = loadTopology(file);
      return `topology ${t.name}: ${t.domains.length} domains, ${t.domains.reduce((n, d) => n + d.vcpus, 0)} vCPUs`;
    }
    case 'scenario': {
      const s = loadScenario(file);
      return `scenario ${s.name}: ${s.steps.length} steps${s.skip !== undefined ? ' (skip)' : ''}`;
    }
    case 'chaos': {
      const p = loadChaosPlan(file);
      return `chaos plan ${p.name}: ${p.schedule.length} scheduled, ${p.random.length} random nemeses on ${p.topology.name} (${p.topology_file})`;
    }
    case 'campaign': {
      const c = loadCampaignPlan(file);
      return `campaign plan ${c.name}: ${c.templates.length} job templates`;
    }
    case 'sim-replay': {
      const r = loadReplayFile(file);
      return `sim replay: seed ${r.seed}, ${r.steps} steps, expect ${r.expect}`;
    }
  }
}

export function checkCommand(files: string[], o: { as?: string; quiet?: boolean }): { exitCode: number } {
  if (o.as !== undefined && !(CHECK_KINDS as readonly string[]).includes(o.as)) throw new UsageError(`--as: expected one of ${CHECK_KINDS.join(', ')}, got \`${o.as}\``);
  let bad = 0;
  for (const file of files) {
    try {
      const what = checkOne(file, (o.as as CheckKind | undefined) ?? kindOf(file));
      if (o.quiet !== true) process.stdout.write(`ok: ${file}: ${printable(what)}\n`);
    } catch (e) {
      if (!(isInputError(e) || e instanceof UsageError)) throw e;
      bad++;
      process.stderr.write(`xgsim: ${printable(isInputError(e) ? e.toString() : e.message)}\n`);
    }
  }
  if (o.quiet !== true && files.length > 1) process.stdout.write(`${files.length} files: ${files.length - bad} ok, ${bad} bad\n`);
  return { exitCode: bad > 0 ? EXIT.BAD_INPUT : EXIT.PASS };
}
