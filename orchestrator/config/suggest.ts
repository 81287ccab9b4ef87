/**
 * "did you mean …?" for misspelt keys and names: the closest candidate by
 * optimal-string-alignment distance (a transposition costs 1) when it is at
 * most 2 and less than half the word, or a candidate the word is a prefix of
 * (or that is a prefix of the word), case-insensitively.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  const at = (i: number, j: number): number => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, at(i - 2, j - 2) + 1);
      d[i * cols + j] = best;
    }
  }
  return at(a.length, b.length);
}

export function closest(word: string, candidates: Iterable<string>): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const cand of candidates) {
    const c = cand.toLowerCase();
    if (c === w) return cand;
    const dist = editDistance(w, c);
    const near = dist <= 2 && dist * 2 < Math.max(w.length, 2);
    const prefix = w.length >= 3 && (c.startsWith(w) || w.startsWith(c));
    // Prefix matches rank after close edits of the same distance.
    const score = near ? dist : prefix ? 2.5 : Number.POSITIVE_INFINITY;
    if (score < bestScore) {
      bestScore = score;
      best = cand;
    }
  }
  return best;
}

/** `; did you mean `x`?` or the empty string. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const c = closest(word, candidates);
  return c === undefined ? '' : `; did you mean \`${c}\`?`;
}
