/**
 * A host process: one simulated machine, driven over IPC by the
 * orchestrator. It runs until the duration ends, a stop arrives (Ctrl-C
 * in the orchestrator), or the host must end the run (Host.runError: the
 * transport down or refusing the run's writes, a vCPU's error), then shuts
 * down and sends its report. It never exits on a transport error: a
 * failure nobody else owns (an unhandled rejection, an uncaught exception)
 * is the run's error too, and the run still ends with its report.
 */
import { Host, type HostSpec } from '../../hypervisor/host/host.js';
import { decodeToHost, type FromHost } from './ipc.js';

function send(msg: FromHost): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined) {
      resolve();
      return;
    }
    process.send(msg, undefined, {}, () => resolve());
  });
}

let stopRequested: (() => void) | undefined;
/** The host of the run, once built: the owner of failures no task owns. */
let current: Host | undefined;
/** A stop that came before the run's clock started (during boot): honoured as soon as it starts. */
let stopPending = false;
let running = false;

let signalStop: () => void = () => undefined;
/** Resolves at the first stop request, whenever it comes. */
const stopSignal = new Promise<void>((r) => (signalStop = r));

function requestStop(): void {
  signalStop();
  if (stopRequested !== undefined) stopRequested();
  else stopPending = true;
}

process.on('message', (raw) => {
  const msg = decodeToHost(raw);
  if (msg === undefined) return;
  if (msg.kind === 'stop') {
    requestStop();
    return;
  }
  if (running) return;
  running = true;
  void run(msg.spec, msg.duration_ms, msg.progress_ms).then(
    () => process.exit(0),
    async (e: unknown) => {
      await send({ kind: 'error', message: e instanceof Error ? e.message : String(e), ...(e instanceof Error && e.stack !== undefined ? { stack: e.stack } : {}) });
      process.exit(1);
    },
  );
});
// The orchestrator handles Ctrl-C and tells us to stop; don't die first.
process.on('SIGINT', requestStop);
process.on('SIGTERM', requestStop);
process.on('disconnect', requestStop);
// The last owner: a failure no task caught ends the run (with its report), not the process.
const orphan = (e: unknown): void => {
  if (current !== undefined) current.runError(e, 'host');
  else process.stderr.write(`xgsim: host: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
};
process.on('unhandledRejection', orphan);
process.on('uncaughtException', orphan);

/** How long the host waits for its vCPU threads to start before it starts the clock anyway. */
const VCPU_START_BOUND_MS = 10_000;

async function run(spec: HostSpec, duration_ms: number, progress_ms: number): Promise<void> {
  const t0 = performance.now();
  const host = new Host(spec);
  current = host;
  host.boot();
  let started = true;
  try {
    await host.startAsync();
  } catch (e) {
    // The transport did not come up (Redis went away since the orchestrator checked it): a run that saw nothing.
    host.runError(e);
    started = false;
  }
  // The duration is how long the vCPUs run (README: `--duration`), so the
  // clock starts once every vCPU thread has passed its first boundary, not
  // when the threads were asked for: spawning them and loading their
  // modules takes 0.2–1 s on a loaded 2-core machine, which would otherwise
  // eat a short run whole (a 300 ms stress run did no Revoke at all). A
  // chaos plan's clock starts at the same moment.
  // Cut short by a stop, or by a run error (a transport down while the threads start).
  if (started) await Promise.race([host.allVcpusRunning(VCPU_START_BOUND_MS), host.ended, stopSignal]);
  host.markRunning();
  const t1 = performance.now();
  await send({ kind: 'started', threads: spec.domains.reduce((a, d) => a + d.vcpus, 0), boot_ms: t1 - t0 });
  // Stopped by a signal (the run is `interrupted`): no drain, Ctrl-C ends at once.
  let signalled = false;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const st = host.stats();
      void send({
        kind: 'progress',
        progress: { elapsed_ms: performance.now() - t1, accesses: st['accesses'] ?? 0, hypercalls: st['hypercalls'] ?? 0, violations: host.m.log.totalViolations(), heartbeats: host.heartbeats() },
      });
    }, progress_ms);
    const finish = (): void => {
      clearTimeout(end);
      clearInterval(tick);
      resolve();
    };
    const end = setTimeout(finish, duration_ms);
    stopRequested = () => {
      signalled = true;
      finish();
    };
    void host.ended.then(finish);
    if (stopPending) stopRequested();
  });
  const report = await host.shutdown({ drain: !signalled });
  await send({ kind: 'report', report });
}
