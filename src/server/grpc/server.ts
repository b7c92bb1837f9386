// The gRPC server: verdict's services, Envoy's ext_authz, health and reflection on
// one port, the direct lane for the decision methods, message size limits, and a
// shutdown with a grace.

import {
  Server,
  ServerCredentials,
  status,
  type MethodDefinition,
  type ServerOptions,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { GatewayAdapter } from '../../gateway/adapter.js';
import { TrustAnchors, type LapsedConnection } from '../../authn/certificate-lapse.js';
import { closeSessionsAtCertificateExpiry } from '../certificate-expiry.js';
import type { Server as NetServer } from 'node:net';
import { capConnectionsPerClient, perClientCap } from '../connection-caps.js';
import { InFlightCalls, type UnaryCall, type UnaryHandler } from './call.js';
import { DirectLane, type DirectLaneState } from './direct-lane.js';
import { StatusError } from './status.js';
import { DEFAULT_STREAM_GUARD_LIMITS, StreamGuard, type StreamGuardCounts, type StreamGuardLimits } from './stream-guard.js';
import { DEFAULT_UNREAD_ANSWER_LIMITS, UnreadAnswers, type UnreadAnswerCounts, type UnreadAnswerLimits, type UnreadAnswersClosed } from './unread-answers.js';
import { adminService, ADMIN_SERVICE } from './admin-service.js';
import { authorizationService, AUTHORIZATION_SERVICE } from './authorization-service.js';
import { indexDescriptorSet } from './descriptor-index.js';
import { descriptorSet, messageType, serviceDefinition } from './descriptors.js';
import { readWithin, type AttributeCut, type WalkBudget } from './once-fields.js';
import { cutAttributes, markCuts } from './attribute-cuts.js';
import { DEFAULT_REQUEST_LIMITS, type RequestLimits } from '../../decide/index.js';
import { unreadableRawHeader } from './convert/envoy.js';
import { EXT_AUTHZ_SERVICE, extAuthzService } from './ext-authz-service.js';
import type { AdminHandlers, AuthorizationHandlers } from './handlers.js';
import { HEALTH_SERVICE, HealthService } from './health.js';
import { MalformedMessage, OverLimitMessage, OversizedMessage } from './oversized.js';
import { REFLECTION_SERVICES, addReflection } from './reflection.js';

export interface GrpcServerOptions {
  /** Largest request message accepted, in bytes; larger ones get RESOURCE_EXHAUSTED from grpc-js. Default 1 MiB. */
  readonly maxReceiveMessageBytes?: number;
  /** Most items in one CheckBatch. Default 1000. */
  readonly maxBatchItems?: number;
  /** Most headers, or entries of any other map or list, in one Envoy ext_authz CheckRequest. Default 4096. */
  readonly maxExtAuthzEntries?: number;
  /**
   * The pipeline's request limits (decide/bounds.ts): a message holding more values or
   * list items than they allow is not decoded in full (once-fields.ts). Default: the
   * defaults there.
   */
  readonly requestLimits?: RequestLimits;
  /** How long shutdown() waits for in-flight calls before cutting them off, in ms. Default 10 s. */
  readonly shutdownTimeoutMs?: number;
  /** The caller recorded with each decision. Default: the peer address (`ip:port`). */
  readonly callerOf?: (call: UnaryCall) => string;
  /** Receives unexpected errors (the caller only sees INTERNAL), e.g. to log them. */
  readonly onInternalError?: (error: unknown, method: string) => void;
  /** Further grpc-js channel options, e.g. keepalive settings. */
  readonly channelOptions?: ServerOptions;
  /** Streams per connection, and how long and how large unfinished request bodies may be (stream-guard.ts). */
  readonly streamLimits?: StreamGuardLimits;
  /** The most connections held at once; more are closed as they arrive. Default 4096. */
  readonly maxConnections?: number;
  /** The most of those one client address may hold; null or absent: a quarter of maxConnections. */
  readonly maxConnectionsPerClient?: number | null;
  /** How many answer bytes callers that do not read them may hold, and for how long (unread-answers.ts). */
  readonly unreadAnswerLimits?: UnreadAnswerLimits;
  /** Told of each connection closed for answers it did not read, e.g. to log it. */
  readonly onUnreadAnswersClosed?: (closed: UnreadAnswersClosed) => void;
  /** Told of each connection closed because the client certificate it was opened with expired (the server logs it). */
  readonly onCertificateLapsed?: (connection: LapsedConnection) => void;
  /** The CA bundle client certificates are verified against (`tls.clientCa`): where a chain's expiry is followed to. */
  readonly clientCa?: Buffer | null;
}

/** What the gRPC services answer with. */
export interface GrpcServices {
  /** verdict.v1.Authorization: the decide core. */
  readonly authorization: AuthorizationHandlers;
  /** verdict.v1.Admin. */
  readonly admin: AdminHandlers;
  /**
   * Envoy's ext_authz (envoy.service.auth.v3.Authorization), when gateways are
   * served: built with the same caller and error reporting as verdict's own
   * services, listed by reflection and reported by health like them.
   */
  readonly extAuthz?: Pick<GatewayAdapter, 'decide' | 'refuse'>;
}

export interface GrpcServer {
  readonly server: Server;
  /** Health statuses; '' and every verdict service start SERVING when the server starts. */
  readonly health: HealthService;
  /** The direct lane for the decision methods (direct-lane.ts): whether start() could install it, and the calls it took. */
  readonly directLane: DirectLaneState;
  /** The streams ended for a request body too slow or too large to hold (stream-guard.ts). */
  readonly streamGuard: StreamGuardCounts;
  /** The connections closed for answers they did not read, and the unsent bytes held now (unread-answers.ts). */
  readonly unreadAnswers: UnreadAnswerCounts;
  /** Binds and starts serving; resolves to the port bound (useful with port 0). */
  start(host: string, port: number, credentials?: ServerCredentials): Promise<number>;
  /**
   * Stops accepting calls, reports NOT_SERVING to health watchers, lets in-flight
   * calls finish, and after `shutdownTimeoutMs` answers the calls still running
   * UNAVAILABLE and closes the connections.
   */
  shutdown(): Promise<void>;
}

export const DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 1024 * 1024;

/** The size past which a message is refused unread: four times the limit, at least 1 MiB more. */
export function hardCeiling(limit: number): number {
  return Math.max(limit * 4, limit + 1024 * 1024);
}

/**
 * Wraps each method's deserializer so a message over `limit` bytes arrives as an
 * OversizedMessage, and one that does not decode as a MalformedMessage (grpc-js
 * would answer INTERNAL and record nothing), as does one that gives a field or a map
 * key twice or that the walk cannot follow (once-fields.ts), or that decodes but that `unreadable` finds a reason to refuse.
 * With a budget, a repeated field with more elements than any request may hold makes
 * it an OverLimitMessage, and attributes over the request limits are cut out before
 * decoding (attribute-cuts.ts) for the conversion to refuse what held them.
 */
function withSizeLimit(definition: ServiceDefinition, limit: number, unreadable: (message: never) => string | null = () => null, budget: WalkBudget | null = null): ServiceDefinition {
  const wrapped: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize;
    // verdict's request types are named after their methods: /verdict.v1.Authorization/Check takes verdict.v1.CheckRequest.
    const service = method.path.split('/')[1] ?? '';
    const type = `${service.slice(0, service.lastIndexOf('.') + 1)}${name}Request`;
    const reflected = messageType(type);
    // One per method, used by one message at a time: the cuts list is emptied after each.
    const within = budget === null ? null : { budget, cuts: [] as AttributeCut[] };
    wrapped[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        if (bytes.length > limit) return new OversizedMessage(bytes.length, limit);
        const once = reflected === null ? null : readWithin(bytes, reflected, within);
        const cuts = within === null || within.cuts.length === 0 ? null : within.cuts.splice(0);
        if (once?.kind === 'too_many') return new OverLimitMessage(once.field ?? '(message)', once.reason);
        // Not decoded: past bytes the walk cannot follow nothing is measured, and half a million list items took 0.15 s to decode.
        if (once !== null) return new MalformedMessage(type, bytes.length, new RangeError(once.reason));
        let readable = bytes;
        if (cuts !== null) {
          const cut = cutAttributes(bytes, cuts);
          if (cut === null) return new MalformedMessage(type, bytes.length, new RangeError('its attributes over the request limits could not be cut out'));
          readable = cut;
        }
        let message: unknown;
        try {
          message = decode(readable);
        } catch (error) {
          return new MalformedMessage(type, bytes.length, error);
        }
        if (cuts !== null) markCuts(message, cuts);
        const reason = unreadable(message as never);
        return reason === null ? message : new MalformedMessage(type, bytes.length, new RangeError(reason));
      },
    };
  }
  return wrapped as ServiceDefinition;
}
const DEFAULT_MAX_BATCH_ITEMS = 1000;

/**
 * Most headers (map entries, or `header_map` values) in one Envoy CheckRequest, and
 * in any other map or repeated message of it, unless configured
 * (requestLimits.maxExtAuthzEntries). Envoy sends at most 100 headers unless told
 * otherwise; 120,000 empty ones (1.4 MB) took about 0.17 s to walk and decode.
 */
export const DEFAULT_MAX_EXT_AUTHZ_ENTRIES = 4096;

/** How many times maxExtAuthzEntries one Envoy CheckRequest may hold in all its maps and lists. */
const EXT_AUTHZ_TOTAL_ENTRIES_FACTOR = 4;

/** ext_authz requests carry no verdict attributes: only their maps and lists are counted. */
function extAuthzBudget(maxEntries: number): WalkBudget {
  return {
    maxValues: Infinity,
    maxListLength: Infinity,
    maxItems: maxEntries,
    tooManyItems: `more than ${maxEntries} entries, over the limit of ${maxEntries} per request (requestLimits.maxExtAuthzEntries)`,
    // Envoy's headers, metadata and context together: each list within maxEntries, sixty-three of them were 258,000 values to decode.
    maxTotalItems: EXT_AUTHZ_TOTAL_ENTRIES_FACTOR * maxEntries,
    tooManyTotalItems: `more than ${EXT_AUTHZ_TOTAL_ENTRIES_FACTOR * maxEntries} entries of maps and lists in all, over the limit of ${EXT_AUTHZ_TOTAL_ENTRIES_FACTOR} × requestLimits.maxExtAuthzEntries per request`,
  };
}
const DEFAULT_MAX_CONNECTIONS = 4096;
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;

/**
 * The gRPC face of verdict: verdict.v1.Authorization and Admin, Envoy's ext_authz
 * when asked for, grpc.health.v1.Health, and server reflection (v1 and v1alpha)
 * from the committed descriptor set.
 *
 * @example
 * const grpc = createGrpcServer({ authorization: pipeline, admin }, { maxReceiveMessageBytes: 4 << 20 });
 * const port = await grpc.start('127.0.0.1', 0);
 * process.once('SIGTERM', () => void grpc.shutdown());
 */
export function createGrpcServer(services: GrpcServices, options: GrpcServerOptions = {}): GrpcServer {
  const limit = options.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE_MESSAGE_BYTES;
  const streamLimits = options.streamLimits ?? DEFAULT_STREAM_GUARD_LIMITS;
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const requestLimits = options.requestLimits ?? DEFAULT_REQUEST_LIMITS;
  const maxBatchItems = options.maxBatchItems ?? DEFAULT_MAX_BATCH_ITEMS;
  const unreadAnswers = new UnreadAnswers(options.unreadAnswerLimits ?? DEFAULT_UNREAD_ANSWER_LIMITS, options.onUnreadAnswersClosed);
  const server = new Server({
    // channelz keeps per-call statistics for a debugging service verdict does not expose; about 5% of a check's CPU.
    'grpc.enable_channelz': 0,
    ...options.channelOptions,
    // Messages between the limit and this ceiling are recorded, then refused (see OversizedMessage);
    // past the ceiling grpc-js refuses them with RESOURCE_EXHAUSTED before they cost more memory.
    'grpc.max_receive_message_length': hardCeiling(limit),
    'grpc.max_concurrent_streams': streamLimits.maxStreamsPerConnection,
  });
  const guard = new StreamGuard(streamLimits);
  const inFlight = new InFlightCalls();
  const callOptions = {
    callerOf: options.callerOf ?? ((call: UnaryCall) => call.getPeer()),
    report: options.onInternalError ?? (() => undefined),
    inFlight,
  };
  const direct = new DirectLane(hardCeiling(limit), guard, unreadAnswers);
  /** A decision service: registered with grpc-js, and its unary methods put on the direct lane too. */
  const addDecisionService = (definition: ServiceDefinition, implementation: UntypedServiceImplementation): void => {
    server.addService(definition, implementation);
    for (const [name, method] of Object.entries(definition)) {
      if (method.requestStream || method.responseStream) continue;
      direct.add({ definition: method as MethodDefinition<unknown, unknown>, handler: implementation[name] as UnaryHandler<unknown, unknown> });
    }
  };
  addDecisionService(
    withSizeLimit(serviceDefinition(AUTHORIZATION_SERVICE), limit, undefined, {
      maxValues: requestLimits.maxValues,
      maxListLength: requestLimits.maxListLength,
      maxItems: maxBatchItems,
      tooManyItems: `more than ${maxBatchItems} items, over the limit of ${maxBatchItems} per batch`,
    }),
    authorizationService(services.authorization, {
      ...callOptions,
      maxBatchItems,
    }),
  );
  server.addService(serviceDefinition(ADMIN_SERVICE), adminService(services.admin, callOptions));
  const served: string[] = [AUTHORIZATION_SERVICE, ADMIN_SERVICE];
  if (services.extAuthz) {
    addDecisionService(withSizeLimit(serviceDefinition(EXT_AUTHZ_SERVICE), limit, unreadableRawHeader, extAuthzBudget(options.maxExtAuthzEntries ?? DEFAULT_MAX_EXT_AUTHZ_ENTRIES)), extAuthzService(services.extAuthz, callOptions));
    served.push(EXT_AUTHZ_SERVICE);
  }
  const health = new HealthService();
  health.addTo(server);
  addReflection(server, indexDescriptorSet(descriptorSet), [...served, HEALTH_SERVICE]);
  // Their clients keep the stream open between messages by design: the guard times each message, not the body.
  for (const name of [...served, HEALTH_SERVICE, ...REFLECTION_SERVICES]) {
    for (const method of Object.values(serviceDefinition(name))) if (method.requestStream) guard.streamsRequests(method.path);
  }

  let stopping: Promise<void> | undefined;
  const timeoutMs = options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;

  return {
    server,
    health,
    directLane: direct,
    streamGuard: guard,
    unreadAnswers,
    start(host, port, credentials = ServerCredentials.createInsecure()) {
      // An IPv6 literal needs brackets to be told apart from the port.
      const address = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
      return new Promise<number>((resolve, reject) => {
        server.bindAsync(address, credentials, (error, bound) => {
          if (error) {
            reject(error);
            return;
          }
          // Idle-connection tracking counts streams inside grpc-js's own handler; with it on, every call stays there.
          const lane = options.channelOptions?.['grpc.max_connection_idle_ms'] === undefined && direct.install(server);
          // With the lane, it hands the guard what it does not answer; without, the guard listens for every stream itself.
          const http2Servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
          if (http2Servers instanceof Map) {
            guard.install(http2Servers.keys(), !lane);
            unreadAnswers.install(http2Servers.keys());
            closeSessionsAtCertificateExpiry(http2Servers.keys(), options.onCertificateLapsed ?? (() => undefined), { callsChecked: lane, anchors: TrustAnchors.fromPem(options.clientCa ?? null) });
            for (const listener of http2Servers.keys() as IterableIterator<NetServer>) {
              listener.maxConnections = maxConnections;
              capConnectionsPerClient(listener, perClientCap(maxConnections, options.maxConnectionsPerClient));
            }
          }
          for (const service of ['', ...served]) {
            if (health.getStatus(service) === undefined) health.setStatus(service, 'SERVING');
          }
          resolve(bound);
        });
      });
    },
    shutdown() {
      stopping ??= new Promise<void>((resolve) => {
        health.close();
        guard.stop();
        unreadAnswers.stop();
        const timer = setTimeout(() => {
          // Past the grace: whatever is still being decided is told so, then the connections go.
          inFlight.endAll(new StatusError(status.UNAVAILABLE, 'verdict is shutting down and could not finish this check in time; ask another replica'));
          server.forceShutdown();
          resolve();
        }, timeoutMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return stopping;
    },
  };
}
