/**
 * A vCPU thread of a scenario's `concurrently` step: runs its list of
 * guest ops, each on a vCPU of the domain that issues it (a slot no other
 * thread uses), after a start gate so the threads really race.
 */
// Registers the memory-sharing designs with the Xen core before any Machine is built (xen/design.ts).
import '../designs/index.js';
import { execGuestOp, type GuestOp, type OpOutcome } from '../../domains/scenario-ops.js';
import { DS } from '../layout/domains.js';
import { attachMachine, type Machine, type MachineSabs } from '../xen/machine.js';
import { VcpuContext } from '../xen/guest-cpu.js';
import { ESRCH } from '../public/errno.js';

export interface ThreadOp {
  domid: number;
  slot: number;
  op: GuestOp;
}

export interface ScenarioThreadTask {
  kind: 'scenario-thread';
  sabs: MachineSabs;
  gate: SharedArrayBuffer;
  ops: ThreadOp[];
  names: Array<[string, number]>;
  seed: number;
}

export interface ScenarioThreadResult {
  outcomes: OpOutcome[];
  names: Array<[string, number]>;
}

/** Run one op on a vCPU context of its domain: OFFLINE → GUEST, the op, → OFFLINE. */
export function runOnVcpu(cpu: VcpuContext, op: GuestOp, names: Map<string, number>): OpOutcome {
  if (cpu.m.dom.state(cpu.id.domid) !== DS.RUNNING) return { kind: 'rc', rc: -ESRCH };
  cpu.start();
  try {
    return execGuestOp(cpu, op, names);
  } finally {
    cpu.stop();
  }
}

// The contexts of the machine this thread last served (a scenario's
// `concurrently` steps reuse them). Only that machine's: a map of every slot's
// last context kept earlier scenarios' machines alive in this thread.
let current: { m: Machine; contexts: Map<string, VcpuContext> } | undefined;

export default function runScenarioThread(raw: unknown): ScenarioThreadResult {
  const t = raw as ScenarioThreadTask;
  if (t === null || typeof t !== 'object' || t.kind !== 'scenario-thread') throw new Error('scenario-worker: malformed task');
  const m = attachMachine(t.sabs);
  const names = new Map(t.names);
  const gate = new Int32Array(t.gate);
  Atomics.add(gate, 1, 1);
  while (Atomics.load(gate, 0) === 0) {
    /* spin: the threads start together */
  }
  const outcomes: OpOutcome[] = [];
  if (current?.m !== m) current = { m, contexts: new Map() };
  const { contexts } = current;
  for (const x of t.ops) {
    const key = `${x.slot}:${x.domid}`;
    let cpu = contexts.get(key);
    if (cpu === undefined) {
      cpu = new VcpuContext(m, { domid: x.domid, vcpu: 0, slot: x.slot, memory_pages: 0, seed: t.seed + x.slot });
      contexts.set(key, cpu);
    }
    outcomes.push(runOnVcpu(cpu, x.op, names));
  }
  return { outcomes, names: [...names] };
}
