import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { folderCycles, layeringViolations, readImports, ROOT, type Import } from './import-graph.js';

/**
 * Which folders each folder of src/ may import. Arrows point one way: cli and
 * server -> gateway -> decide -> (engine, limits, decisions, analysis) -> policy;
 * authn serves gateway and server (and cli's key commands); audit works on the
 * log offline. Files directly under src/ (types.ts, errors.ts) are for everyone.
 */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  cli: ['server', 'gateway', 'decide', 'engine', 'limits', 'decisions', 'audit', 'analysis', 'authn', 'policy'],
  server: ['gateway', 'decide', 'engine', 'limits', 'decisions', 'audit', 'analysis', 'authn', 'policy'],
  gateway: ['decide', 'authn', 'policy'],
  decide: ['engine', 'limits', 'decisions', 'analysis', 'policy'],
  analysis: ['engine', 'decisions', 'policy'],
  engine: ['policy'],
  limits: ['policy'],
  audit: ['decisions'],
  decisions: [],
  authn: [],
  policy: [],
};

const REPO = join(import.meta.dirname, '..', '..');

describe('the import graph of src/', () => {
  const imports = readImports(REPO);

  it('is read: every folder shows up, with the imports between them', () => {
    expect(imports.length).toBeGreaterThan(100);
    expect(imports).toContainEqual(expect.objectContaining({ file: 'src/gateway/adapter.ts', target: 'src/decide/index.ts' }));
  });

  it('has each folder import only the folders the layering table allows', () => {
    expect(layeringViolations(imports, ALLOWED)).toEqual([]);
  });

  it('has no folders that import each other, directly or round a longer loop', () => {
    expect(folderCycles(imports)).toEqual([]);
  });

  it('follows a table that is itself one-way', () => {
    const asImports: Import[] = Object.entries(ALLOWED).flatMap(([from, tos]) =>
      tos.map((to) => ({ file: `src/${from}/x.ts`, line: 1, specifier: `../${to}/x.js`, target: `src/${to}/x.ts` })),
    );
    expect(folderCycles(asImports)).toEqual([]);
  });
});

describe('the checks themselves', () => {
  const imp = (file: string, target: string, line = 1): Import => ({ file, line, specifier: `./${target}`, target });

  it('name the file, line and import that breaks the table', () => {
    const problems = layeringViolations(
      [imp('src/decide/pipeline.ts', 'src/server/app.ts', 7), imp('src/gateway/a.ts', 'src/types.ts'), imp('src/gateway/a.ts', 'src/gateway/b.ts')],
      ALLOWED,
    );
    expect(problems).toEqual([
      'src/decide/pipeline.ts:7 imports ./src/server/app.ts: decide may not import server (decide may import: engine, limits, decisions, analysis, policy)',
    ]);
  });

  it('refuse a folder missing from the table, and a root file that imports a folder', () => {
    expect(layeringViolations([imp('src/newthing/a.ts', 'src/policy/b.ts'), imp('src/newthing/c.ts', 'src/engine/d.ts')], ALLOWED)).toEqual([
      'src/newthing/ is not in the layering table: add it with the folders it may import (first seen: src/newthing/a.ts:1 imports ./src/policy/b.ts)',
    ]);
    expect(layeringViolations([imp('src/types.ts', 'src/policy/b.ts')], ALLOWED)).toHaveLength(1);
    expect(ROOT).toBe('(src)');
  });

  it('find a cycle of folders and show the import of each edge', () => {
    const cycles = folderCycles([
      imp('src/server/app.ts', 'src/gateway/adapter.ts', 3),
      imp('src/gateway/adapter.ts', 'src/decide/index.ts', 2),
      imp('src/decide/pipeline.ts', 'src/server/grpc/x.ts', 9),
      imp('src/engine/a.ts', 'src/policy/b.ts'),
    ]);
    expect(cycles).toEqual([
      'folders decide, gateway, server import each other: decide -> server (src/decide/pipeline.ts:9 imports ./src/server/grpc/x.ts); gateway -> decide (src/gateway/adapter.ts:2 imports ./src/decide/index.ts); server -> gateway (src/server/app.ts:3 imports ./src/gateway/adapter.ts)',
    ]);
  });
});
