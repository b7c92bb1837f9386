// Original file: proto/verdict/v1/authorization.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { CheckBatchRequest as _verdict_v1_CheckBatchRequest, CheckBatchRequest__Output as _verdict_v1_CheckBatchRequest__Output } from '../../verdict/v1/CheckBatchRequest.js';
import type { CheckBatchResponse as _verdict_v1_CheckBatchResponse, CheckBatchResponse__Output as _verdict_v1_CheckBatchResponse__Output } from '../../verdict/v1/CheckBatchResponse.js';
import type { CheckRequest as _verdict_v1_CheckRequest, CheckRequest__Output as _verdict_v1_CheckRequest__Output } from '../../verdict/v1/CheckRequest.js';
import type { CheckResponse as _verdict_v1_CheckResponse, CheckResponse__Output as _verdict_v1_CheckResponse__Output } from '../../verdict/v1/CheckResponse.js';
import type { SettleRequest as _verdict_v1_SettleRequest, SettleRequest__Output as _verdict_v1_SettleRequest__Output } from '../../verdict/v1/SettleRequest.js';
import type { SettleResponse as _verdict_v1_SettleResponse, SettleResponse__Output as _verdict_v1_SettleResponse__Output } from '../../verdict/v1/SettleResponse.js';

export interface AuthorizationClient extends grpc.Client {
  Check(argument: _verdict_v1_CheckRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_CheckResponse__Output>): grpc.ClientUnaryCall;
  Check(argument: _verdict_v1_CheckRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_CheckResponse__Output>): grpc.ClientUnaryCall;
  Check(argument: _verdict_v1_CheckRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_CheckResponse__Output>): grpc.ClientUnaryCall;
  Check(argument: _verdict_v1_CheckRequest, callback: grpc.requestCallback<_verdict_v1_CheckResponse__Output>): grpc.ClientUnaryCall;
  check(argument: _verdict_v1_CheckRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_CheckResponse__Output>): grpc.ClientUnaryCall;
  check(argument: _verdict_v1_CheckRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_CheckResponse__Output>): grpc.ClientUnaryCall;
  check(argument: _verdict_v1_CheckRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_CheckResponse__Output>): grpc.ClientUnaryCall;
  check(argument: _verdict_v1_CheckRequest, callback: grpc.requestCallback<_verdict_v1_CheckResponse__Output>): grpc.ClientUnaryCall;
  
  CheckBatch(argument: _verdict_v1_CheckBatchRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_CheckBatchResponse__Output>): grpc.ClientUnaryCall;
  CheckBatch(argument: _verdict_v1_CheckBatchRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_CheckBatchResponse__Output>): grpc.ClientUnaryCall;
  CheckBatch(argument: _verdict_v1_CheckBatchRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_CheckBatchResponse__Output>): grpc.ClientUnaryCall;
  CheckBatch(argument: _verdict_v1_CheckBatchRequest, callback: grpc.requestCallback<_verdict_v1_CheckBatchResponse__Output>): grpc.ClientUnaryCall;
  checkBatch(argument: _verdict_v1_CheckBatchRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_CheckBatchResponse__Output>): grpc.ClientUnaryCall;
  checkBatch(argument: _verdict_v1_CheckBatchRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_CheckBatchResponse__Output>): grpc.ClientUnaryCall;
  checkBatch(argument: _verdict_v1_CheckBatchRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_CheckBatchResponse__Output>): grpc.ClientUnaryCall;
  checkBatch(argument: _verdict_v1_CheckBatchRequest, callback: grpc.requestCallback<_verdict_v1_CheckBatchResponse__Output>): grpc.ClientUnaryCall;
  
  Settle(argument: _verdict_v1_SettleRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_SettleResponse__Output>): grpc.ClientUnaryCall;
  Settle(argument: _verdict_v1_SettleRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_SettleResponse__Output>): grpc.ClientUnaryCall;
  Settle(argument: _verdict_v1_SettleRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_SettleResponse__Output>): grpc.ClientUnaryCall;
  Settle(argument: _verdict_v1_SettleRequest, callback: grpc.requestCallback<_verdict_v1_SettleResponse__Output>): grpc.ClientUnaryCall;
  settle(argument: _verdict_v1_SettleRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_SettleResponse__Output>): grpc.ClientUnaryCall;
  settle(argument: _verdict_v1_SettleRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_SettleResponse__Output>): grpc.ClientUnaryCall;
  settle(argument: _verdict_v1_SettleRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_SettleResponse__Output>): grpc.ClientUnaryCall;
  settle(argument: _verdict_v1_SettleRequest, callback: grpc.requestCallback<_verdict_v1_SettleResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface AuthorizationHandlers extends grpc.UntypedServiceImplementation {
  Check: grpc.handleUnaryCall<_verdict_v1_CheckRequest__Output, _verdict_v1_CheckResponse>;
  
  CheckBatch: grpc.handleUnaryCall<_verdict_v1_CheckBatchRequest__Output, _verdict_v1_CheckBatchResponse>;
  
  Settle: grpc.handleUnaryCall<_verdict_v1_SettleRequest__Output, _verdict_v1_SettleResponse>;
  
}

export interface AuthorizationDefinition extends grpc.ServiceDefinition {
  Check: MethodDefinition<_verdict_v1_CheckRequest, _verdict_v1_CheckResponse, _verdict_v1_CheckRequest__Output, _verdict_v1_CheckResponse__Output>
  CheckBatch: MethodDefinition<_verdict_v1_CheckBatchRequest, _verdict_v1_CheckBatchResponse, _verdict_v1_CheckBatchRequest__Output, _verdict_v1_CheckBatchResponse__Output>
  Settle: MethodDefinition<_verdict_v1_SettleRequest, _verdict_v1_SettleResponse, _verdict_v1_SettleRequest__Output, _verdict_v1_SettleResponse__Output>
}
