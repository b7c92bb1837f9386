import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientFor, startServer, unary, type Harness } from './support.js';

describe('grpc.health.v1.Health', () => {
  let harness: Harness;
  let client: grpc.Client;

  beforeAll(async () => {
    harness = await startServer();
    client = clientFor('grpc.health.v1.Health', harness.address);
  });
  afterAll(async () => {
    client.close();
    await harness.close();
  });

  it('reports the server and its services SERVING once started, NOT_FOUND for others', async () => {
    for (const service of ['', 'verdict.v1.Authorization', 'verdict.v1.Admin']) {
      const { response } = await unary<{ status: string }>(client, 'Check', { service });
      expect(response?.status, service).toBe('SERVING');
    }
    const { error } = await unary(client, 'Check', { service: 'no.such.Service' });
    expect(error?.code).toBe(grpc.status.NOT_FOUND);
  });

  it('follows setStatus in Check, List and Watch', async () => {
    const watch = (client as unknown as { Watch(r: object): grpc.ClientReadableStream<{ status: string }> }).Watch({
      service: 'verdict.v1.Authorization',
    });
    const seen: string[] = [];
    const changes: (() => void)[] = [];
    watch.on('data', (message: { status: string }) => {
      seen.push(message.status);
      changes.shift()?.();
    });
    watch.on('error', () => undefined);
    const next = (): Promise<void> => new Promise((resolve) => changes.push(resolve));

    await next();
    expect(seen).toEqual(['SERVING']);

    const notServing = next();
    harness.grpc.health.setStatus('verdict.v1.Authorization', 'NOT_SERVING');
    await notServing;
    expect((await unary<{ status: string }>(client, 'Check', { service: 'verdict.v1.Authorization' })).response?.status).toBe('NOT_SERVING');
    const list = await unary<{ statuses: Record<string, { status: string }> }>(client, 'List', {});
    expect(list.response?.statuses['verdict.v1.Authorization']).toEqual({ status: 'NOT_SERVING' });
    expect(list.response?.statuses['']).toEqual({ status: 'SERVING' });

    // Setting the same status again is not a change.
    harness.grpc.health.setStatus('verdict.v1.Authorization', 'NOT_SERVING');
    const serving = next();
    harness.grpc.health.setStatus('verdict.v1.Authorization', 'SERVING');
    await serving;
    expect(seen).toEqual(['SERVING', 'NOT_SERVING', 'SERVING']);
    watch.cancel();
  });

  it('tells a watcher of an unknown service SERVICE_UNKNOWN, then the status once it is set', async () => {
    const watch = (client as unknown as { Watch(r: object): grpc.ClientReadableStream<{ status: string }> }).Watch({ service: 'later' });
    watch.on('error', () => undefined);
    const seen: string[] = [];
    await new Promise<void>((resolve) => {
      watch.on('data', (message: { status: string }) => {
        seen.push(message.status);
        if (seen.length === 1) harness.grpc.health.setStatus('later', 'SERVING');
        if (seen.length === 2) resolve();
      });
    });
    expect(seen).toEqual(['SERVICE_UNKNOWN', 'SERVING']);
    watch.cancel();
  });
});

describe('health on shutdown', () => {
  it('reports NOT_SERVING to watchers and ends their streams, so shutdown need not wait them out', async () => {
    const harness = await startServer({}, { shutdownTimeoutMs: 5000 });
    const client = clientFor('grpc.health.v1.Health', harness.address);
    const watch = (client as unknown as { Watch(r: object): grpc.ClientReadableStream<{ status: string }> }).Watch({ service: '' });
    const seen: string[] = [];
    const ended = new Promise<void>((resolve) => {
      watch.on('status', () => resolve());
      watch.on('error', () => resolve());
    });
    await new Promise<void>((resolve) => watch.on('data', (m: { status: string }) => (seen.push(m.status), resolve())));
    const started = Date.now();
    await harness.close();
    await ended;
    expect(Date.now() - started).toBeLessThan(2000);
    expect(seen).toEqual(['SERVING', 'NOT_SERVING']);
    client.close();
  });
});
