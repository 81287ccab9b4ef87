/**
 * `xgsim bench --cost-model <file>`: the simulator's cost model
 * (hypervisor/host/sim/cost-model.ts) from the figures this run measured.
 *
 * - access: the guest access rate through the p2m and the software TLB;
 * - hypercall: the null hypercall;
 * - IOREQ: the ring round trip with the server hot (p50), the transport's
 *   part (the device model's own steps are charged as they run);
 * - shootdown: the busy-spin ping-pong p50 — a flush IPI acknowledged by a
 *   running vCPU at its next boundary (an idle one acknowledges by being
 *   idle: nothing to wait for);
 * - a decision and a GPU command keep the flat model's figures (the bench
 *   has no row for them).
 */
import { FLAT_COST_MODEL, type CostModel } from '../../hypervisor/host/sim/cost-model.js';
import { UsageError } from '../errors.js';
import type { BenchReport } from './bench.js';

/** The sections whose figures a cost model needs. */
export const COST_MODEL_SECTIONS = ['access', 'hypercall', 'ioreq'] as const;

export function costModelFromBench(r: BenchReport): CostModel {
  const row = (figure: string): number => {
    const x = r.rows.find((y) => y.figure === figure);
    if (x === undefined || !(x.value > 0)) throw new UsageError(`--cost-model: this run has no figure \`${figure}\` (run the ${COST_MODEL_SECTIONS.join(', ')} sections)`);
    return x.value;
  };
  const spin = r.floors['spin_pingpong_p50_us'];
  if (spin === undefined || !(spin > 0)) throw new UsageError('--cost-model: this run measured no spin ping-pong floor');
  return {
    source: `xgsim bench ${r.date}${r.quick ? ' --quick' : ''}, ${r.machine.cores} cores, load ${r.load[0]?.toFixed(1) ?? '?'}`,
    step_us: FLAT_COST_MODEL.step_us,
    access_us: 1 / row('guest access through p2m + software TLB'), // M/s → µs each
    hypercall_us: row('null hypercall on a vCPU thread') / 1000,
    shootdown_us: spin,
    ioreq_us: row('ring IOREQ round trip, server hot (p50)'),
    gpu_command_us: FLAT_COST_MODEL.gpu_command_us,
  };
}
