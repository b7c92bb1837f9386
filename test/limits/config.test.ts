import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readConfigFile, resolveConfig } from '../../src/server/config.js';
import { makeTempDir, removeTempDirs } from '../helpers/policies.js';

afterAll(removeTempDirs);

function configOf(text: string) {
  const file = join(makeTempDir(), 'verdict.yaml');
  writeFileSync(file, text);
  return resolveConfig([readConfigFile(file)]);
}

describe('the limits: block of the server configuration', () => {
  it('defaults to budgets in memory, and fills in what a Redis block leaves out', () => {
    expect(resolveConfig([]).limits).toEqual({ backend: 'memory', timeoutMs: 50, retryMs: 1000, replicas: 1, settleWithinMs: 3_600_000, loadStaleAfterMs: 60_000 });
    expect(configOf('limits:\n  backend: redis\n  redis: { url: "redis://10.0.0.5:6379" }\n  replicas: 4\n').limits).toMatchObject({ backend: 'redis', redis: { url: 'redis://10.0.0.5:6379' }, timeoutMs: 50, replicas: 4 });
  });

  it('refuses a Redis backend without a URL, a bad URL, a timeout out of range or an unknown key, naming it', () => {
    expect(() => configOf('limits:\n  backend: redis\n')).toThrow(/limits\.backend is redis but limits\.redis\.url is not set/);
    expect(() => configOf('limits:\n  redis: { url: "http://x:1" }\n')).toThrow(/limits\.redis\.url: expected a redis:\/\/ or rediss:\/\/ URL/);
    expect(() => configOf('limits:\n  timeoutMs: 0\n')).toThrow(/limits\.timeoutMs/);
    expect(() => configOf('limits:\n  backend: etcd\n')).toThrow(/limits\.backend is memory or redis/);
    expect(() => configOf('limits:\n  timeout: 50\n')).toThrow(/limits/);
  });
});
