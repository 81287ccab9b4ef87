/**
 * Posted writes against flushing reads on real threads: four frontend vCPU
 * threads each post a write to the emulated register (a buffered ioreq)
 * and read it back at once (a synchronous ioreq), back to back; the device
 * model answers a read with the last value that vCPU wrote. A read that
 * overtook its own vCPU's posted write — the order docs/ioreq.md §13
 * promises — is a mismatch. Races the deterministic simulator cannot
 * make (it never preempts a vCPU inside a hypercall), over the ring and
 * over Redis. Without a Redis the Redis case skips, loudly — unless CI is
 * set, where it fails. Nothing asserts on timing.
 */
import { describe, expect } from 'vitest';
import { it as vit } from 'vitest';
import { ioreqThroughput } from '../orchestrator/bench/ioreq.js';
import { testSeed } from './harness.js';
import { REDIS_URL, itIf, redisGate } from './redis-gate.js';

const UP = await redisGate('tests/bufioreq-threads.test.ts', 'the posted-write order test over Redis', 2000);

describe('posted writes and flushing reads on real threads', () => {
  for (const transport of ['ring', 'redis'] as const) {
    (transport === 'redis' ? itIf(UP) : vit)(`over ${transport}: every read sees its vCPU's posted write`, async () => {
      const seed = testSeed(`posted writes ${transport}`);
      const r = await ioreqThroughput({ transport, dms: 1, fe_vcpus: 4, duration_ms: 1000, warmup: 10, redisUrl: REDIS_URL, posted: true, check: seed & 0x7fff_ffff });
      expect(r.ioreqs).toBeGreaterThan(0);
      // Most writes were posted (the rest found the ring full), and not one read overtook them.
      expect(r.posted).toBeGreaterThan(r.ioreqs / 2);
      expect(r.mismatches).toBe(0);
    });
  }
});
