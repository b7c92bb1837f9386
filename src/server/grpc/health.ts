// grpc.health.v1.Health, ended cleanly at shutdown.

import {
  status,
  type Server,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { serviceDefinition } from './descriptors.js';
import type { HealthCheckRequest__Output } from './generated/grpc/health/v1/HealthCheckRequest.js';
import type { HealthCheckResponse } from './generated/grpc/health/v1/HealthCheckResponse.js';
import type { HealthListRequest__Output } from './generated/grpc/health/v1/HealthListRequest.js';
import type { HealthListResponse } from './generated/grpc/health/v1/HealthListResponse.js';

export const HEALTH_SERVICE = 'grpc.health.v1.Health';

export type ServingStatus = 'SERVING' | 'NOT_SERVING';

/**
 * grpc.health.v1.Health: Check, List and Watch over a status per service name
 * ('' is the server as a whole).
 *
 * Written here rather than taken from `grpc-health-check`: that package keeps
 * every Watch stream open with no way to end it, so a graceful shutdown would
 * always wait out its timeout while a load balancer watches; ending the stream
 * from outside would make its next status write crash the process.
 */
export class HealthService {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watches = new Map<string, Set<ServerWritableStream<HealthCheckRequest__Output, HealthCheckResponse>>>();
  private closed = false;

  /** Sets a service's status and tells every watcher of it. */
  setStatus(service: string, serving: ServingStatus): void {
    if (this.statuses.get(service) === serving) return;
    this.statuses.set(service, serving);
    for (const call of this.watches.get(service) ?? []) call.write({ status: serving });
  }

  getStatus(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /**
   * For shutdown: reports every service NOT_SERVING to its watchers, then ends
   * their streams so in-flight work is all the server waits for. Statuses can
   * still be set and checked afterwards; nobody is watching any more.
   */
  close(): void {
    for (const service of this.statuses.keys()) this.setStatus(service, 'NOT_SERVING');
    this.closed = true;
    for (const calls of this.watches.values()) for (const call of calls) call.end();
    this.watches.clear();
  }

  addTo(server: Server): void {
    server.addService(serviceDefinition(HEALTH_SERVICE), {
      Check: (call: ServerUnaryCall<HealthCheckRequest__Output, HealthCheckResponse>, callback: sendUnaryData<HealthCheckResponse>) => {
        const current = this.statuses.get(call.request.service);
        if (current) callback(null, { status: current });
        else callback({ code: status.NOT_FOUND, details: `unknown service: ${call.request.service}` });
      },
      List: (_call: ServerUnaryCall<HealthListRequest__Output, HealthListResponse>, callback: sendUnaryData<HealthListResponse>) => {
        const statuses: Record<string, HealthCheckResponse> = {};
        for (const [service, current] of this.statuses) statuses[service] = { status: current };
        callback(null, { statuses });
      },
      Watch: (call: ServerWritableStream<HealthCheckRequest__Output, HealthCheckResponse>) => this.watch(call),
    });
  }

  private watch(call: ServerWritableStream<HealthCheckRequest__Output, HealthCheckResponse>): void {
    const service = call.request.service;
    call.write({ status: this.statuses.get(service) ?? 'SERVICE_UNKNOWN' });
    if (this.closed) {
      call.end();
      return;
    }
    let calls = this.watches.get(service);
    if (!calls) this.watches.set(service, (calls = new Set()));
    calls.add(call);
    const forget = (): void => void calls.delete(call);
    call.on('cancelled', forget);
    call.on('error', forget);
  }
}
