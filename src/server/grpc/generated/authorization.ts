import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from './google/protobuf/Duration.js';
import type { ListValue as _google_protobuf_ListValue, ListValue__Output as _google_protobuf_ListValue__Output } from './google/protobuf/ListValue.js';
import type { Struct as _google_protobuf_Struct, Struct__Output as _google_protobuf_Struct__Output } from './google/protobuf/Struct.js';
import type { Value as _google_protobuf_Value, Value__Output as _google_protobuf_Value__Output } from './google/protobuf/Value.js';
import type { AuthorizationClient as _verdict_v1_AuthorizationClient, AuthorizationDefinition as _verdict_v1_AuthorizationDefinition } from './verdict/v1/Authorization.js';
import type { BatchItem as _verdict_v1_BatchItem, BatchItem__Output as _verdict_v1_BatchItem__Output } from './verdict/v1/BatchItem.js';
import type { CheckBatchRequest as _verdict_v1_CheckBatchRequest, CheckBatchRequest__Output as _verdict_v1_CheckBatchRequest__Output } from './verdict/v1/CheckBatchRequest.js';
import type { CheckBatchResponse as _verdict_v1_CheckBatchResponse, CheckBatchResponse__Output as _verdict_v1_CheckBatchResponse__Output } from './verdict/v1/CheckBatchResponse.js';
import type { CheckRequest as _verdict_v1_CheckRequest, CheckRequest__Output as _verdict_v1_CheckRequest__Output } from './verdict/v1/CheckRequest.js';
import type { CheckResponse as _verdict_v1_CheckResponse, CheckResponse__Output as _verdict_v1_CheckResponse__Output } from './verdict/v1/CheckResponse.js';
import type { ConditionError as _verdict_v1_ConditionError, ConditionError__Output as _verdict_v1_ConditionError__Output } from './verdict/v1/ConditionError.js';
import type { Context as _verdict_v1_Context, Context__Output as _verdict_v1_Context__Output } from './verdict/v1/Context.js';
import type { Principal as _verdict_v1_Principal, Principal__Output as _verdict_v1_Principal__Output } from './verdict/v1/Principal.js';
import type { Resource as _verdict_v1_Resource, Resource__Output as _verdict_v1_Resource__Output } from './verdict/v1/Resource.js';
import type { SettleRequest as _verdict_v1_SettleRequest, SettleRequest__Output as _verdict_v1_SettleRequest__Output } from './verdict/v1/SettleRequest.js';
import type { SettleResponse as _verdict_v1_SettleResponse, SettleResponse__Output as _verdict_v1_SettleResponse__Output } from './verdict/v1/SettleResponse.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  google: {
    protobuf: {
      Duration: MessageTypeDefinition<_google_protobuf_Duration, _google_protobuf_Duration__Output>
      ListValue: MessageTypeDefinition<_google_protobuf_ListValue, _google_protobuf_ListValue__Output>
      NullValue: EnumTypeDefinition
      Struct: MessageTypeDefinition<_google_protobuf_Struct, _google_protobuf_Struct__Output>
      Value: MessageTypeDefinition<_google_protobuf_Value, _google_protobuf_Value__Output>
    }
  }
  verdict: {
    v1: {
      Authorization: SubtypeConstructor<typeof grpc.Client, _verdict_v1_AuthorizationClient> & { service: _verdict_v1_AuthorizationDefinition }
      BatchItem: MessageTypeDefinition<_verdict_v1_BatchItem, _verdict_v1_BatchItem__Output>
      CheckBatchRequest: MessageTypeDefinition<_verdict_v1_CheckBatchRequest, _verdict_v1_CheckBatchRequest__Output>
      CheckBatchResponse: MessageTypeDefinition<_verdict_v1_CheckBatchResponse, _verdict_v1_CheckBatchResponse__Output>
      CheckRequest: MessageTypeDefinition<_verdict_v1_CheckRequest, _verdict_v1_CheckRequest__Output>
      CheckResponse: MessageTypeDefinition<_verdict_v1_CheckResponse, _verdict_v1_CheckResponse__Output>
      ConditionError: MessageTypeDefinition<_verdict_v1_ConditionError, _verdict_v1_ConditionError__Output>
      Context: MessageTypeDefinition<_verdict_v1_Context, _verdict_v1_Context__Output>
      Effect: EnumTypeDefinition
      Principal: MessageTypeDefinition<_verdict_v1_Principal, _verdict_v1_Principal__Output>
      Reason: EnumTypeDefinition
      Resource: MessageTypeDefinition<_verdict_v1_Resource, _verdict_v1_Resource__Output>
      SettleRequest: MessageTypeDefinition<_verdict_v1_SettleRequest, _verdict_v1_SettleRequest__Output>
      SettleResponse: MessageTypeDefinition<_verdict_v1_SettleResponse, _verdict_v1_SettleResponse__Output>
    }
  }
}

