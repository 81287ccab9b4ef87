/**
 * Worker for hypervisor/xen/locks.test.ts: real threads contending on real
 * shared locks. Loaded compiled from dist/ (worker-path.ts). One job per
 * worker, from workerData; the result is posted once.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { InvariantLog } from '../../hypervisor/layout/invariants.js';
import { LockSpace, type LockId } from '../../hypervisor/xen/locks.js';

/** The counter region is one Int32 word, deliberately updated without atomics. */
const COUNTER_WORD = 0;

export type LocksTestJob =
  | {
      kind: 'count';
      locks: SharedArrayBuffer;
      log: SharedArrayBuffer;
      counter: SharedArrayBuffer;
      lock: number;
      iterations: number;
      seed: number;
      checking: boolean;
    }
  | {
      kind: 'order';
      locks: SharedArrayBuffer;
      log: SharedArrayBuffer;
      first: number;
      second: number;
      firstSite: string;
      secondSite: string;
      checking: boolean;
    };

export type LocksTestResult = { kind: 'done'; contended: number } | { kind: 'error'; message: string };

function decodeJob(raw: unknown): LocksTestJob {
  if (typeof raw !== 'object' || raw === null) throw new Error('locks-test-worker: workerData is not an object');
  const j = raw as Record<string, unknown>;
  const sab = (k: string): SharedArrayBuffer => {
    const v = j[k];
    if (!(v instanceof SharedArrayBuffer)) throw new Error(`locks-test-worker: ${k} is not a SharedArrayBuffer`);
    return v;
  };
  const int = (k: string): number => {
    const v = j[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new Error(`locks-test-worker: ${k} is not a non-negative integer`);
    return v;
  };
  const str = (k: string): string => {
    const v = j[k];
    if (typeof v !== 'string') throw new Error(`locks-test-worker: ${k} is not a string`);
    return v;
  };
  const checking = j['checking'];
  if (typeof checking !== 'boolean') throw new Error('locks-test-worker: checking is not a boolean');
  switch (j['kind']) {
    case 'count':
      return {
        kind: 'count',
        locks: sab('locks'),
        log: sab('log'),
        counter: sab('counter'),
        lock: int('lock'),
        iterations: int('iterations'),
        seed: int('seed'),
        checking,
      };
    case 'order':
      return {
        kind: 'order',
        locks: sab('locks'),
        log: sab('log'),
        first: int('first'),
        second: int('second'),
        firstSite: str('firstSite'),
        secondSite: str('secondSite'),
        checking,
      };
    default:
      throw new Error(`locks-test-worker: unknown job kind ${String(j['kind'])}`);
  }
}

/** mulberry32: small, seeded, good enough to vary hold times. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function run(job: LocksTestJob): LocksTestResult {
  const space = new LockSpace(job.locks, new InvariantLog(job.log), { checking: job.checking });
  if (job.kind === 'count') {
    const id = job.lock as LockId;
    const counter = new Int32Array(job.counter);
    const rand = prng(job.seed);
    let sink = 0;
    for (let i = 0; i < job.iterations; i++) {
      space.lock(id, 'locks-test-worker:count');
      // Read, dawdle, write: without mutual exclusion increments get lost.
      const v = counter[COUNTER_WORD] as number;
      const work = Math.floor(rand() * 32);
      for (let k = 0; k < work; k++) sink += k;
      counter[COUNTER_WORD] = v + 1;
      space.unlock(id);
    }
    if (sink < 0) throw new Error('unreachable');
    return { kind: 'done', contended: space.contended(id) };
  }
  const first = job.first as LockId;
  const second = job.second as LockId;
  space.lock(first, job.firstSite);
  space.lock(second, job.secondSite);
  space.unlock(second);
  space.unlock(first);
  return { kind: 'done', contended: 0 };
}

let result: LocksTestResult;
try {
  result = run(decodeJob(workerData));
} catch (e) {
  result = { kind: 'error', message: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
}
parentPort?.postMessage(result);
