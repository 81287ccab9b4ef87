/** What `xgsim compare` reports (orchestrator/compare/compare.ts runs it; table.ts and report.ts show it). */
export type Safety = 'safe' | 'UNSAFE' | 'unknown' | 'n/a';

export interface CompareCell {
  /** The plan's name for the design (a variant's own name). */
  design: string;
  /** The registered design it runs (docs/designs.md). */
  base_design: string;
  workload: string;
  buggify: string[];
  safety: Safety;
  /** Threaded runs (one per seed), or refusal scenarios run. */
  runs: number;
  /** Invariants (or scenarios) that failed, with their violation counts. */
  failed: Record<string, number>;
  violations: number;
  revoke_us: { p50: number; p99: number; max: number };
  /** FAULT ioreqs' round trips (a vCPU paused on a revoked gfn until dom0 answered): the worst seed's. */
  fault_us: { p50: number; p99: number };
  /** grants: a frontend's wait from its first end-access to its pages back: the worst seed's. */
  reclaim_us: { p50: number; p99: number; max: number };
  duration_ms: number;
  /** COST_KEYS summed over seeds, PEAK_KEYS the largest seed's. */
  costs: Record<string, number>;
  /** Why a cell was not run (n/a), or what went wrong. */
  note: string;
}

export interface CompareReport {
  plan: string;
  seeds: readonly number[];
  duration_ms: number;
  /** `--sim`: the cells ran in the deterministic simulator, this many decisions per seed (durations are simulated time). */
  sim_steps?: number;
  cells: CompareCell[];
}
