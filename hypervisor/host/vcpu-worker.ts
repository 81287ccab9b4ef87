/**
 * A vCPU thread: a long-lived piscina task that runs one vCPU's guest
 * workload until the host stops it or its domain dies. Errors of the
 * hypervisor (HypervisorBug, illegal state transitions) end the task with
 * a rejection the host reports; guest misbehaviour never throws.
 */
// Registers the memory-sharing designs with the Xen core before any Machine is built (xen/design.ts).
import '../designs/index.js';
import { threadId } from 'node:worker_threads';
import { makeWorkload, type GuestEnv, type WorkloadReport, type WorkloadSpec } from '../../domains/index.js';
import { DS } from '../layout/domains.js';
import { STAT, VC } from '../layout/vcpus.js';
import { attachMachine, type Machine, type MachineSabs } from '../xen/machine.js';
import { CTL } from '../layout/control.js';
import { VcpuContext } from '../xen/guest-cpu.js';
import { VS } from '../xen/vcpu.js';
import { setServerEndFactory } from './transport-ends.js';
import { setVcpuTracer } from '../xen/trace.js';
import type { WireKeys } from '../../transport/auth.js';
import { isTransportFault } from '../../transport/faults.js';
import { setPreempter } from '../xen/hooks.js';
import { deathArmed, deathAt } from './death.js';

/**
 * Where the ioreqs go. Redis: `timeout_ms` is `--transport-timeout`; `keys`
 * are the keys of the IOREQ servers the task's device model serves
 * (transport/auth.ts), given to a vCPU task by the host, never set by the
 * orchestrator. `acl`: the run makes a Redis ACL user per role
 * (transport/redis-acl.ts) — the host then hands each vCPU task the URL of
 * its device model's user instead of `url` (and no credentials at all to
 * a vCPU that runs none).
 */
export type TransportChoice = { kind: 'ring' } | { kind: 'redis'; url: string; namespace: string; timeout_ms?: number; keys?: WireKeys; acl?: boolean };

/** A drained vCPU with nothing to serve sleeps this long at a time: CTL.STOP comes soon, and finds it within a ms. */
const DRAIN_IDLE_MS = 1;

export interface VcpuTask {
  kind: 'run-vcpu';
  sabs: MachineSabs;
  domid: number;
  vcpu: number;
  slot: number;
  memory_pages: number;
  seed: number;
  workload: WorkloadSpec;
  env: GuestEnv;
  transport: TransportChoice;
}

export interface VcpuResult {
  kind: 'vcpu-done';
  domid: number;
  vcpu: number;
  threadId: number;
  steps: number;
  accesses: number;
  workload_ops: number;
  check_fails: number;
  out: Record<string, number>;
  samples: Record<string, number[]>;
  /** The TransportFault (transport/faults.ts) that ended this vCPU's run loop, if one did: the host ends the run as unknown. */
  transport_fault?: string;
}

export function decodeTask(x: unknown): VcpuTask {
  const t = x as Partial<VcpuTask> | null;
  if (t === null || typeof t !== 'object' || t.kind !== 'run-vcpu' || typeof t.domid !== 'number' || typeof t.slot !== 'number' || t.sabs === undefined) {
    throw new Error('vcpu-worker: malformed task');
  }
  return t as VcpuTask;
}

/**
 * The start gate: every vCPU of the machine starts running guest code at
 * once, when the host releases them (as xl builds domains paused and
 * unpauses them). A vCPU that ran its workload while the other threads were
 * still starting would take the cores they need to start: a 64-domain
 * `xgsim up` took 3× longer to come up. The thread waits OFFLINE, so no
 * TLB shootdown waits for it. A restarted device model finds the gate open.
 */
function awaitRelease(m: Machine): void {
  const ctl = m.control.w;
  Atomics.add(ctl, CTL.VCPUS_READY, 1);
  while (Atomics.load(ctl, CTL.RELEASED) === 0) Atomics.wait(ctl, CTL.RELEASED, 0, 100);
}

export default async function runVcpu(raw: unknown): Promise<VcpuResult> {
  const task = decodeTask(raw);
  const m = attachMachine(task.sabs);
  // This thread produces the timeline of its vCPU slot (when the host traces).
  setVcpuTracer(m.trace, task.slot);
  const tr = task.transport;
  if (tr.kind === 'redis') {
    // Loaded only for the redis transport: ioredis and msgpackr cost every
    // vCPU thread megabytes and start-up time it would not use otherwise.
    const { redisEndFactory } = await import('./redis-end-factory.js');
    const servers = (task.env.gpu?.frontends ?? []).map((f) => ({ target: f.domid, index: f.server }));
    setServerEndFactory(redisEndFactory(m, tr, servers, threadId));
  }
  const cpu = new VcpuContext(m, { domid: task.domid, vcpu: task.vcpu, slot: task.slot, memory_pages: task.memory_pages, seed: task.seed });
  const report: WorkloadReport = { fails: 0, ops: 0, out: {}, samples: {} };
  const wl = makeWorkload(cpu, task.workload, task.env, report);
  awaitRelease(m);
  cpu.start();
  let steps = 0;
  let fault: string | undefined;
  // Failed checks are published as they come (every 64 steps), so the host sees a failing run while it goes on.
  let published = 0;
  const publishFails = (): void => {
    cpu.stat(STAT.CHECK_FAILS, report.fails - published);
    published = report.fails;
  };
  const hangIdx = m.vcpus.idx(task.slot, VC.HANG_MS);
  // The end of the run (Host.shutdown's drain): the step in progress when the
  // host asked is finished — its ioreqs answered — then the vCPU says so and
  // only serves (a device model) or idles until CTL.STOP.
  let draining = false;
  // A swarm seed's death stage: this thread's hook points are where it may strike (death.ts).
  if (deathArmed(m)) setPreempter((name, a) => void deathAt(m, name, a, task.domid));
  try {
    while (!cpu.stopping) {
      if (!draining && m.control.draining) {
        draining = true;
        m.control.drained(task.slot);
      }
      const r = !draining ? wl.step() : wl.serve !== undefined ? wl.serve() : cpu.sleep(DRAIN_IDLE_MS);
      if (r !== undefined) await r;
      cpu.endOfStep(hangIdx);
      steps++;
      if ((steps & 63) === 0) {
        cpu.flushStats();
        if (report.fails !== published) publishFails();
      }
    }
    if (m.dom.state(task.domid) === DS.RUNNING) wl.finish?.(); // an orderly stop
  } catch (e) {
    // Redis refused what the device model needs: not this vCPU's bug. Its counters still count.
    if (!isTransportFault(e)) throw e;
    fault = e instanceof Error ? e.message : String(e);
  } finally {
    setPreempter(null);
    await wl.close?.();
    cpu.stat(STAT.WORKLOAD_OPS, report.ops);
    publishFails();
    cpu.stop(VS.GUEST);
  }
  return {
    kind: 'vcpu-done',
    domid: task.domid,
    vcpu: task.vcpu,
    threadId,
    steps,
    accesses: cpu.mmu.accesses,
    workload_ops: report.ops,
    check_fails: report.fails,
    out: report.out,
    samples: report.samples,
    ...(fault !== undefined ? { transport_fault: fault } : {}),
  };
}
