// The gRPC transport's public face.

export { createGrpcServer, DEFAULT_MAX_RECEIVE_MESSAGE_BYTES } from './server.js';
export type { GrpcServer, GrpcServerOptions, GrpcServices } from './server.js';
export type { AdminHandlers, AuthorizationHandlers } from './handlers.js';
export type { HealthService, ServingStatus } from './health.js';
export { AUTHORIZATION_SERVICE, DECISION_ID_TRAILER } from './authorization-service.js';
export { ADMIN_SERVICE } from './admin-service.js';
export { EXT_AUTHZ_SERVICE } from './ext-authz-service.js';
export { HEALTH_SERVICE } from './health.js';
