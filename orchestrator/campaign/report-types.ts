/** The campaign's report (campaign.json, `--json`), apart from campaign.ts so the page that renders it (report/campaign-page.ts) imports no cycle. */
import type { Percentiles } from '../stats.js';

export interface FailingJob {
  index: number;
  seed: number;
  template: string;
  kind: string;
  status: 'fail' | 'error' | 'timeout' | 'missing';
  host: string;
  violations: number;
  failed: string[];
  error: string;
  /** Saved run record (failing runs only). */
  record?: string;
  /** `npx xgsim replay <record>`, when there is a record. */
  replay?: string;
  /** The direct command line. */
  direct: string;
}

export interface HostActivity {
  first_ms: number;
  last_ms: number;
  /** last_ms − first_ms. */
  active_ms: number;
  /** The sum of its jobs' elapsed_ms (a host runs one job at a time: busy_ms ≤ active_ms, up to clock rounding). */
  busy_ms: number;
}

export interface CampaignReport {
  campaign: string;
  name: string;
  file: string;
  seed: number;
  buggify: string[];
  pool: string;
  runs: number;
  /** Jobs with a result (each counted once). */
  accounted: number;
  /** Indexes of jobs without a result (interrupted or timed out campaigns). */
  missing: number[];
  duplicates_dropped: number;
  malformed_results: number;
  /** Results of jobs taken over from a host that died or gave them up. */
  reclaimed: number;
  pass: number;
  fail: number;
  error: number;
  timeout: number;
  wall_ms: number;
  hosts: Record<string, number>;
  /**
   * Each host's own time at work, on the campaign's clock (ms from its start): from the start of its first job (the result's
   * arrival less the job's elapsed time) to its last result, and the sum of its jobs' elapsed times. Its throughput is over
   * active_ms, not the campaign's wall time: a host that joined late or left early is not made to look slow.
   */
  host_activity: Record<string, HostActivity>;
  templates: Record<string, { kind: string; runs: number; failed: number }>;
  /** Percentiles of every Revoke of every run, from the merged histograms (sim jobs' simulated time left out). */
  revoke_us: Percentiles;
  violations: number;
  failed_invariants: Record<string, number>;
  failing: FailingJob[];
  dir: string;
  /** Stopped before every job had a result: Ctrl-C, or --timeout (then timed_out too). */
  interrupted: boolean;
  /** --timeout fired. */
  timed_out: boolean;
  verdict: 'pass' | 'fail';
}
