/**
 * Guest programs for the race tests: small, adversarial loops that run on
 * real vCPU threads against each other. Each counts its outcomes in
 * `out` (returned with the vCPU's result) so a test can assert both that
 * the race happened and that every outcome was a legal one.
 */
import type { GuestCpu } from '../hypervisor/public/guest.js';
import { ACCESS } from '../hypervisor/public/guest.js';
import { statusName } from '../hypervisor/public/errno.js';
import { GNTST_NAMES } from '../hypervisor/public/errno.js';
import { GTF_permit_access, GTF_readonly, domid, gfn, grantHandle, grantRef } from '../hypervisor/public/types.js';
import type { GuestEnv, Workload } from './workload.js';
import { bump, type Counters } from './counters.js';

/** xenstore words from here on belong to the race programs. */
const AREA = 40_000;
export const RACE_FIRST_REF = 8;

type Out = Counters;
const num = (spec: Record<string, unknown>, k: string, dflt: number): number => (typeof spec[k] === 'number' ? (spec[k] as number) : dflt);

/** Granter: grants, ends access, and scribbles on its own entries, at random. */
function grantFlipper(cpu: GuestCpu, spec: Record<string, unknown>, out: Out): Workload {
  const peer = num(spec, 'peer', 0);
  const refs = num(spec, 'refs', 8);
  const v = cpu.vcpu as number;
  return {
    step() {
      const i = Math.floor(cpu.random() * refs);
      const ref = grantRef(RACE_FIRST_REF + v * refs + i);
      const g = gfn(i);
      const r = cpu.random();
      if (r < 0.4) {
        cpu.write32(g, 0, 0x600d0000 | i);
        cpu.grants.grant_access(ref, domid(peer), g, cpu.random() < 0.3);
        bump(out, 'grant');
      } else if (r < 0.8) {
        bump(out, cpu.grants.end_access(ref) ? 'end_ok' : 'end_busy');
      } else {
        // Rewrite the entry non-atomically: another domid, another frame, readonly.
        const [w0] = cpu.grants.read_raw(ref);
        const k = Math.floor(cpu.random() * 3);
        const flags = w0 & 0xffff;
        const keep = flags & 0x18; // reading/writing as the hypervisor set them
        if (k === 0) cpu.grants.write_raw(ref, keep | GTF_permit_access | ((peer + 1) << 16), i);
        else if (k === 1) cpu.grants.write_raw(ref, keep | GTF_permit_access | (peer << 16), (i + 1) % refs);
        else cpu.grants.write_raw(ref, keep | GTF_permit_access | GTF_readonly | (peer << 16), i);
        bump(out, 'scribble');
      }
    },
  };
}

/** Mapper: map, touch, unmap grants of `granter` as fast as it can. */
function grantHammer(cpu: GuestCpu, spec: Record<string, unknown>, env: GuestEnv, out: Out): Workload {
  const granter = num(spec, 'granter', 0);
  const nrefs = num(spec, 'nrefs', 16);
  return {
    step() {
      const ref = grantRef(RACE_FIRST_REF + Math.floor(cpu.random() * nrefs));
      const ro = cpu.random() < 0.5;
      const at = gfn(env.map_window_gfn);
      const r = cpu.hc.gnttab_map_grant_ref({ dom: domid(granter), ref, host_gfn: at, readonly: ro });
      bump(out, `map_${GNTST_NAMES[r.status] ?? r.status}`);
      if (r.status !== 0) return;
      cpu.read32(at, 0);
      if (cpu.last_access !== ACCESS.OK) bump(out, 'bad_access');
      if (!ro) cpu.write32(at, 8, 0x5eed);
      const u = cpu.hc.gnttab_unmap_grant_ref(r.handle);
      bump(out, u === 0 ? 'unmap_ok' : 'unmap_fail');
    },
  };
}

/**
 * Two vCPUs of one domain: vCPU 0 populates, vCPU 1 balloons out, the same
 * gfns. A populate over RAM replaces the page and leaves the old one
 * allocated (Xen's p2m_add_page), so the quota fills up over time and both
 * sides then mostly do nothing (`_none`).
 */
function memoryRace(cpu: GuestCpu, spec: Record<string, unknown>, out: Out): Workload {
  const first = num(spec, 'first', 0);
  const count = num(spec, 'count', 16);
  const populate = (cpu.vcpu as number) % 2 === 0;
  return {
    step() {
      const g = gfn(first + Math.floor(cpu.random() * count));
      const rc = populate ? cpu.hc.populate_physmap([g]) : cpu.hc.decrease_reservation([g]);
      const what = populate ? 'populate' : 'balloon';
      if (rc === 1) {
        bump(out, `${what}_ok`);
        if (populate) {
          const v = cpu.read32(g, 0);
          // vCPU 1 may have ballooned it out again (a hole reads all ones).
          if (cpu.last_access === ACCESS.OK && v !== 0) bump(out, 'populated_dirty');
        }
        if (populate) cpu.write32(g, 0, 0xd1e7);
      } else if (rc === 0) bump(out, `${what}_none`); // memory_op counts extents done: nothing done
      else bump(out, `${what}_unexpected_${statusName(rc)}`);
    },
  };
}

/** Granter that offers `refs` pages and keeps writing them (it will be destroyed under the mapper). */
function staticGranter(cpu: GuestCpu, spec: Record<string, unknown>, out: Out): Workload {
  const peer = num(spec, 'peer', 0);
  const refs = num(spec, 'refs', 8);
  let granted = false;
  return {
    step() {
      if (!granted && (cpu.vcpu as number) === 0) {
        for (let i = 0; i < refs; i++) {
          cpu.write32(gfn(i), 0, 0xa0a00000 | i);
          cpu.grants.grant_access(grantRef(RACE_FIRST_REF + i), domid(peer), gfn(i), false);
        }
        granted = true;
      }
      cpu.write32(gfn(refs + Math.floor(cpu.random() * 8)), 0, 1);
      bump(out, 'steps');
    },
  };
}

/** Mapper that keeps several grant mappings of `granter` live at once. */
function holdingMapper(cpu: GuestCpu, spec: Record<string, unknown>, env: GuestEnv, out: Out): Workload {
  const granter = num(spec, 'granter', 0);
  const refs = num(spec, 'refs', 8);
  const live: Array<{ h: number; at: number; i: number }> = [];
  let next = 0;
  return {
    step() {
      if (live.length < 4) {
        const i = Math.floor(cpu.random() * refs);
        const at = env.map_window_gfn + (next++ % (env.map_window_pages - 1));
        if (live.some((x) => x.at === at)) return;
        const r = cpu.hc.gnttab_map_grant_ref({ dom: domid(granter), ref: grantRef(RACE_FIRST_REF + i), host_gfn: gfn(at), readonly: false });
        const name = GNTST_NAMES[r.status] ?? String(r.status);
        bump(out, `map_${name}`);
        if (r.status === -2 && (out['live_at_first_bad_domain'] === undefined)) out['live_at_first_bad_domain'] = live.length;
        if (r.status === 0) {
          live.push({ h: r.handle as number, at, i });
          Atomics.add(cpu.store, AREA + 100 + granter, 1);
        }
        return;
      }
      const x = live.shift()!;
      // The granted frame stays alive while mapped, even after its owner died.
      if ((cpu.read32(gfn(x.at), 0) & 0xffff0000) !== (0xa0a00000 | 0)) bump(out, 'bad_content');
      bump(out, cpu.hc.gnttab_unmap_grant_ref(grantHandle(x.h)) === 0 ? 'unmap_ok' : 'unmap_fail');
    },
    finish() {
      for (const x of live) bump(out, cpu.hc.gnttab_unmap_grant_ref(grantHandle(x.h)) === 0 ? 'unmap_ok' : 'unmap_fail');
      live.length = 0;
    },
  };
}

/** Privileged: destroy `target` once its grants were mapped `after` times (race-holding-mapper counts them). */
function destroyer(cpu: GuestCpu, spec: Record<string, unknown>, out: Out): Workload {
  const target = num(spec, 'target', 1);
  const after = num(spec, 'after', 50);
  let done = false;
  return {
    step() {
      if (!done && (cpu.vcpu as number) === 0 && Atomics.load(cpu.store, AREA + 100 + target) >= after) {
        out['destroy_rc'] = cpu.hc.domctl_destroy(domid(target));
        done = true;
      } else cpu.yield();
    },
  };
}

/**
 * Both sides of a shared page write their own tag into the same word and
 * read it back: a real, unsynchronised data race between two threads.
 */
function sharedWord(cpu: GuestCpu, spec: Record<string, unknown>, env: GuestEnv, out: Out): Workload {
  const peer = num(spec, 'peer', 0);
  const role = spec['role'] === 'granter' ? 'granter' : 'mapper';
  const mine = role === 'granter' ? 0x11000000 : 0x22000000;
  const theirs = role === 'granter' ? 0x22000000 : 0x11000000;
  let page = -1;
  let n = 0;
  return {
    step() {
      if (page < 0) {
        if (role === 'granter') {
          cpu.grants.grant_access(grantRef(RACE_FIRST_REF), domid(peer), gfn(0), false);
          page = 0;
        } else {
          const r = cpu.hc.gnttab_map_grant_ref({ dom: domid(peer), ref: grantRef(RACE_FIRST_REF), host_gfn: gfn(env.map_window_gfn), readonly: false });
          if (r.status !== 0) return;
          page = env.map_window_gfn;
          out['handle'] = r.handle as number;
        }
        out['first_ms'] = performance.timeOrigin + performance.now();
      }
      for (let i = 0; i < 256; i++) {
        cpu.write32(gfn(page), 0, mine | (n++ & 0xffffff));
        const v = cpu.read32(gfn(page), 0);
        if ((v & 0xff000000) >>> 0 === theirs >>> 0) bump(out, 'saw_peer');
      }
      out['last_ms'] = performance.timeOrigin + performance.now();
      bump(out, 'accesses', 512);
    },
    finish() {
      if (role === 'mapper' && out['handle'] !== undefined) cpu.hc.gnttab_unmap_grant_ref(grantHandle(out['handle']));
    },
  };
}

/**
 * Use after unmap, staged: vCPU 0 maps a grant and writes through it
 * without pause; vCPU 1 unmaps that handle under it. With the TLB flush in
 * unmap, vCPU 0's next batch faults over to the hole; without it, its
 * stale translation keeps writing — the checker must see it.
 */
function unmapUnderWriter(cpu: GuestCpu, spec: Record<string, unknown>, env: GuestEnv, out: Out): Workload {
  const granter = num(spec, 'granter', 0);
  const me = cpu.domid as number;
  const w = AREA + me * 4; // [handle + 1, round]
  const at = gfn(env.map_window_gfn - (cpu.vcpu as number) * env.map_window_pages); // vCPU 0's window for both
  return {
    step() {
      if ((cpu.vcpu as number) === 0) {
        if (Atomics.load(cpu.store, w) === 0) {
          const r = cpu.hc.gnttab_map_grant_ref({ dom: domid(granter), ref: grantRef(RACE_FIRST_REF), host_gfn: at, readonly: false });
          if (r.status !== 0) {
            bump(out, 'map_fail');
            return;
          }
          Atomics.store(cpu.store, w, (r.handle as number) + 1);
          bump(out, 'mapped');
        }
        for (let i = 0; i < 64; i++) cpu.write32(at, 4 * (i & 7), i);
        bump(out, 'writes', 64);
      } else {
        const h = Atomics.load(cpu.store, w);
        if (h === 0) return;
        const rc = cpu.hc.gnttab_unmap_grant_ref(grantHandle(h - 1));
        bump(out, rc === 0 ? 'unmap_ok' : 'unmap_fail');
        Atomics.store(cpu.store, w, 0);
      }
    },
  };
}

/** A granter that grants one page to `peer` and otherwise idles. */
function oneGrant(cpu: GuestCpu, spec: Record<string, unknown>, out: Out): Workload {
  let done = false;
  return {
    step() {
      if (!done && (cpu.vcpu as number) === 0) {
        cpu.grants.grant_access(grantRef(RACE_FIRST_REF), domid(num(spec, 'peer', 0)), gfn(0), false);
        done = true;
        bump(out, 'granted');
      }
      cpu.yield();
    },
  };
}

export function makeRaceWorkload(cpu: GuestCpu, spec: Record<string, unknown> & { kind: string }, env: GuestEnv, out: Out): Workload | undefined {
  switch (spec.kind) {
    case 'race-grant-flipper':
      return grantFlipper(cpu, spec, out);
    case 'race-grant-hammer':
      return grantHammer(cpu, spec, env, out);
    case 'race-memory':
      return memoryRace(cpu, spec, out);
    case 'race-static-granter':
      return staticGranter(cpu, spec, out);
    case 'race-holding-mapper':
      return holdingMapper(cpu, spec, env, out);
    case 'race-destroyer':
      return destroyer(cpu, spec, out);
    case 'race-shared-word':
      return sharedWord(cpu, spec, env, out);
    case 'race-unmap-under-writer':
      return unmapUnderWriter(cpu, spec, env, out);
    case 'race-one-grant':
      return oneGrant(cpu, spec, out);
    default:
      return undefined;
  }
}
