export { createGrpcServer, DEFAULT_MAX_RECEIVE_MESSAGE_BYTES } from './server.js';
export type { GrpcServer, GrpcServerOptions } from './server.js';
export type {
  AdminHandlers,
  AuthorizationHandlers,
  CallMeta,
  CheckResult,
  DecisionQuery,
  GrpcHandlers,
  PolicyStatus,
  ReloadOutcome,
} from './handlers.js';
export { InvalidRequest, RequestFieldError } from './invalid-request.js';
export type { CheckInput } from './invalid-request.js';
export type { HealthService, ServingStatus } from './health.js';
export { AUTHORIZATION_SERVICE, DECISION_ID_TRAILER } from './authorization-service.js';
export { ADMIN_SERVICE } from './admin-service.js';
export { HEALTH_SERVICE } from './health.js';
