/**
 * `xgsim bench --curves`: one parameter swept, the rest held, each point a
 * run of the same machine (orchestrator/bench/host.ts) — how Revoke's
 * latency grows with the number of frontend vCPUs hammering the pages it
 * takes away, and with the pages one Revoke covers; how long a topology
 * takes to boot as domains are added; how ring IOREQ throughput scales with
 * device-model/frontend pairs.
 */
import { revokeLoad, topologyBoot } from './host.js';
import type { FrontendMode } from '../up/stress-spec.js';
import { ioreqThroughput } from './ioreq.js';
import { CURVE_NAMES } from '../cli-words.js';
import { BUG } from '../../hypervisor/layout/region.js';

/** What a curve measures at each x: Revoke latency, boot time, or IOREQ throughput. */
export type CurveKind = 'revoke' | 'boot' | 'ioreq';

export interface CurvePoint {
  x: number;
  /** Samples behind the point: Revokes, vCPU threads booted, or ioreqs completed. */
  n: number;
  // kind 'revoke'
  p50_us?: number;
  p99_us?: number;
  max_us?: number;
  /** p50 divided by the pages per Revoke. */
  per_page_p50_us?: number;
  revokes_per_s?: number;
  // kind 'boot'
  boot_ms?: number;
  boot_cpu_ms?: number;
  rss_mib?: number;
  // kind 'ioreq'
  ioreqs_per_s?: number;
  problems: string[];
}

export interface Curve {
  name: string;
  kind: CurveKind;
  /** What y is (the figure the plot reads). */
  y: string;
  /** pCPUs the vCPUs ran on (0: the OS scheduled every vCPU thread). */
  pcpus: number;
  /** What x is. */
  x: string;
  /** What was held while x moved. */
  held: string;
  points: CurvePoint[];
}

interface CurveDef {
  kind: CurveKind;
  y: string;
  x: string;
  held: string;
  xs: number[];
  /** The points of a --quick sweep (a smoke test of the sweep, not a curve to read). */
  quickXs: number[];
  point: (x: number, o: PointOpts) => Promise<CurvePoint>;
}

interface PointOpts {
  quick: boolean;
  seed: number;
  pcpus: number;
}

function revokePoint(load: { fe_vcpus: number; mode: FrontendMode; pages: number }): (x: number, o: PointOpts) => Promise<CurvePoint> {
  return async (x, o) => {
    const r = await revokeLoad({ ...load, duration_ms: o.quick ? 300 : 3000, seed: o.seed + x, pcpus: o.pcpus });
    return { x, n: r.lat.n, p50_us: r.lat.p50, p99_us: r.lat.p99, max_us: r.lat.max, per_page_p50_us: Math.round((r.lat.p50 / load.pages) * 1000) / 1000, revokes_per_s: Math.round(r.revokes_per_s), problems: r.problems };
  };
}

/** RAM per domain of the boot curve: 64 domains make the 1 GiB of the boot figure. */
const BOOT_MIB_PER_DOMAIN = 16;

export const CURVES: Record<string, CurveDef> = {
  hostile: {
    kind: 'revoke',
    y: 'Revoke latency',
    x: 'frontend vCPUs hammering the revoked pages (0: one halted vCPU)',
    held: '1 page per Revoke; one backend vCPU revoking',
    xs: [0, 1, 2, 4, 8],
    quickXs: [0, 8],
    point: (x, o) => revokePoint({ fe_vcpus: x, mode: 'hammer', pages: 1 })(x, o),
  },
  pages: {
    kind: 'revoke',
    y: 'Revoke latency',
    x: 'pages per Revoke',
    held: 'frontend of 2 vCPUs hammering the window; one backend vCPU revoking',
    xs: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    quickXs: [1, 512],
    point: (x, o) => revokePoint({ fe_vcpus: 2, mode: 'hammer', pages: x })(x, o),
  },
  domains: {
    kind: 'boot',
    y: 'boot time (new Host to every vCPU thread past its first step)',
    x: 'domains',
    held: `2 vCPUs and ${BOOT_MIB_PER_DOMAIN} MiB per domain, all halted, checks on`,
    xs: [4, 16, 32, 64],
    quickXs: [2, 4],
    point: async (x, o) => {
      const r = await topologyBoot({ domains: x, vcpus: 2, ram_mib: x * BOOT_MIB_PER_DOMAIN, seed: o.seed + x });
      return { x, n: 2 * x, boot_ms: Math.round(r.boot_ms), boot_cpu_ms: Math.round(r.boot_cpu_ms), rss_mib: Math.round((r.rss_bytes - r.rss_before_bytes) / 2 ** 20), problems: r.problems };
    },
  },
  'ioreq-servers': {
    kind: 'ioreq',
    y: 'ring IOREQ throughput',
    x: 'device-model / frontend pairs (an echo device model and a 1-vCPU frontend reading back to back, each)',
    held: 'ring transport; every client warmed up, then all run at once',
    xs: [1, 2, 4],
    quickXs: [1, 2],
    point: async (x, o) => {
      const r = await ioreqThroughput({ transport: 'ring', dms: x, fe_vcpus: 1, duration_ms: o.quick ? 200 : 2000, warmup: o.quick ? 50 : 1000 });
      return { x, n: r.ioreqs, ioreqs_per_s: Math.round(r.ioreqs_per_s), problems: [] };
    },
  },
};

// The help lists cli-words.ts's CURVE_NAMES: the same names, checked at load.
if (Object.keys(CURVES).join() !== CURVE_NAMES.join()) BUG(`bench curves: CURVES (${Object.keys(CURVES).join()}) and CURVE_NAMES (${CURVE_NAMES.join()}) differ`);

export function curveNames(list: string): string[] {
  const names = list === 'all' || list === '' ? Object.keys(CURVES) : list.split(',').map((s) => s.trim());
  for (const n of names) if (CURVES[n] === undefined) throw new Error(`--curves: unknown curve \`${n}\` (known: ${Object.keys(CURVES).join(', ')}, all)`);
  return names;
}

export async function runCurve(name: string, o: { quick: boolean; seed: number; pcpus: number; progress: (s: string) => void }): Promise<Curve> {
  const def = CURVES[name];
  if (def === undefined) throw new Error(`unknown curve ${name}`);
  const points: CurvePoint[] = [];
  for (const x of o.quick ? def.quickXs : def.xs) {
    o.progress(`curve ${name}: x = ${x}`);
    points.push(await def.point(x, o));
  }
  // Only the Revoke curves put their vCPUs on pCPUs.
  return { name, kind: def.kind, y: def.y, pcpus: def.kind === 'revoke' ? o.pcpus : 0, x: def.x, held: def.held, points };
}

const col = (v: number | undefined, w: number): string => String(v ?? '—').padStart(w);

export function formatCurve(c: Curve): string {
  const kind = c.kind ?? 'revoke'; // reports written before curves had kinds
  const bad = (p: CurvePoint): string => (p.problems.length > 0 ? `  PROBLEMS: ${p.problems.join('; ')}` : '');
  if (kind === 'boot') {
    const lines = [`curve ${c.name}: ${c.y} vs ${c.x} (${c.held})`, `${'x'.padStart(6)} ${'threads'.padStart(8)} ${'boot ms'.padStart(9)} ${'CPU ms'.padStart(9)} ${'RSS MiB'.padStart(9)}`];
    for (const p of c.points) lines.push(`${col(p.x, 6)} ${col(p.n, 8)} ${col(p.boot_ms, 9)} ${col(p.boot_cpu_ms, 9)} ${col(p.rss_mib, 9)}${bad(p)}`);
    return lines.join('\n');
  }
  if (kind === 'ioreq') {
    const lines = [`curve ${c.name}: ${c.y} vs ${c.x} (${c.held})`, `${'x'.padStart(6)} ${'ioreqs'.padStart(9)} ${'ioreqs/s'.padStart(10)}`];
    for (const p of c.points) lines.push(`${col(p.x, 6)} ${col(p.n, 9)} ${col(p.ioreqs_per_s, 10)}${bad(p)}`);
    return lines.join('\n');
  }
  const lines = [`curve ${c.name}: Revoke latency vs ${c.x} (${c.held}; ${c.pcpus > 0 ? `${c.pcpus} pCPUs` : 'vCPU threads scheduled by the OS'})`, `${'x'.padStart(6)} ${'n'.padStart(7)} ${'p50 µs'.padStart(9)} ${'p99 µs'.padStart(9)} ${'max µs'.padStart(9)} ${'p50/page'.padStart(9)} ${'revokes/s'.padStart(10)}`];
  for (const p of c.points) {
    lines.push(`${col(p.x, 6)} ${col(p.n, 7)} ${col(p.p50_us, 9)} ${col(p.p99_us, 9)} ${col(p.max_us, 9)} ${col(p.per_page_p50_us, 9)} ${col(p.revokes_per_s, 10)}${bad(p)}`);
  }
  return lines.join('\n');
}
