import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { LOADER_OPTIONS } from '../../src/server/grpc/descriptors.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/gen-types.sh', import.meta.url));
const COMMITTED = fileURLToPath(new URL('../../src/server/grpc/generated', import.meta.url));

/** Every file under `dir`, by path relative to it. */
function filesOf(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (at: string): void => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      else files.set(relative(dir, path), readFileSync(path, 'utf8'));
    }
  };
  walk(dir);
  return files;
}

/** The proto-loader-gen-types flags that say the same as the loader's options. */
function flagsFor(options: Readonly<Record<string, unknown>>): string[] {
  return Object.entries(options)
    .map(([name, value]) => (value === true ? `--${name}` : typeof value === 'function' ? `--${name}=${value.name}` : `--${name}=${String(value)}`))
    .sort();
}

/** The flags the script passes that change how messages look (not where files go). */
const SHAPE_FLAGS = /--(keepCase|longs|enums|bytes|defaults|arrays|objects|oneofs|json)\b(=\w+)?/g;

describe('the generated message types', () => {
  it('are exactly what scripts/gen-types.sh makes of proto/', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-gen-types-'));
    try {
      execFileSync(SCRIPT, [join(dir, 'generated')], { stdio: 'pipe' });
      const fresh = filesOf(join(dir, 'generated'));
      const committed = filesOf(COMMITTED);
      const stale = [...new Set([...fresh.keys(), ...committed.keys()])].filter((name) => fresh.get(name) !== committed.get(name)).sort();
      expect(stale, `src/server/grpc/generated is stale (${stale.join(', ')}): run scripts/gen-types.sh and commit the result`).toEqual([]);
      expect(committed.size).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('are generated with the options the server loads messages with', () => {
    const script = readFileSync(SCRIPT, 'utf8');
    expect([...script.matchAll(SHAPE_FLAGS)].map((m) => m[0]).sort()).toEqual(flagsFor(LOADER_OPTIONS));
  });
});
