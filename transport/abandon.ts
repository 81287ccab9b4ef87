/**
 * Waits that end when a run stops: `race(p)` is `p`, or ABANDONED once
 * `fire()` was called — whichever comes first. A Redis that never answers
 * then cannot hold a stopping run.
 *
 * Not `Promise.race([p, stopped])`: that adds a reaction to the long-lived
 * `stopped` promise on every call, which it keeps until the run stops — a
 * leak of one closure per Redis command for the length of the run. Here a
 * wait registers itself and unregisters when `p` settles.
 */
export const ABANDONED = Symbol('abandoned');

export class Abandon {
  #fired = false;
  readonly #waiters = new Set<() => void>();

  get fired(): boolean {
    return this.#fired;
  }

  /** Every wait in progress, and every later one, gives ABANDONED. */
  fire(): void {
    if (this.#fired) return;
    this.#fired = true;
    for (const w of this.#waiters) w();
    this.#waiters.clear();
  }

  race<T>(p: Promise<T>): Promise<T | typeof ABANDONED> {
    if (this.#fired) {
      p.catch(() => undefined); // its outcome no longer matters, its rejection is handled
      return Promise.resolve(ABANDONED);
    }
    return new Promise<T | typeof ABANDONED>((resolve, reject) => {
      const w = (): void => resolve(ABANDONED);
      this.#waiters.add(w);
      p.then(
        (v) => {
          this.#waiters.delete(w);
          resolve(v);
        },
        (e: unknown) => {
          this.#waiters.delete(w);
          reject(e);
        },
      );
    });
  }

  /** Waiting races now (tests: nothing is left behind). */
  get waiting(): number {
    return this.#waiters.size;
  }
}
