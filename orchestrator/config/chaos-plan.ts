/**
 * Chaos plans (`xgsim chaos <plan.yaml>`): a topology (a path relative to
 * the plan, or inline), a duration, and nemeses — on a schedule (`at`),
 * at random (`every`: the mean gap of a seeded Poisson process), or both.
 *
 *   name: everything
 *   topology: ../gpu-desktop.yaml
 *   duration: 60s
 *   schedule:
 *     - { at: 2s, kind: kill-device-model, for: 300ms }
 *   random:
 *     - { kind: ioreq-drop, every: 8s, for: 1s }
 *
 * Errors name file:line:col and the key, like every other input.
 */
import { z } from 'zod';
import { NEMESIS_KINDS, type NemesisAction, type NemesisKind } from '../../hypervisor/host/chaos.js';
import { didYouMean, errorAt, planPath, readYamlFile, validate, type Path } from './load.js';
import { duration, ident, int, isRecord, list, obj, oneOf, str } from './fields.js';
import { baseName, loadTopology, normalizeTopology, topologySchema, type Topology } from './topology.js';
import { InputError } from './errors.js';

/** Longest window a nemesis may hold (a hung vCPU, a paused Redis, a held device model). */
export const MAX_WINDOW_MS = 10_000;
/** At most this many injections per run, random ones included. */
export const MAX_INJECTIONS = 2000;

const common = {
  kind: oneOf(NEMESIS_KINDS, 'nemesis kind'),
  target: ident().optional(),
  vcpu: int({ min: 0, max: 7 }).optional(),
  for: duration().optional(),
  delay: duration().optional(),
  rate: int({ min: 1, max: 100_000 }).optional(),
};

const scheduledSchema = obj({ at: duration(), ...common });
const randomSchema = obj({ every: duration(), ...common });

export const chaosPlanSchema = obj({
  name: str().optional(),
  seed: int({ min: 0, max: 2 ** 31 - 1 }).optional(),
  duration: duration().optional(),
  transport: oneOf(['auto', 'redis', 'ring'] as const, 'transport').optional(),
  topology: z.unknown().optional(),
  // As many scheduled injections as a run may make at all, and a random
  // nemesis per kind and target at most.
  schedule: list(scheduledSchema, { max: MAX_INJECTIONS }).optional(),
  random: list(randomSchema, { max: 64 }).optional(),
});

type Entry = z.output<typeof scheduledSchema> | z.output<typeof randomSchema>;

export interface ChaosPlan {
  name: string;
  file: string;
  seed?: number;
  duration_ms?: number;
  transport?: 'auto' | 'redis' | 'ring';
  topology: Topology;
  /** Where the topology came from (a file, or `inline`). */
  topology_file: string;
  schedule: NemesisAction[];
  random: Array<Omit<NemesisAction, 'at_ms'> & { every_ms: number }>;
}

const WINDOWED = new Set<NemesisKind>(['kill-device-model', 'memory-pressure', 'redis-pause', 'ioreq-delay', 'ioreq-duplicate', 'ioreq-drop', 'ioreq-reorder', 'hang-vcpu']);
const TARGETED = new Set<NemesisKind>(['kill-device-model', 'crash-domain', 'destroy-mid-map', 'memory-pressure', 'hang-vcpu', 'adversary-on']);

export function loadChaosPlan(file: string): ChaosPlan {
  const src = readYamlFile(file);
  const raw = validate(src, chaosPlanSchema);
  const at = (...p: Path): Path => p;
  let topology: Topology;
  let topology_file: string;
  if (typeof raw.topology === 'string') {
    topology_file = planPath(src, at('topology'), raw.topology);
    try {
      topology = loadTopology(topology_file);
    } catch (e) {
      if (e instanceof InputError && e.file === topology_file && e.line === undefined) throw errorAt(src, at('topology'), `cannot read topology \`${raw.topology}\` (${e.message.replace(/^cannot read: /, '')}: ${topology_file})`);
      throw e;
    }
  } else if (isRecord(raw.topology)) {
    topology_file = 'inline';
    const t = validate(src, topologySchema, { value: raw.topology, path: ['topology'] });
    topology = normalizeTopology(src, t, { path: ['topology'], forScenario: false, defaultName: baseName(file) });
  } else {
    throw errorAt(src, at('topology'), raw.topology === undefined ? 'missing `topology`: a topology file (relative to this plan) or an inline topology' : 'expected a topology file name or an inline topology mapping');
  }
  const duration_ms = raw.duration ?? topology.duration_ms;
  if (raw.duration === 0) throw errorAt(src, at('duration'), 'must be positive, got 0');
  const names = topology.domains.map((d) => d.name);

  const check = (e: Entry, path: Path): void => {
    if (e.target !== undefined) {
      const d = topology.domains.find((x) => x.name === e.target);
      if (d === undefined) throw errorAt(src, [...path, 'target'], `unknown domain \`${e.target}\`; domains are: ${names.join(', ')}${didYouMean(e.target, names)}`);
      if (!TARGETED.has(e.kind)) throw errorAt(src, [...path, 'target'], `\`${e.kind}\` takes no target (it acts on the transport)`);
      if ((e.kind === 'crash-domain' || e.kind === 'destroy-mid-map') && d.role !== 'frontend') throw errorAt(src, [...path, 'target'], `\`${e.kind}\` targets a frontend; \`${d.name}\` is a backend`);
      if ((e.kind === 'kill-device-model' || e.kind === 'memory-pressure') && (d.role !== 'backend' || d.devices.length === 0)) {
        throw errorAt(src, [...path, 'target'], `\`${e.kind}\` targets a backend with a device; \`${d.name}\` is not one`);
      }
      if (e.kind === 'adversary-on' && !(d.workload.kind === 'adversary' && d.workload.dormant)) {
        throw errorAt(src, [...path, 'target'], `\`adversary-on\` needs a dormant adversary (workload: { kind: adversary, start: dormant }); \`${d.name}\` is not one`);
      }
      if (e.vcpu !== undefined && e.vcpu >= d.vcpus) throw errorAt(src, [...path, 'vcpu'], `\`${d.name}\` has ${d.vcpus} vCPU${d.vcpus === 1 ? '' : 's'}, no vCPU ${e.vcpu}`);
    }
    if (e.vcpu !== undefined && e.kind !== 'hang-vcpu') throw errorAt(src, [...path, 'vcpu'], '`vcpu` is for `hang-vcpu` only');
    if (e.delay !== undefined && e.kind !== 'ioreq-delay') throw errorAt(src, [...path, 'delay'], '`delay` is for `ioreq-delay` only');
    if (e.rate !== undefined && e.kind !== 'memory-pressure') throw errorAt(src, [...path, 'rate'], '`rate` is for `memory-pressure` only');
    if (e.for !== undefined) {
      if (!WINDOWED.has(e.kind)) throw errorAt(src, [...path, 'for'], `\`${e.kind}\` is an instant, it takes no \`for\``);
      if (e.for > MAX_WINDOW_MS) throw errorAt(src, [...path, 'for'], `at most ${MAX_WINDOW_MS / 1000}s, got ${e.for} ms`);
      if (e.for === 0) throw errorAt(src, [...path, 'for'], 'must be positive, got 0');
    }
    if (e.delay !== undefined && (e.delay === 0 || e.delay > 1000)) throw errorAt(src, [...path, 'delay'], `between 1ms and 1s, got ${e.delay} ms`);
  };
  const action = (e: Entry): Omit<NemesisAction, 'at_ms'> => ({
    kind: e.kind,
    ...(e.target !== undefined ? { target: e.target } : {}),
    ...(e.vcpu !== undefined ? { vcpu: e.vcpu } : {}),
    ...(e.for !== undefined ? { for_ms: e.for } : {}),
    ...(e.delay !== undefined ? { delay_ms: e.delay } : {}),
    ...(e.rate !== undefined ? { rate: e.rate } : {}),
  });
  const schedule = (raw.schedule ?? []).map((e, i) => {
    const path: Path = ['schedule', i];
    check(e, path);
    if (duration_ms !== undefined && e.at >= duration_ms) throw errorAt(src, [...path, 'at'], `at ${e.at} ms is not before the end of the run (${duration_ms} ms)`);
    return { ...action(e), at_ms: e.at, source: 'schedule' as const };
  });
  const random = (raw.random ?? []).map((e, i) => {
    const path: Path = ['random', i];
    check(e, path);
    if (e.every < 100) throw errorAt(src, [...path, 'every'], `at least 100ms, got ${e.every} ms`);
    return { ...action(e), every_ms: e.every, source: 'random' as const };
  });
  if (schedule.length === 0 && random.length === 0) throw errorAt(src, [], 'a chaos plan needs `schedule` or `random` nemeses (or both)');
  return {
    name: raw.name ?? baseName(file),
    file,
    ...(raw.seed !== undefined ? { seed: raw.seed } : {}),
    ...(duration_ms !== undefined ? { duration_ms } : {}),
    ...(raw.transport !== undefined ? { transport: raw.transport } : {}),
    topology,
    topology_file,
    schedule,
    random,
  };
}

/**
 * The concrete injections of one run: the schedule as written, plus each
 * random nemesis as a seeded Poisson process over the run. Same plan, seed
 * and duration → same list (so a run can be replayed, and is printed).
 */
export function expandPlan(plan: ChaosPlan, seed: number, duration_ms: number): NemesisAction[] {
  let s = (seed ^ 0x2545f491) | 1;
  const random = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) + 0.5) / 2 ** 32;
  };
  const out: NemesisAction[] = plan.schedule.filter((a) => a.at_ms < duration_ms);
  for (const r of plan.random) {
    const { every_ms, ...a } = r;
    for (let t = -Math.log(random()) * every_ms; t < duration_ms && out.length < MAX_INJECTIONS; t += -Math.log(random()) * every_ms) {
      out.push({ ...a, at_ms: Math.round(t) });
    }
  }
  return out.sort((a, b) => a.at_ms - b.at_ms);
}
