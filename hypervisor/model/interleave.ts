/**
 * Linearizability check against the sequential model: a concurrent run of
 * several threads of steps is explainable if applying the steps to the
 * model in *some* order that keeps each thread's own order reproduces what
 * every thread observed.
 *
 * `explain` searches depth first and prunes an order as soon as one
 * outcome differs, cloning the model only where the search branches, so
 * it visits far fewer states than the full set of interleavings (which
 * `interleavings` enumerates, for tests and small cases).
 */

/** Something that can be copied to explore another order (the Model). */
export interface Cloneable<M> {
  clone(): M;
}

/** Every merge of the threads' steps that keeps each thread's order. */
export function* interleavings<T>(threads: ReadonlyArray<ReadonlyArray<T>>): Generator<T[]> {
  const pos = threads.map(() => 0);
  const total = threads.reduce((n, t) => n + t.length, 0);
  const out: T[] = [];
  function* rec(): Generator<T[]> {
    if (out.length === total) {
      yield out.slice();
      return;
    }
    for (let t = 0; t < threads.length; t++) {
      const th = threads[t]!;
      const p = pos[t]!;
      if (p >= th.length) continue;
      out.push(th[p]!);
      pos[t] = p + 1;
      yield* rec();
      pos[t] = p;
      out.pop();
    }
  }
  yield* rec();
}

/** One step of a witness order: thread t's k-th step. */
export interface Scheduled {
  thread: number;
  step: number;
}

export interface ExplainOptions<S = unknown, O = unknown> {
  /** Give up (return undefined) after applying this many steps in total; default unlimited. */
  max_steps?: number;
  /**
   * Outcomes thread t's step `s` may also have while changing nothing: a
   * failure the sequential model cannot give but a concurrent step of
   * another thread can cause in passing (a transient page reference making
   * a Steal fail -EBUSY, as in Xen). Tried, with the model as it is, before
   * the model's own outcome.
   */
  unchanged?: (s: S, t: number) => readonly O[];
}

/**
 * An order of the steps, applied to clones of `model`, under which every
 * thread's outcomes equal `observed` (by `eq`); undefined if there is none.
 * `model` itself is never changed.
 */
export function explain<M extends Cloneable<M>, S, O>(
  model: M,
  threads: ReadonlyArray<ReadonlyArray<S>>,
  observed: ReadonlyArray<ReadonlyArray<O>>,
  apply: (m: M, s: S) => O,
  eq: (expected: O, observed: O) => boolean,
  opts: ExplainOptions<S, O> = {},
): Scheduled[] | undefined {
  if (observed.length !== threads.length) return undefined;
  for (let t = 0; t < threads.length; t++) if (observed[t]!.length !== threads[t]!.length) return undefined;
  const total = threads.reduce((n, t) => n + t.length, 0);
  const pos = threads.map(() => 0);
  const order: Scheduled[] = [];
  let budget = opts.max_steps ?? Infinity;

  // `m` belongs to this search: it may be changed by the last branch tried.
  const search = (m: M): boolean => {
    if (order.length === total) return true;
    const ready: number[] = [];
    for (let t = 0; t < threads.length; t++) if (pos[t]! < threads[t]!.length) ready.push(t);
    for (let k = 0; k < ready.length; k++) {
      if (budget <= 0) return false;
      budget--;
      const t = ready[k]!;
      const p = pos[t]!;
      const obs = observed[t]![p]!;
      if (opts.unchanged?.(threads[t]![p]!, t).some((o) => eq(o, obs)) === true) {
        pos[t] = p + 1;
        order.push({ thread: t, step: p });
        if (search(m.clone())) return true;
        order.pop();
        pos[t] = p;
      }
      const mm = k === ready.length - 1 ? m : m.clone();
      const out = apply(mm, threads[t]![p]!);
      if (!eq(observed[t]![p]!, out)) continue;
      pos[t] = p + 1;
      order.push({ thread: t, step: p });
      if (search(mm)) return true;
      order.pop();
      pos[t] = p;
    }
    return false;
  };
  return search(model.clone()) ? order : undefined;
}

/** True if some interleaving of `threads` applied to clones of `model` yields `observed`. */
export function explainable<M extends Cloneable<M>, S, O>(
  model: M,
  threads: ReadonlyArray<ReadonlyArray<S>>,
  observed: ReadonlyArray<ReadonlyArray<O>>,
  apply: (m: M, s: S) => O,
  eq: (expected: O, observed: O) => boolean,
): boolean {
  return explain(model, threads, observed, apply, eq) !== undefined;
}

/** Structural equality of outcomes (bigint-aware); a convenient `eq`. */
export function sameOutcome(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(rb, k) && sameOutcome(ra[k], rb[k]));
}
