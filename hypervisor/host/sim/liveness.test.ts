/**
 * Liveness mode judges a vCPU only over the decisions that were its own: a
 * vCPU the one-thread simulator holds beneath other vCPUs' frames (its wait
 * over, but a frame resumes only after those above it returned) would be
 * running on a real machine. Deterministic: fixed seeds, no clock.
 */
import { NO_BUGS } from '../../xen/buggify.js';
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { LockSpace } from '../../xen/locks.js';
import { PROJECT_ROOT } from '../worker-path.js';
import { loadTopology } from '../../../orchestrator/config/topology.js';
import { hostSpecOf } from '../../../orchestrator/up/host-spec.js';
import { runSim } from './run.js';
import { LIVENESS_TAIL_STEPS } from './liveness.js';
import { MAX_NEST_DEPTH, SimSched, type SimActor } from './sim-sched.js';

const noLocks = { heldCount: () => 0 } as unknown as LockSpace;

/** An actor whose one step is `body`; blocked while `waiting` says so (as a vCPU in an ioreq wait or a sleep is). */
let nextSlot = 0;
function actor(name: string, body: () => void): SimActor & { waiting: boolean } {
  const slot = nextSlot++;
  const a = {
    name,
    slot,
    domid: slot,
    waiting: false,
    serves: false,
    step: body,
    ready: () => true,
    blocked: () => a.waiting,
    inHypervisor: () => false,
  };
  return a;
}

describe('liveness: what the simulator holds is not the vCPU\'s', () => {
  it('held: a vCPU beneath another frame is held once its wait is over (the word moved, or its time passed), not before', () => {
    const sim = new SimSched({ seed: 1, max_steps: 1000, strategy: 'random', pct_depth: 3, horizon_steps: 1000, locks: noLocks });
    const word = new Int32Array(new SharedArrayBuffer(8));
    const seen: Record<string, boolean> = {};
    const a = actor('a', () => {
      a.waiting = true;
      // An ioreq wait (no timeout), then a short timed wait on a word nobody moves.
      expect(sim.wait(word, 0, 0, Infinity)).toBe(true);
      expect(sim.wait(word, 1, 0, 0.01)).toBe(false);
      a.waiting = false;
    });
    let round = 0;
    const b = actor('b', () => {
      b.waiting = true;
      if (round++ === 0) {
        seen['before the answer'] = sim.held(0);
        Atomics.store(word, 0, 1); // the device model's answer
        seen['after the answer'] = sim.held(0);
      } else {
        seen['timed wait running'] = sim.held(0);
      }
      sim.wait(word, 1, 0, 1); // a sleep of 1 ms on top of a
      if (round === 2) seen['timed wait over'] = sim.held(0);
      seen['the top'] = sim.held(1);
      b.waiting = false;
    });
    sim.setActors([a, b]);
    sim.run(0);
    expect(round).toBe(2);
    expect(seen).toEqual({ 'before the answer': false, 'after the answer': true, 'timed wait running': false, 'timed wait over': true, 'the top': false });
    expect(sim.held(0)).toBe(false); // off the stack
    expect(sim.waitingIn(0)).toBeUndefined();
  });

  it('held: off the stack, a vCPU is held while the stack is MAX_NEST_DEPTH deep (only a device model may run then), not before', () => {
    const sim = new SimSched({ seed: 2, max_steps: 1000, strategy: 'random', pct_depth: 3, horizon_steps: 1000, locks: noLocks });
    const sleep = new Int32Array(new SharedArrayBuffer(4));
    const heldOffStack: boolean[] = [];
    const actors: Array<SimActor & { waiting: boolean }> = [];
    let ran = 0;
    for (let k = 0; k < MAX_NEST_DEPTH + 1; k++) {
      const a = actor(`v${k}`, () => {
        ran++;
        // Whoever is off the stack now, with this actor on top at depth d.
        const off = actors.findIndex((_, j) => !sim.stackOrder().includes(j));
        if (off >= 0) heldOffStack[sim.depth] = sim.held(off);
        a.waiting = true;
        sim.wait(sleep, 0, 0, 1); // a sleep: the others nest inside it while the depth allows
        a.waiting = false;
      });
      actors.push(a);
    }
    sim.setActors(actors);
    sim.run(0);
    // Depths 1..MAX_NEST_DEPTH: the last actor off the stack is held only once the stack is full.
    expect(ran).toBe(MAX_NEST_DEPTH);
    expect(heldOffStack.slice(1)).toEqual([...Array.from({ length: MAX_NEST_DEPTH - 1 }, () => false), true]);
  });

  it('seed 1 (random walk, swarm, 20 000 steps, no bug): a vCPU held beneath another\'s wait is live, not failed', async () => {
    // First found as seed 1880795512 of a campaign of 16: the render vCPU's
    // step (six ioreqs and a 1 ms sleep) started at the half of the quiet
    // tail; each answer it got waited beneath desktop/v1's 1 ms sleep and
    // the steps nested above that, so it finished no step in the half's
    // 1000 decisions, though it was running for only ~230 of them. Before
    // the fix: `liveness: desktop/v0 made no progress in the last 1000
    // decisions of the quiet tail (blocked)`. The access points (docs/sim.md
    // §2) changed every interleaving since; seed 1 is one whose tail is
    // stretched now. The tail is stretched only where a vCPU had no half of
    // its own, which the check before the fix failed.
    const seed = 1;
    const spec = hostSpecOf(loadTopology(join(PROJECT_ROOT, 'examples', 'sim', 'default.yaml')), { seed, checking: true, buggify: NO_BUGS, check_interval_ms: 0 });
    // The seed's draw, given as a replay file gives it (the catalogue may change).
    const swarm = { dom0: ['dma-peek', 'toolstack', 'return-with-maps'], evil: ['hypercall-on-mapped', 'fault-storm', 'nested-map-evasion', 'race-revoke', 'memop-probe'] };
    const r = await runSim(spec, { seed, steps: 20_000, strategy: 'random', swarm });
    expect(r.nemeses).toEqual(['ioreq-delay', 'ioreq-drop', 'memory-pressure']);
    expect(r.verdict, r.errors.join('\n') || r.stuck || '').toBe('pass');
    // The tail's second half was stretched for a vCPU to have a half of its own: the case this test is about.
    // If it was not (the interleavings changed), this seed no longer replays it: find one that does.
    expect(r.steps).toBeGreaterThan(20_000 + LIVENESS_TAIL_STEPS);
  });
});
