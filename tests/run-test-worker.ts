/**
 * Run one test-only worker (tests/workers/<name>.ts, loaded compiled from
 * dist/) with one job; it posts one result, `{ kind: 'error' }` for a
 * failure inside it. A worker that exits without a result is an error too.
 */
import { Worker } from 'node:worker_threads';
import { distModule } from '../hypervisor/host/worker-path.js';

export function runTestWorker<J, R extends { kind: string; message?: string }>(name: string, job: J): Promise<R> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(distModule(`tests/workers/${name}`)), { workerData: job });
    let result: R | undefined;
    w.once('message', (r: R) => {
      result = r;
    });
    w.once('error', reject);
    w.once('exit', (code) => {
      if (result === undefined) reject(new Error(`${name} exited with ${code} and no result`));
      else if (result.kind === 'error') reject(new Error(result.message ?? `${name} failed`));
      else resolve(result);
    });
  });
}
