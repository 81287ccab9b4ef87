/**
 * A campaign host's sim jobs, each in a child process of its own: one
 * process per core the host gives its jobs, started on the first job of its
 * slot and kept for the next ones (a Node start-up and the simulator's
 * modules cost more than a short job), ended when a job outlives its
 * timeout or the host stops.
 *
 * Why processes and not threads of the host (docs/campaigns.md, BENCHMARKS.md):
 * a sim job allocates as it decides, and V8's platform threads (parallel
 * scavenges, concurrent marking, background compiles) do ~30 % of its work.
 * Those threads are per process: two jobs on two threads of one host fed the
 * same four and gained nothing over one job (each job thread got 58 % of a
 * core). And a slot is one core: the job processes run V8 single-threaded
 * (`--single-threaded`), so two slots take two cores, not 2.8, and the
 * host's `--jobs` means what it says.
 *
 * The child (sim-job-main.ts) takes `{ kind: 'run', spec }`, reports
 * `{ kind: 'steps', n }` every 10 000 decisions and ends with
 * `{ kind: 'done', result }`; messages use the advanced (structured clone)
 * serialization, as a worker's postMessage would.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { distModule } from '../../hypervisor/host/worker-path.js';
import type { RunSpec } from '../runs/store.js';
import type { RunOutcome } from '../up/up.js';

export type SimJobResult = { ok: true; outcome: RunOutcome } | { ok: false; error: string };

/** What the host sends a job process. */
export interface SimProcRun {
  kind: 'run';
  spec: RunSpec;
}
/** What a job process sends back. */
export type SimProcMsg = { kind: 'steps'; n: number } | { kind: 'done'; result: SimJobResult };

/** V8 flags of a job process: one thread (no GC or compiler helper threads), so a slot is one core. */
export const SIM_PROC_V8_FLAGS: readonly string[] = ['--single-threaded'];

export type SimRunEnd = SimJobResult | { timeout_at_step: number } | 'stopped';

interface Slot {
  child: ChildProcess;
  busy: boolean;
}

export class SimProcessPool {
  private readonly slots: Slot[] = [];
  private closed = false;
  /** Every job process alive, for a second Ctrl-C to kill at once. */
  readonly children = new Set<ChildProcess>();

  constructor(private readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new Error(`SimProcessPool: max ${max} is not a positive integer`);
  }

  /** Run one sim job in an idle process (a new one if none is idle); `signal` stops it (the host is leaving). */
  async run(spec: RunSpec, timeout_ms: number, signal: AbortSignal): Promise<SimRunEnd> {
    if (this.closed || signal.aborted) return 'stopped';
    const slot = this.idle();
    slot.busy = true;
    const child = slot.child;
    let steps = 0;
    let timedOut = false;
    let settle: (r: SimRunEnd) => void = () => {};
    const ended = new Promise<SimRunEnd>((res) => (settle = res));
    const onMsg = (m: unknown): void => {
      const msg = m as SimProcMsg;
      if (msg.kind === 'steps') steps = msg.n;
      else if (msg.kind === 'done') settle(msg.result);
    };
    const onExit = (code: number | null, sig: NodeJS.Signals | null): void => {
      if (timedOut) settle({ timeout_at_step: steps });
      else if (signal.aborted || this.closed) settle('stopped');
      else settle({ ok: false, error: `the sim job's process ended (${sig ?? `exit ${code}`}) before its result` });
    };
    const onAbort = (): void => {
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeout_ms);
    child.on('message', onMsg);
    child.on('exit', onExit);
    signal.addEventListener('abort', onAbort);
    try {
      const run: SimProcRun = { kind: 'run', spec };
      child.send(run);
      return await ended;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      child.off('message', onMsg);
      child.off('exit', onExit);
      slot.busy = false;
      // A process killed (timeout, stop) or gone leaves its slot; the next job starts a new one there.
      if (!alive(child) || child.killed) this.drop(slot);
    }
  }

  /** End every job process (the host is leaving). */
  async destroy(): Promise<void> {
    this.closed = true;
    const gone = [...this.slots].map(
      (s) =>
        new Promise<void>((res) => {
          if (s.child.exitCode !== null || s.child.signalCode !== null) return res();
          s.child.once('exit', () => res());
          s.child.kill('SIGKILL');
        }),
    );
    await Promise.all(gone);
    this.slots.length = 0;
  }

  private idle(): Slot {
    // A process that died while idle (killed from outside) leaves its slot: a job sent there would wait for ever.
    for (const s of [...this.slots]) if (!s.busy && !alive(s.child)) this.drop(s);
    const free = this.slots.find((s) => !s.busy);
    if (free !== undefined) return free;
    if (this.slots.length >= this.max) throw new Error(`SimProcessPool: ${this.max} jobs already running (the host's core budget should have kept this one waiting)`);
    const child = fork(fileURLToPath(distModule('orchestrator/campaign/sim-job-main')), [], {
      execArgv: [...SIM_PROC_V8_FLAGS],
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    // A stray error event (a send to a process that just died) must not crash the host; the
    // processes end with the host (destroy), or by themselves when its IPC channel closes.
    child.on('error', () => {});
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    const slot: Slot = { child, busy: false };
    this.slots.push(slot);
    return slot;
  }

  private drop(slot: Slot): void {
    const k = this.slots.indexOf(slot);
    if (k >= 0) this.slots.splice(k, 1);
  }
}

const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null && c.connected;
