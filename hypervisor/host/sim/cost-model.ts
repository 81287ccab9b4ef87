/**
 * The simulator's cost model: how much simulated time a scheduling
 * decision and each operation the Xen core reports (Sched.charge) take.
 *
 * Built in is the flat model: 2 µs per decision and nothing per operation
 * (what every seed, replay and test uses unless told otherwise — the clock
 * decides timeouts, so another model makes another run of the same seed).
 * `xgsim bench --cost-model <file>` writes a model measured on this
 * machine, and `xgsim sim --cost-model <file>` runs with it: then a
 * simulated Revoke or FAULT latency is an estimate of what the real
 * threads would take, not a count of decisions. The replay command names
 * the file.
 */
import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { COST, type CostKind } from '../../xen/platform.js';

/** Simulated time one decision costs in the flat model (a step of guest code, a slice of a wait). */
export const STEP_US = 2;

export interface CostModel {
  /** Where the figures come from: `flat`, or the bench run that measured them. */
  source: string;
  /** A scheduling decision: a step of guest code beyond the operations below, or a slice of a wait. */
  step_us: number;
  /** One guest memory access through the p2m and the software TLB. */
  access_us: number;
  /** The hypercall gate (entry, exit, the boundary). */
  hypercall_us: number;
  /** A TLB shootdown: the flush IPI and the acknowledgements. */
  shootdown_us: number;
  /** The transport's part of an IOREQ round trip (the device model's steps are charged as they run). */
  ioreq_us: number;
  /** A GPU command the device model executes. */
  gpu_command_us: number;
}

export const FLAT_COST_MODEL: Readonly<CostModel> = Object.freeze({ source: 'flat', step_us: STEP_US, access_us: 0, hypercall_us: 0, shootdown_us: 0, ioreq_us: 0, gpu_command_us: 0 });

const us = z.number().finite().min(0).max(1e6);
const Schema = z.strictObject({ source: z.string().max(200), step_us: us, access_us: us, hypercall_us: us, shootdown_us: us, ioreq_us: us, gpu_command_us: us });

/** The per-kind costs, indexed by COST. */
export function costTable(c: CostModel): Float64Array {
  const t = new Float64Array(Object.keys(COST).length);
  const set = (k: CostKind, v: number): void => void (t[k] = v);
  set(COST.ACCESS, c.access_us);
  set(COST.HYPERCALL, c.hypercall_us);
  set(COST.SHOOTDOWN, c.shootdown_us);
  set(COST.IOREQ, c.ioreq_us);
  set(COST.GPU_COMMAND, c.gpu_command_us);
  return t;
}

export class CostModelError extends Error {
  override readonly name = 'CostModelError';
}

/** A cost model file as `xgsim bench --cost-model` writes it. */
export function loadCostModel(file: string): CostModel {
  let text: string;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new CostModelError(`${file}: not a regular file`);
    if (st.size > 64 * 1024) throw new CostModelError(`${file}: ${st.size} bytes, more than a cost model has (64 KiB)`);
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof CostModelError) throw e;
    throw new CostModelError(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : 'cannot be read'}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CostModelError(`${file}: not JSON (write one with \`xgsim bench --cost-model ${file}\`)`);
  }
  return parseCostModel(raw, file);
}

/** A cost model from parsed JSON or YAML; `where` names it in the error. */
export function parseCostModel(raw: unknown, where: string): CostModel {
  // YAML integers arrive as bigints (the replay files' reader keeps them exact).
  const plain = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v])) : raw;
  const r = Schema.safeParse(plain);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new CostModelError(`${where}: ${i === undefined ? 'not a cost model' : `${i.path.join('.') || 'the model'}: ${i.message}`}`);
  }
  return r.data;
}

/** One line for a run's output. */
export function describeCostModel(c: CostModel): string {
  if (c.source === 'flat') return `flat (${c.step_us} µs per decision)`;
  const f = (x: number): string => (x >= 10 ? x.toFixed(0) : x >= 0.1 ? x.toFixed(2) : x.toPrecision(2));
  return `${c.source}: decision ${f(c.step_us)} µs, access ${f(c.access_us)} µs, hypercall ${f(c.hypercall_us)} µs, shootdown ${f(c.shootdown_us)} µs, ioreq ${f(c.ioreq_us)} µs, GPU command ${f(c.gpu_command_us)} µs`;
}
