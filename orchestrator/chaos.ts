/**
 * `xgsim chaos <plan.yaml>`: a topology plus a schedule and/or random rates
 * of nemeses, injected into a running host; every injection logged with its
 * time and target, invariants checked throughout, recovery measured.
 * (Being built: the signature is the contract replay and campaigns use.)
 */
import type { Summary } from './summary.js';
import { UsageError } from './errors.js';

export interface ChaosOptions {
  duration?: string;
  seed?: string;
  json?: boolean;
  transport?: string;
  redisUrl?: string;
  buggify: number;
  /** Print the summary (default true); campaign hosts run quietly. */
  print?: boolean;
}

export function chaos(file: string, _o: ChaosOptions): Promise<{ summary: Summary; exitCode: number }> {
  return Promise.reject(new UsageError(`xgsim chaos ${file}: not built yet`));
}
