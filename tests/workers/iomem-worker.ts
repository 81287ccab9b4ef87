/**
 * Worker for hypervisor/xen/iomem.test.ts: one thread publishes iomem_caps
 * sets that merge and split, another reads them lock-free, to show that a
 * reader only ever sees whole published sets (layout/domains.ts, steps
 * W1–W3 and R1–R3). Loaded compiled from dist/ (worker-path.ts). One job
 * per worker, from workerData; the result is posted once.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { DomainTable, type IomemRange } from '../../hypervisor/layout/domains.js';

export interface IomemTestJob {
  role: 'writer' | 'reader';
  /** The domain table (DomainTable.bytes(nd)). */
  dom: SharedArrayBuffer;
  nd: number;
  d: number;
  /** The sets the writer cycles through; the reader must see one of them each time. */
  sets: IomemRange[][];
  iterations: number;
  /** One Int32 word: the writer stores 1 when done, and the reader stops then. */
  done: SharedArrayBuffer;
}

export type IomemTestResult = { kind: 'done'; reads: number; distinct: number } | { kind: 'error'; message: string };

function decodeJob(raw: unknown): IomemTestJob {
  if (typeof raw !== 'object' || raw === null) throw new Error('iomem-worker: workerData is not an object');
  const j = raw as Partial<IomemTestJob>;
  if (j.role !== 'writer' && j.role !== 'reader') throw new Error('iomem-worker: role');
  if (!(j.dom instanceof SharedArrayBuffer) || !(j.done instanceof SharedArrayBuffer)) throw new Error('iomem-worker: regions');
  if (typeof j.nd !== 'number' || typeof j.d !== 'number' || typeof j.iterations !== 'number' || !Array.isArray(j.sets)) throw new Error('iomem-worker: numbers');
  return j as IomemTestJob;
}

function run(job: IomemTestJob): IomemTestResult {
  const table = new DomainTable(job.dom, job.nd);
  const done = new Int32Array(job.done);
  if (job.role === 'writer') {
    for (let i = 0; i < job.iterations; i++) table.iomemPublish(job.d, job.sets[i % job.sets.length]!);
    Atomics.store(done, 0, 1);
    return { kind: 'done', reads: 0, distinct: 0 };
  }
  const known = new Set(job.sets.map((s) => JSON.stringify(s)));
  const seen = new Set<string>();
  let reads = 0;
  while (Atomics.load(done, 0) === 0 || reads === 0) {
    const got = JSON.stringify(table.iomemRanges(job.d));
    reads++;
    if (!known.has(got)) return { kind: 'error', message: `read a set never published: ${got}` };
    seen.add(got);
  }
  return { kind: 'done', reads, distinct: seen.size };
}

try {
  parentPort!.postMessage(run(decodeJob(workerData)));
} catch (e) {
  parentPort!.postMessage({ kind: 'error', message: e instanceof Error ? e.message : String(e) } satisfies IomemTestResult);
}
