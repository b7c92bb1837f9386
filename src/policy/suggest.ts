/** A name to suggest for a misspelt one: the closest by edit distance, when close enough. */
export function didYouMean(name: string, known: Iterable<string>): string {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? `; did you mean "${best}"?` : '';
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}


/** Names as a problem lists them: a list of thousands (a schema may declare 100,000 attributes) is cut short. */
export function someOf(names: Iterable<string>, most = 10): string {
  const shown: string[] = [];
  let count = 0;
  for (const name of names) if (count++ < most) shown.push(name);
  return count <= most ? shown.join(', ') : `${shown.join(', ')}, … (${count} in all)`;
}
