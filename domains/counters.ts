/** Outcome counters the guest programs keep (returned with their vCPU's result). */
export type Counters = Record<string, number>;

export function bump(out: Counters, key: string, n = 1): void {
  out[key] = (out[key] ?? 0) + n;
}
