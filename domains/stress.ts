/**
 * `xgsim stress revoke`: backend vCPUs Map buffers into frontends, let them
 * hammer, Revoke (timed), then reuse the pages at once — writing poison into
 * them — and Map again; frontend vCPUs read and write the mapped window as
 * fast as they can, or play an adversary: spin without touching memory,
 * flood faults on revoked gfns, or sit descheduled; or halt (an idle guest,
 * the baseline `xgsim bench` compares the adversaries with).
 *
 * A frontend read that returns the poison saw a frame after Revoke of it
 * returned (the backend only poisons after); the MMU's generation check
 * catches every other late access exactly.
 */
import type { GuestCpu } from '../hypervisor/public/guest.js';
import { ACCESS } from '../hypervisor/public/guest.js';
import { domid, gfn } from '../hypervisor/public/types.js';
import type { GuestEnv, Workload } from './workload.js';
import { bump as count } from './counters.js';

const POISON = 0xdead0000;
/** xenstore words from here: per frontend, the cycle currently mapped. */
const AREA = 50_000;

interface Report {
  out: Record<string, number>;
  samples: Record<string, number[]>;
}
const MAX_SAMPLES = 200_000;

function num(spec: Record<string, unknown>, k: string, d: number): number {
  return typeof spec[k] === 'number' ? (spec[k] as number) : d;
}

/** Backend: Map → (frontends hammer) → Revoke → poison → … for its share of the frontends. */
function stressBackend(cpu: GuestCpu, spec: Record<string, unknown>, report: Report): Workload {
  const frontends = (spec['frontends'] as number[] | undefined) ?? [];
  const pages = num(spec, 'pages', 8);
  const window = num(spec, 'window', 0);
  const holdMax = num(spec, 'hold_steps', 40);
  const v = cpu.vcpu as number;
  const mine = frontends.filter((_, i) => i % cpu.nr_vcpus === v);
  const lat: number[] = [];
  report.samples['revoke_us'] = lat;
  const out = report.out;
  // Each frontend's buffer by its place in the whole list: disjoint whatever the split between vCPUs.
  const st = mine.map((fe) => ({ fe, buf: 16 + frontends.indexOf(fe) * pages, id: 0, hold: 0, cycle: 0 }));
  let next = 0;
  const bump = (k: string): void => count(out, k);
  return {
    step() {
      if (st.length === 0) {
        cpu.yield();
        return;
      }
      const s = st[next++ % st.length]!;
      if (s.id === 0) {
        s.cycle++;
        for (let p = 0; p < pages; p++) cpu.write32(gfn(s.buf + p), 0, s.cycle & 0xffff);
        const r = cpu.hc.dm_map(domid(s.fe), { kind: 'ram', gfn: gfn(s.buf) }, pages, gfn(window), 'mmio_direct');
        if (r.rc !== 0) {
          bump('map_fail');
          return;
        }
        s.id = r.id;
        s.hold = 1 + Math.floor(cpu.random() * holdMax);
        Atomics.store(cpu.store, AREA + s.fe, s.cycle);
        bump('map');
      } else if (--s.hold <= 0) {
        const t0 = cpu.now_us();
        const rc = cpu.hc.dm_revoke({ id: s.id });
        const dt = cpu.now_us() - t0;
        if (rc !== 0) bump('revoke_fail');
        if (lat.length < MAX_SAMPLES) lat.push(dt);
        out['revoke_max_us'] = Math.max(out['revoke_max_us'] ?? 0, dt);
        s.id = 0;
        // The backend reuses the pages at once: anything a frontend reads from now on must not be this.
        for (let p = 0; p < pages; p++) cpu.write32(gfn(s.buf + p), 0, (POISON | (s.cycle & 0xffff)) | 0);
        bump('revoke');
      }
    },
  };
}

/** Frontend: hammer the window, or play an adversary. */
function stressFrontend(cpu: GuestCpu, spec: Record<string, unknown>, env: GuestEnv, report: Report): Workload {
  const pages = num(spec, 'pages', 8);
  const window = num(spec, 'window', 0);
  const mode = typeof spec['mode'] === 'string' ? (spec['mode'] as string) : 'hammer';
  const out = report.out;
  const bump = (k: string, n = 1): void => count(out, k, n);
  let x = 1;
  return {
    step() {
      if (mode === 'spin') {
        // Computes without touching memory or calling the hypervisor.
        for (let i = 0; i < 20_000; i++) x = (Math.imul(x, 1103515245) + 12345) | 0;
        bump('spins');
        return;
      }
      if (mode === 'descheduled') {
        cpu.sleep(5 + cpu.random() * 20);
        bump('sleeps');
        return;
      }
      if (mode === 'halt') {
        // An idle guest (HLT): blocked, so it acknowledges flushes implicitly.
        cpu.sleep(10);
        return;
      }
      let ok = 0;
      let faults = 0;
      for (let i = 0; i < 256; i++) {
        const g = gfn(window + (i % pages));
        const v = cpu.read32(g, 0);
        if (cpu.last_access === ACCESS.OK) {
          ok++;
          if ((v & 0xffff0000) >>> 0 === POISON) bump('poison_seen');
          cpu.write32(g, 4 + 4 * (cpu.vcpu as number), i);
        } else faults++;
      }
      bump('accesses_ok', ok);
      bump('faults', faults);
      if (mode === 'fault-flood' && faults === 0) cpu.yield();
      void env;
    },
  };
}

export function makeStressWorkload(cpu: GuestCpu, spec: Record<string, unknown> & { kind: string }, env: GuestEnv, report: Report): Workload | undefined {
  if (spec.kind === 'stress-backend') return stressBackend(cpu, spec, report);
  if (spec.kind === 'stress-frontend') return stressFrontend(cpu, spec, env, report);
  return undefined;
}
