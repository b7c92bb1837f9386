import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Builds dist/ once, before any test file runs (tests that start the real binary
 * must not rebuild it themselves: files rebuilt while another test spawns the
 * binary can be read half-written), and type-checks the tests with the sources,
 * since vitest itself only strips types.
 *
 * Every temporary file of the run (the tests', and those of the servers they start)
 * goes under one directory, removed when the run ends: TMPDIR is set before the test
 * processes are forked, and they and their children inherit it.
 */
export default function setup(): () => void {
  const root = join(import.meta.dirname, '..');
  const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, encoding: 'utf8', timeout: 300_000 });
  if (build.status !== 0 || !existsSync(join(root, 'dist', 'cli', 'main.js'))) {
    throw new Error(`the build failed, so the binary cannot be tested:\n${build.stdout}${build.stderr}`);
  }
  const typecheck = spawnSync('npx', ['tsc', '-p', 'tsconfig.test.json'], { cwd: root, encoding: 'utf8', timeout: 300_000 });
  if (typecheck.status !== 0) throw new Error(`the tests do not type-check:\n${typecheck.stdout}${typecheck.stderr}`);
  const runDir = mkdtempSync(join(tmpdir(), 'verdict-test-run-'));
  process.env.TMPDIR = runDir;
  return () => rmSync(runDir, { recursive: true, force: true, maxRetries: 3 });
}
