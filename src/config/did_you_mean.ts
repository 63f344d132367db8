/**
 * Suggests the intended word for a misspelt one, by edit distance.
 *
 * @example
 * ```ts
 * import { didYouMean } from "./did_you_mean.ts";
 * didYouMean("content_pth", ["content_path", "temp_path"]); // "content_path"
 * ```
 * @module
 */

/** Levenshtein distance (insert, delete, substitute), with adjacent transpositions costing 1. */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const prev = rows[i - 1]!;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      }
      row.push(best);
    }
    rows.push(row);
  }
  return rows[a.length]![b.length]!;
}

/**
 * The candidate closest to `word` when it is close enough (a third of the word's length, at least 2 edits,
 * case-insensitive), else the shortest candidate that contains `word` or is contained in it (`CAS_MAIN` →
 * `CAS_MAIN_STORE`), else `undefined`.
 */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  const lower = word.toLowerCase();
  const limit = Math.max(2, Math.floor(word.length / 3));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  if (bestDistance <= limit && bestDistance < lower.length) return best;
  if (lower.length < 3) return undefined;
  let contained: string | undefined;
  for (const candidate of candidates) {
    const c = candidate.toLowerCase();
    if (c.length >= 3 && (c.includes(lower) || lower.includes(c))) {
      if (
        contained === undefined ||
        Math.abs(c.length - lower.length) < Math.abs(contained.length - lower.length)
      ) {
        contained = candidate;
      }
    }
  }
  return contained;
}

/** `" (did you mean X?)"` or `""`. */
export function suggestion(word: string, candidates: Iterable<string>): string {
  const best = didYouMean(word, candidates);
  return best === undefined ? "" : ` (did you mean ${best}?)`;
}
