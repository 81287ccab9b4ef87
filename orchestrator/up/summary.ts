/** The run summary of docs/formats.md §7. */
import { RTT_BUCKETS, rttQuantile } from '../../hypervisor/layout/rtt-hist.js';
import { fmtUs, table } from '../text.js';
import type { HostReport } from '../../hypervisor/host/host.js';
import { percentiles } from '../stats.js';

/** Maptrack handles per maptrack frame (Xen: PAGE_SIZE / sizeof(struct grant_mapping)). */
export const MAPTRACK_PER_FRAME = 256;

/**
 * The costs of sharing, counted by the hypervisor where the work is done
 * (layout/control.ts) — a revocation is a shared page taken from the domain
 * that reached it: a design's Revoke, a grant unmap, a foreign map's
 * removal — except the two the backend's and frontend's kernels count
 * (evictions refused, end-access refused).
 */
export interface Costs {
  revocations: number;
  revoke_p2m_removed: number;
  revoke_shootdowns: number;
  revoke_vcpus_paused: number;
  revoke_pause_us: number;
  revoke_pause_max_us: number;
  revoke_splits: number;
  p2m_removed: number;
  /** Pages held by grant and foreign maps at once, at most (their owner cannot take them back). */
  pinned_peak_pages: number;
  /** Pages any domain reached without owning them at once, at most (grant, foreign, Map, lend): the memory sharing held. */
  shared_peak_pages: number;
  grant_ref_peak: number;
  /** The most frames any grant table grew to (from 1, Xen's INITIAL_NR_GRANT_FRAMES). */
  grant_frames: number;
  maptrack_peak: number;
  maptrack_frames: number;
  /** Grant maps refused GNTST_no_space: the mapper's maptrack was at its max_maptrack_frames. */
  grant_no_space: number;
  /** FAULT ioreqs answered, and their round trips: how long a vCPU stayed paused on a revoked gfn. */
  faults_served: number;
  fault_us: { p50: number; p99: number };
  evictions_refused: number;
  end_access_refused: number;
  /** grants: how long a frontend waited from its first end-access to its pages back (dom0 had to unmap first). */
  reclaim_us: { p50: number; p99: number; max: number };
}

export interface Summary {
  seed: number;
  transport: string;
  duration_ms: number;
  domains: HostReport['domains'];
  ops: Record<string, number>;
  revoke_us: { p50: number; p99: number; max: number };
  /** How long the end of the run waited for every vCPU to finish its step (at most DRAIN_BOUND_MS, 10 000); absent in summaries saved before the drain. */
  drain_ms?: number;
  /** The longest time between two periodic checks, ms (0: none ran); beyond checkGapBound the run is `unknown`. Absent in summaries saved before it was counted. */
  check_gap_ms?: number;
  /**
   * Hangs the watchdog saw: a vCPU blocked without progress for 5 s (HUNG_VCPU_MS), each hang once; the events
   * name them. Xen waits on an ioreq with no timeout, so a hang is reported, not a violation; one still hung at the
   * end leaves its ioreq unanswered at the stop, which makes the run `unknown`. Absent in summaries saved before it was counted.
   */
  hung_vcpus?: number;
  ioreq: {
    sent: number;
    completed: number;
    /** Given up unanswered because the domain died or its server broke the protocol (as Xen does); before abandoned_at_stop was counted, those the stop gave up too. */
    abandoned: number;
    /**
     * Given up unanswered because the run stopped under a live domain: still
     * in flight when the drain at the end gave up (Host.drain). Any makes the
     * run `unknown`. Absent in summaries saved before it was counted.
     */
    abandoned_at_stop?: number;
    /** sent − completed − abandoned − abandoned_at_stop: an ioreq lost without trace (must be 0). */
    unaccounted: number;
    faults: number;
    duplicates_dropped: number;
    guests_crashed: number;
    /** Messages dropped for what their sender may not say (docs/security.md); never violations. */
    rejected: number;
    /** Requests sent again by the hypervisor's end of the Redis transport (unanswered after a timeout, or lost by Redis). */
    resent: number;
    rtt_us: { p50: number; p99: number };
    /** Posted writes put into a buffered ring (buffered ioreqs: not in `sent`, no round trip), and those that found it full and went the synchronous way. */
    posted: number;
    posted_ring_full: number;
    /** What the chaos transport nemesis did to deliveries. */
    nemesis: HostReport['nemesis'];
  };
  faults_injected: HostReport['injections'];
  invariants: HostReport['invariants'];
  frames: HostReport['frames'];
  threads: { vcpus: number; distinct: number };
  /** How the vCPUs were scheduled; absent in summaries saved before the pCPU scheduler was the default. */
  sched?: SchedSummary;
  violations: HostReport['violations'];
  errors: string[];
  /** Things worth knowing that are not violations: guests crashed for protocol errors, device-model restarts, hung vCPUs. */
  events: string[];
  buggify: string[];
  /** What sharing cost (docs/designs.md "The costs"); absent in summaries saved before it was counted. */
  costs?: Costs;
  /** Why the run could not see everything it was asked to (HostReport.unknown); empty for most runs. */
  unknown: string[];
  /**
   * `interrupted`: stopped early (a signal) with nothing found so far — not
   * a pass, since the run did not see what it was asked to; a violation
   * found before the stop is still `fail`. `unknown`: nothing found, but
   * the run could not see everything (`unknown` says why: the transport
   * down or refusing its writes, Redis losing its keys, vCPU threads
   * terminated, ioreqs still unanswered when the drain at the end gave up,
   * the periodic checks held up) — not a pass either.
   */
  verdict: Verdict;
}

export type Verdict = 'pass' | 'fail' | 'interrupted' | 'unknown';

/**
 * How the vCPUs were scheduled (hypervisor/xen/schedule.ts): what a Xen
 * engineer reads in the runstate times and the scheduler's counters.
 */
export interface SchedSummary {
  /** pCPUs the vCPUs ran on; 0: none, the OS scheduled every vCPU thread (and nothing below was counted). */
  pcpus: number;
  /** pCPUs taken (a vCPU switched in). */
  context_switches: number;
  /** Slices ended at a tick because another vCPU waited. */
  preemptions: number;
  /** pCPUs given up to block (and woken later), and to yield. */
  blocks: number;
  yields: number;
  /** Times a vCPU waited for a pCPU, and of those how many were queued ahead (woken with credit left). */
  waits: number;
  boosted: number;
  /** Time on a pCPU and time runnable waiting for one, over every vCPU (Xen's RUNSTATE_running and RUNSTATE_runnable). */
  running_ms: number;
  runnable_ms: number;
  /** runnable / (running + runnable), %: the vCPUs' steal time. */
  runnable_pct: number;
  /** One wait for a pCPU, µs: p50 and p99 from log-linear buckets (two significant digits, layout/rtt-hist.ts), max exact. */
  wait_us: { p50: number; p99: number; max: number };
}

function schedSummary(r: HostReport, n: (k: string) => number): SchedSummary {
  const running = n('sched_run_us') / 1000;
  const runnable = n('sched_wait_us') / 1000;
  const h = r.sched.wait_hist ?? [];
  return {
    pcpus: r.sched.pcpus ?? 0,
    context_switches: n('sched_runs'),
    preemptions: n('sched_preempts'),
    blocks: n('sched_blocks'),
    yields: n('sched_yields'),
    waits: n('sched_waits'),
    boosted: n('sched_boosts'),
    running_ms: Math.round(running),
    runnable_ms: Math.round(runnable),
    runnable_pct: running + runnable > 0 ? Math.round((1000 * runnable) / (running + runnable)) / 10 : 0,
    // Reports made before the waits had log-linear buckets carry 16 log2 ones.
    wait_us: h.length === RTT_BUCKETS ? { p50: rttQuantile(h, 0.5), p99: rttQuantile(h, 0.99), max: r.sched.wait_max_us ?? 0 } : { p50: histQuantile(h, 0.5), p99: histQuantile(h, 0.99), max: r.sched.wait_max_us ?? 0 },
  };
}

/** The summary's `scheduler:` line (also the HTML report's row). */
export function formatSched(s: SchedSummary): string {
  if (s.pcpus === 0) return 'scheduler: the OS (no pCPUs: every vCPU thread ran whenever the OS ran it)';
  const head = `scheduler: ${s.pcpus} pCPU${s.pcpus === 1 ? '' : 's'}: ${s.context_switches} context switches, ${s.preemptions} preemptions at slice end, ${s.blocks} blocks, ${s.yields} yields`;
  if (s.waits === 0) return `${head}; no vCPU waited for a pCPU`;
  return `${head}; vCPUs waited for a pCPU ${s.waits} times (${s.boosted} woken ahead), ${s.runnable_ms} ms runnable in all (${s.runnable_pct}% of their time), wait p50 ${fmtUs(s.wait_us.p50)}, p99 ${fmtUs(s.wait_us.p99)}, max ${fmtUs(s.wait_us.max)}`;
}

export function summarize(r: HostReport, o: { seed: number; transport: string; buggify: string[] }): Summary {
  const s = r.stats;
  const n = (k: string): number => s[k] ?? 0;
  // A frontend that read the poison a backend writes after Revoke returned
  // saw a frame after its Revoke: a use after revoke seen in the data.
  const poison = r.vcpu_results.reduce((a, v) => a + (v.out['poison_seen'] ?? 0), 0);
  const invariants = { ...r.invariants };
  if (invariants['no_use_after_revoke'] !== undefined && poison > 0) {
    invariants['no_use_after_revoke'] = { ...invariants['no_use_after_revoke'], violations: invariants['no_use_after_revoke'].violations + poison };
  }
  // After Redis lost the run's keys (the device models' exactly-once record
  // with them), an ioreq applied twice may be the transport's doing: not a
  // finding against the hypervisor, but not a pass either (unknown).
  const doubtful = r.transport.resets > 0 ? (invariants['ioreq_forward']?.violations ?? 0) : 0;
  const violations = Object.values(invariants).reduce((a, v) => a + v.violations, 0) - doubtful;
  const revoke = percentiles(r.vcpu_results.flatMap((v) => v.samples['revoke_us'] ?? []));
  const out = (k: string): number => r.vcpu_results.reduce((a, v) => a + (v.out[k] ?? 0), 0);
  // ioreqs_abandoned counts every ioreq given up; ioreqs_abandoned_at_stop those the stop gave up under a live domain.
  const unaccounted = n('ioreqs_sent') - n('ioreqs_done') - n('ioreqs_abandoned');
  const ok = violations === 0 && r.errors.length === 0 && r.frames.conserved && r.frames.free === r.frames.total && n('check_fails') === 0 && unaccounted === 0;
  return {
    seed: o.seed,
    transport: o.transport,
    duration_ms: Math.round(r.duration_ms),
    domains: r.domains,
    ops: {
      map: n('maps'),
      revoke: n('revokes'),
      steal: n('steals'),
      return: n('returns'),
      hypercalls: n('hypercalls'),
      accesses: n('accesses'),
      grant_map: n('grant_maps'),
      grant_unmap: n('grant_unmaps'),
      grant_copy: n('grant_copies'),
      foreign_map: n('foreign_maps'),
      populate: n('populates'),
      balloon: n('balloons'),
      hypercall_copy: n('copies'),
      tlb_flush: n('tlb_flushes'),
      tlb_shootdown: n('tlb_shootdowns'),
      p2m_split: n('p2m_splits'),
      null_io: n('null_io'),
      revoke_faults: out('faults'),
      ioreq: n('ioreqs_sent'),
      fault: n('ioreq_faults'),
      gpu_commands: out('commands'),
      evictions: out('evictions'),
      remaps: out('remaps'),
      zero_pages: out('zero_pages'),
      blobs_checked: out('blobs_checked'),
      svm_jobs_checked: out('svm_jobs_checked'),
      attacks_refused: r.vcpu_results.reduce((a, v) => a + Object.entries(v.out).filter(([k]) => k.startsWith('refused_')).reduce((x, [, c]) => x + c, 0), 0),
      guest_faults: n('guest_faults'),
      hypercall_errors: n('errors'),
      workload_ops: n('workload_ops'),
      workload_check_fails: n('check_fails'),
    },
    revoke_us: { p50: revoke.p50, p99: revoke.p99, max: revoke.max },
    drain_ms: r.drain_ms ?? 0,
    check_gap_ms: r.check_gap_ms ?? 0,
    hung_vcpus: r.hung_vcpus ?? 0,
    ioreq: {
      sent: n('ioreqs_sent'),
      completed: n('ioreqs_done'),
      abandoned: n('ioreqs_abandoned') - n('ioreqs_abandoned_at_stop'),
      abandoned_at_stop: n('ioreqs_abandoned_at_stop'),
      unaccounted,
      faults: n('ioreq_faults'),
      // Hypervisor side (Redis responses seen twice) + device-model side (deliveries answered already),
      // counted in shared memory so a killed device model's count survives it.
      duplicates_dropped: r.transport.duplicates_dropped + r.nemesis.duplicates_skipped,
      guests_crashed: r.transport.guests_crashed,
      rejected: r.transport.rejected,
      resent: r.transport.resent,
      // From the log-linear buckets of layout/rtt-hist.ts: each figure is its bucket's upper bound (within 1 % of the truth).
      rtt_us: { p50: rttQuantile(r.rtt_hist, 0.5), p99: rttQuantile(r.rtt_hist, 0.99) },
      posted: n('bufioreqs'),
      posted_ring_full: n('bufioreq_full'),
      nemesis: r.nemesis,
    },
    faults_injected: r.injections,
    invariants,
    frames: r.frames,
    threads: { vcpus: r.vcpu_results.length, distinct: new Set(r.threads).size },
    sched: schedSummary(r, n),
    violations: r.violations,
    errors: r.errors,
    events: r.events,
    buggify: o.buggify,
    costs: {
      revocations: n('revocations'),
      revoke_p2m_removed: n('revoke_p2m_removed'),
      revoke_shootdowns: n('revoke_shootdowns'),
      revoke_vcpus_paused: n('revoke_vcpus_paused'),
      revoke_pause_us: n('revoke_pause_us'),
      revoke_pause_max_us: n('revoke_pause_max_us'),
      revoke_splits: n('revoke_splits'),
      p2m_removed: n('p2m_removed'),
      pinned_peak_pages: n('pinned_peak'),
      shared_peak_pages: n('shared_peak'),
      grant_ref_peak: n('grant_ref_peak'),
      grant_frames: n('grant_frames_peak'),
      maptrack_peak: n('maptrack_peak'),
      maptrack_frames: Math.ceil(n('maptrack_peak') / MAPTRACK_PER_FRAME),
      grant_no_space: n('grant_no_space'),
      faults_served: n('fault_rtts'),
      fault_us: { p50: n('fault_us_p50'), p99: n('fault_us_p99') },
      evictions_refused: out('evictions_refused'),
      end_access_refused: out('end_access_refused'),
      reclaim_us: (({ p50, p99, max }) => ({ p50, p99, max }))(percentiles(r.vcpu_results.flatMap((v) => v.samples['reclaim_us'] ?? []))),
    },
    unknown: r.unknown,
    verdict: !ok ? 'fail' : r.unknown.length > 0 || doubtful > 0 ? 'unknown' : r.stopped_early === true ? 'interrupted' : 'pass',
  };
}

export function formatSummary(s: Summary): string {
  const lines: string[] = [];
  if (s.verdict === 'interrupted') lines.push('interrupted: the run was stopped early, so it checked less than it was asked to; not a pass');
  if (s.verdict === 'unknown') lines.push(`unknown: the run could not see everything it was asked to; not a pass, and nothing found against the hypervisor:`);
  for (const u of s.unknown.slice(0, 5)) lines.push(`  unknown: ${u.split('\n')[0]}`);
  lines.push(`verdict: ${s.verdict.toUpperCase()}   seed ${s.seed}   transport ${s.transport}   ${(s.duration_ms / 1000).toFixed(1)} s${s.buggify.length > 0 ? `   BUGGIFY ${s.buggify.join(',')}` : ''}`);
  lines.push(`domains: ${s.domains.map((d) => `${d.name}(d${d.domid}, ${d.state}, ${d.tot_pages}/${d.max_pages} pages)`).join('  ')}`);
  lines.push(`vCPU threads: ${s.threads.vcpus} (${s.threads.distinct} distinct)`);
  if (s.sched !== undefined) lines.push(formatSched(s.sched));
  const ops = Object.entries(s.ops).filter(([, v]) => v !== 0).map(([k, v]) => `${k} ${v}`);
  lines.push(`ops: ${ops.join(', ')}`);
  if (s.ioreq.sent > 0) {
    const atStop = s.ioreq.abandoned_at_stop !== undefined ? `, ${s.ioreq.abandoned_at_stop} unanswered at the stop` : '';
    lines.push(`ioreq: ${s.ioreq.sent} sent, ${s.ioreq.completed} completed, ${s.ioreq.abandoned} abandoned${atStop}${s.ioreq.unaccounted !== 0 ? `, ${s.ioreq.unaccounted} UNACCOUNTED` : ''}, ${s.ioreq.faults} faults, ${s.ioreq.duplicates_dropped} duplicates dropped, ${s.ioreq.guests_crashed} guests crashed${s.ioreq.rejected > 0 ? `, ${s.ioreq.rejected} rejected` : ''}${s.ioreq.resent > 0 ? `, ${s.ioreq.resent} re-sent` : ''}; RTT p50 ${fmtUs(s.ioreq.rtt_us.p50)}, p99 ${fmtUs(s.ioreq.rtt_us.p99)}`);
  }
  if (s.ioreq.posted > 0) lines.push(`posted writes (buffered ioreqs): ${s.ioreq.posted}, ${s.ioreq.posted_ring_full} more found the ring full and went the synchronous way`);
  const nem = s.ioreq.nemesis;
  if (nem.delayed + nem.duplicated + nem.dropped + nem.reordered > 0) lines.push(`transport nemesis: ${nem.delayed} delayed, ${nem.duplicated} duplicated, ${nem.dropped} dropped, ${nem.reordered} reordered`);
  if (s.faults_injected.length > 0) {
    lines.push(`injections: ${s.faults_injected.length} (times from when every vCPU had run)`);
    const rows = s.faults_injected.map((f) => {
      const rec = f.recovery_ms !== undefined ? `recovered in ${f.recovery_ms} ms` : f.skipped !== undefined ? `skipped: ${f.skipped}` : 'not recovered by the end';
      return [`${(f.at_ms / 1000).toFixed(2)} s`, f.kind, f.target || '-', `${f.detail ?? ''}${f.detail !== undefined ? '; ' : ''}${rec}`];
    });
    lines.push(...table([{ head: 'at', right: true }, { head: 'nemesis' }, { head: 'target' }, { head: 'what, and recovery' }], rows, '  '));
  }
  if ((s.hung_vcpus ?? 0) > 0) lines.push(`watchdog: ${s.hung_vcpus} vCPU hang${s.hung_vcpus === 1 ? '' : 's'} of 5 s or more without progress (Xen waits on an ioreq with no timeout: reported, not a violation; the events say which)`);
  if (s.revoke_us.max > 0) lines.push(`revoke latency: p50 ${fmtUs(s.revoke_us.p50)}, p99 ${fmtUs(s.revoke_us.p99)}, max ${fmtUs(s.revoke_us.max)}`);
  lines.push('invariants:');
  const inv = Object.entries(s.invariants).map(([k, v]) => [v.violations === 0 ? 'ok' : 'FAIL', k, String(v.checks), String(v.violations)]);
  lines.push(...table([{ head: '' }, { head: 'invariant' }, { head: 'checks', right: true }, { head: 'violations', right: true }], inv, '  '));
  lines.push(`frames: ${s.frames.free}/${s.frames.total} free after shutdown, conserved: ${s.frames.conserved}`);
  const cut = <T>(xs: readonly T[], max: number, line: (x: T) => string, what: string): void => {
    for (const x of xs.slice(0, max)) lines.push(line(x));
    if (xs.length > max) lines.push(`  … and ${xs.length - max} more ${xs.length - max === 1 ? what : `${what}s`} (--json has them all)`);
  };
  cut(s.violations, 10, (v) => `  violation [${v.invariant}] ${v.text}`, 'violation');
  cut(s.events, 10, (e) => `  event: ${e}`, 'event');
  cut(s.errors, 5, (e) => `  error: ${e.split('\n')[0]}`, 'error');
  return lines.join('\n');
}

/** Upper bound of the bucket holding quantile q of a log2 histogram (bucket k: [2^k, 2^(k+1)) µs). */
export function histQuantile(h: readonly number[], q: number): number {
  const total = h.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  let seen = 0;
  for (let k = 0; k < h.length; k++) {
    seen += h[k]!;
    if (seen >= q * total) return 2 ** (k + 1);
  }
  return 2 ** h.length;
}
