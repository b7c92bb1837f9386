// The command line of a benchmark that may compare this build with another: `--baseline DIR`
// (a checkout of verdict with dist/ built), whole-number options and plain switches. A wrong
// argument ends the script with one line naming it and what is accepted (exit 2).
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

/**
 * @param {string} script the script's path as printed in errors, e.g. 'bench/gc.mjs'
 * @param {{ numbers?: Record<string, number | null>, switches?: string[] }} spec
 *   numbers: each option's default (null: absent unless given); every one is a whole number of at least 1
 * @returns {{ baseline: string | null } & Record<string, number | boolean | null>}
 */
export function benchArgs(script, { numbers = {}, switches = [] } = {}, argv = process.argv.slice(2)) {
  const accepted = ['--baseline DIR', ...Object.keys(numbers).map((name) => `--${name} N`), ...switches.map((name) => `--${name}`)].join(', ');
  const fail = (message) => {
    console.error(`${script}: ${message}; use ${accepted}`);
    process.exit(2);
  };
  const options = { baseline: { type: 'string' } };
  for (const name of Object.keys(numbers)) options[name] = { type: 'string' };
  for (const name of switches) options[name] = { type: 'boolean' };
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (error) {
    fail(error.message);
  }
  const result = { baseline: null };
  for (const [name, fallback] of Object.entries(numbers)) {
    if (values[name] === undefined) {
      result[name] = fallback;
      continue;
    }
    const value = Number(values[name]);
    if (!Number.isInteger(value) || value < 1) fail(`--${name} needs a whole number of at least 1, not ${values[name]}`);
    result[name] = value;
  }
  for (const name of switches) result[name] = values[name] === true;
  if (values.baseline !== undefined) {
    result.baseline = path.resolve(values.baseline);
    if (!fs.existsSync(path.join(result.baseline, 'dist', 'cli', 'main.js'))) {
      fail(`--baseline ${result.baseline} needs a checkout of verdict with dist/ built (npm ci && npx tsc -p tsconfig.json)`);
    }
  }
  return result;
}
