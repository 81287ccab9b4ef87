/**
 * `xgsim bench --curves`: one parameter swept, the rest held, each point a
 * run of the same machine (orchestrator/bench-host.ts) — how Revoke's
 * latency grows with the number of frontend vCPUs hammering the pages it
 * takes away, and with the pages one Revoke covers.
 */
import { revokeLoad, type FrontendMode } from './bench-host.js';

export interface CurvePoint {
  x: number;
  n: number;
  p50_us: number;
  p99_us: number;
  max_us: number;
  /** p50 divided by the pages per Revoke. */
  per_page_p50_us: number;
  revokes_per_s: number;
  problems: string[];
}

export interface Curve {
  name: string;
  /** pCPUs the vCPUs ran on (0: the OS scheduled every vCPU thread). */
  pcpus: number;
  /** What x is. */
  x: string;
  /** What was held while x moved. */
  held: string;
  points: CurvePoint[];
}

interface CurveDef {
  x: string;
  held: string;
  xs: number[];
  /** The points of a --quick sweep (a smoke test of the sweep, not a curve to read). */
  quickXs: number[];
  load: (x: number) => { fe_vcpus: number; mode: FrontendMode; pages: number };
}

export const CURVES: Record<string, CurveDef> = {
  hostile: {
    x: 'frontend vCPUs hammering the revoked pages (0: one halted vCPU)',
    held: '1 page per Revoke; one backend vCPU revoking',
    xs: [0, 1, 2, 4, 8],
    quickXs: [0, 8],
    load: (x) => ({ fe_vcpus: x, mode: 'hammer', pages: 1 }),
  },
  pages: {
    x: 'pages per Revoke',
    held: 'frontend of 2 vCPUs hammering the window; one backend vCPU revoking',
    xs: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    quickXs: [1, 512],
    load: (x) => ({ fe_vcpus: 2, mode: 'hammer', pages: x }),
  },
};

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
    const load = def.load(x);
    const r = await revokeLoad({ ...load, duration_ms: o.quick ? 300 : 3000, seed: o.seed + x, pcpus: o.pcpus });
    points.push({ x, n: r.lat.n, p50_us: r.lat.p50, p99_us: r.lat.p99, max_us: r.lat.max, per_page_p50_us: Math.round((r.lat.p50 / load.pages) * 1000) / 1000, revokes_per_s: Math.round(r.revokes_per_s), problems: r.problems });
  }
  return { name, pcpus: o.pcpus, x: def.x, held: def.held, points };
}

export function formatCurve(c: Curve): string {
  const lines = [`curve ${c.name}: Revoke latency vs ${c.x} (${c.held}; ${c.pcpus > 0 ? `${c.pcpus} pCPUs` : 'vCPU threads scheduled by the OS'})`, `${'x'.padStart(6)} ${'n'.padStart(7)} ${'p50 µs'.padStart(9)} ${'p99 µs'.padStart(9)} ${'max µs'.padStart(9)} ${'p50/page'.padStart(9)} ${'revokes/s'.padStart(10)}`];
  for (const p of c.points) {
    lines.push(`${String(p.x).padStart(6)} ${String(p.n).padStart(7)} ${String(p.p50_us).padStart(9)} ${String(p.p99_us).padStart(9)} ${String(p.max_us).padStart(9)} ${String(p.per_page_p50_us).padStart(9)} ${String(p.revokes_per_s).padStart(10)}${p.problems.length > 0 ? `  PROBLEMS: ${p.problems.join('; ')}` : ''}`);
  }
  return lines.join('\n');
}
