import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from './google/protobuf/Duration.js';
import type { ListValue as _google_protobuf_ListValue, ListValue__Output as _google_protobuf_ListValue__Output } from './google/protobuf/ListValue.js';
import type { Struct as _google_protobuf_Struct, Struct__Output as _google_protobuf_Struct__Output } from './google/protobuf/Struct.js';
import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from './google/protobuf/Timestamp.js';
import type { Value as _google_protobuf_Value, Value__Output as _google_protobuf_Value__Output } from './google/protobuf/Value.js';
import type { AdminClient as _verdict_v1_AdminClient, AdminDefinition as _verdict_v1_AdminDefinition } from './verdict/v1/Admin.js';
import type { Alert as _verdict_v1_Alert, Alert__Output as _verdict_v1_Alert__Output } from './verdict/v1/Alert.js';
import type { AuthorizationClient as _verdict_v1_AuthorizationClient, AuthorizationDefinition as _verdict_v1_AuthorizationDefinition } from './verdict/v1/Authorization.js';
import type { BatchItem as _verdict_v1_BatchItem, BatchItem__Output as _verdict_v1_BatchItem__Output } from './verdict/v1/BatchItem.js';
import type { CheckBatchRequest as _verdict_v1_CheckBatchRequest, CheckBatchRequest__Output as _verdict_v1_CheckBatchRequest__Output } from './verdict/v1/CheckBatchRequest.js';
import type { CheckBatchResponse as _verdict_v1_CheckBatchResponse, CheckBatchResponse__Output as _verdict_v1_CheckBatchResponse__Output } from './verdict/v1/CheckBatchResponse.js';
import type { CheckRequest as _verdict_v1_CheckRequest, CheckRequest__Output as _verdict_v1_CheckRequest__Output } from './verdict/v1/CheckRequest.js';
import type { CheckResponse as _verdict_v1_CheckResponse, CheckResponse__Output as _verdict_v1_CheckResponse__Output } from './verdict/v1/CheckResponse.js';
import type { ConditionError as _verdict_v1_ConditionError, ConditionError__Output as _verdict_v1_ConditionError__Output } from './verdict/v1/ConditionError.js';
import type { Context as _verdict_v1_Context, Context__Output as _verdict_v1_Context__Output } from './verdict/v1/Context.js';
import type { DecisionRecord as _verdict_v1_DecisionRecord, DecisionRecord__Output as _verdict_v1_DecisionRecord__Output } from './verdict/v1/DecisionRecord.js';
import type { GetDecisionRequest as _verdict_v1_GetDecisionRequest, GetDecisionRequest__Output as _verdict_v1_GetDecisionRequest__Output } from './verdict/v1/GetDecisionRequest.js';
import type { GetPolicyStatusRequest as _verdict_v1_GetPolicyStatusRequest, GetPolicyStatusRequest__Output as _verdict_v1_GetPolicyStatusRequest__Output } from './verdict/v1/GetPolicyStatusRequest.js';
import type { LiftSuspensionRequest as _verdict_v1_LiftSuspensionRequest, LiftSuspensionRequest__Output as _verdict_v1_LiftSuspensionRequest__Output } from './verdict/v1/LiftSuspensionRequest.js';
import type { ListDecisionsRequest as _verdict_v1_ListDecisionsRequest, ListDecisionsRequest__Output as _verdict_v1_ListDecisionsRequest__Output } from './verdict/v1/ListDecisionsRequest.js';
import type { ListDecisionsResponse as _verdict_v1_ListDecisionsResponse, ListDecisionsResponse__Output as _verdict_v1_ListDecisionsResponse__Output } from './verdict/v1/ListDecisionsResponse.js';
import type { ListSuspensionsRequest as _verdict_v1_ListSuspensionsRequest, ListSuspensionsRequest__Output as _verdict_v1_ListSuspensionsRequest__Output } from './verdict/v1/ListSuspensionsRequest.js';
import type { ListSuspensionsResponse as _verdict_v1_ListSuspensionsResponse, ListSuspensionsResponse__Output as _verdict_v1_ListSuspensionsResponse__Output } from './verdict/v1/ListSuspensionsResponse.js';
import type { LoadFactor as _verdict_v1_LoadFactor, LoadFactor__Output as _verdict_v1_LoadFactor__Output } from './verdict/v1/LoadFactor.js';
import type { PolicyStatus as _verdict_v1_PolicyStatus, PolicyStatus__Output as _verdict_v1_PolicyStatus__Output } from './verdict/v1/PolicyStatus.js';
import type { Principal as _verdict_v1_Principal, Principal__Output as _verdict_v1_Principal__Output } from './verdict/v1/Principal.js';
import type { ReloadPoliciesRequest as _verdict_v1_ReloadPoliciesRequest, ReloadPoliciesRequest__Output as _verdict_v1_ReloadPoliciesRequest__Output } from './verdict/v1/ReloadPoliciesRequest.js';
import type { ReloadPoliciesResponse as _verdict_v1_ReloadPoliciesResponse, ReloadPoliciesResponse__Output as _verdict_v1_ReloadPoliciesResponse__Output } from './verdict/v1/ReloadPoliciesResponse.js';
import type { ReportLoadRequest as _verdict_v1_ReportLoadRequest, ReportLoadRequest__Output as _verdict_v1_ReportLoadRequest__Output } from './verdict/v1/ReportLoadRequest.js';
import type { ReportLoadResponse as _verdict_v1_ReportLoadResponse, ReportLoadResponse__Output as _verdict_v1_ReportLoadResponse__Output } from './verdict/v1/ReportLoadResponse.js';
import type { Resource as _verdict_v1_Resource, Resource__Output as _verdict_v1_Resource__Output } from './verdict/v1/Resource.js';
import type { SettleRequest as _verdict_v1_SettleRequest, SettleRequest__Output as _verdict_v1_SettleRequest__Output } from './verdict/v1/SettleRequest.js';
import type { SettleResponse as _verdict_v1_SettleResponse, SettleResponse__Output as _verdict_v1_SettleResponse__Output } from './verdict/v1/SettleResponse.js';
import type { SuspendPrincipalRequest as _verdict_v1_SuspendPrincipalRequest, SuspendPrincipalRequest__Output as _verdict_v1_SuspendPrincipalRequest__Output } from './verdict/v1/SuspendPrincipalRequest.js';
import type { Suspension as _verdict_v1_Suspension, Suspension__Output as _verdict_v1_Suspension__Output } from './verdict/v1/Suspension.js';
import type { WatchAlertsRequest as _verdict_v1_WatchAlertsRequest, WatchAlertsRequest__Output as _verdict_v1_WatchAlertsRequest__Output } from './verdict/v1/WatchAlertsRequest.js';

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
      Timestamp: MessageTypeDefinition<_google_protobuf_Timestamp, _google_protobuf_Timestamp__Output>
      Value: MessageTypeDefinition<_google_protobuf_Value, _google_protobuf_Value__Output>
    }
  }
  verdict: {
    v1: {
      Admin: SubtypeConstructor<typeof grpc.Client, _verdict_v1_AdminClient> & { service: _verdict_v1_AdminDefinition }
      Alert: MessageTypeDefinition<_verdict_v1_Alert, _verdict_v1_Alert__Output>
      Authorization: SubtypeConstructor<typeof grpc.Client, _verdict_v1_AuthorizationClient> & { service: _verdict_v1_AuthorizationDefinition }
      BatchItem: MessageTypeDefinition<_verdict_v1_BatchItem, _verdict_v1_BatchItem__Output>
      CheckBatchRequest: MessageTypeDefinition<_verdict_v1_CheckBatchRequest, _verdict_v1_CheckBatchRequest__Output>
      CheckBatchResponse: MessageTypeDefinition<_verdict_v1_CheckBatchResponse, _verdict_v1_CheckBatchResponse__Output>
      CheckRequest: MessageTypeDefinition<_verdict_v1_CheckRequest, _verdict_v1_CheckRequest__Output>
      CheckResponse: MessageTypeDefinition<_verdict_v1_CheckResponse, _verdict_v1_CheckResponse__Output>
      ConditionError: MessageTypeDefinition<_verdict_v1_ConditionError, _verdict_v1_ConditionError__Output>
      Context: MessageTypeDefinition<_verdict_v1_Context, _verdict_v1_Context__Output>
      DecisionRecord: MessageTypeDefinition<_verdict_v1_DecisionRecord, _verdict_v1_DecisionRecord__Output>
      Effect: EnumTypeDefinition
      GetDecisionRequest: MessageTypeDefinition<_verdict_v1_GetDecisionRequest, _verdict_v1_GetDecisionRequest__Output>
      GetPolicyStatusRequest: MessageTypeDefinition<_verdict_v1_GetPolicyStatusRequest, _verdict_v1_GetPolicyStatusRequest__Output>
      LiftSuspensionRequest: MessageTypeDefinition<_verdict_v1_LiftSuspensionRequest, _verdict_v1_LiftSuspensionRequest__Output>
      ListDecisionsRequest: MessageTypeDefinition<_verdict_v1_ListDecisionsRequest, _verdict_v1_ListDecisionsRequest__Output>
      ListDecisionsResponse: MessageTypeDefinition<_verdict_v1_ListDecisionsResponse, _verdict_v1_ListDecisionsResponse__Output>
      ListSuspensionsRequest: MessageTypeDefinition<_verdict_v1_ListSuspensionsRequest, _verdict_v1_ListSuspensionsRequest__Output>
      ListSuspensionsResponse: MessageTypeDefinition<_verdict_v1_ListSuspensionsResponse, _verdict_v1_ListSuspensionsResponse__Output>
      LoadFactor: MessageTypeDefinition<_verdict_v1_LoadFactor, _verdict_v1_LoadFactor__Output>
      PolicyStatus: MessageTypeDefinition<_verdict_v1_PolicyStatus, _verdict_v1_PolicyStatus__Output>
      Principal: MessageTypeDefinition<_verdict_v1_Principal, _verdict_v1_Principal__Output>
      Reason: EnumTypeDefinition
      ReloadPoliciesRequest: MessageTypeDefinition<_verdict_v1_ReloadPoliciesRequest, _verdict_v1_ReloadPoliciesRequest__Output>
      ReloadPoliciesResponse: MessageTypeDefinition<_verdict_v1_ReloadPoliciesResponse, _verdict_v1_ReloadPoliciesResponse__Output>
      ReportLoadRequest: MessageTypeDefinition<_verdict_v1_ReportLoadRequest, _verdict_v1_ReportLoadRequest__Output>
      ReportLoadResponse: MessageTypeDefinition<_verdict_v1_ReportLoadResponse, _verdict_v1_ReportLoadResponse__Output>
      Resource: MessageTypeDefinition<_verdict_v1_Resource, _verdict_v1_Resource__Output>
      SettleRequest: MessageTypeDefinition<_verdict_v1_SettleRequest, _verdict_v1_SettleRequest__Output>
      SettleResponse: MessageTypeDefinition<_verdict_v1_SettleResponse, _verdict_v1_SettleResponse__Output>
      SuspendPrincipalRequest: MessageTypeDefinition<_verdict_v1_SuspendPrincipalRequest, _verdict_v1_SuspendPrincipalRequest__Output>
      Suspension: MessageTypeDefinition<_verdict_v1_Suspension, _verdict_v1_Suspension__Output>
      WatchAlertsRequest: MessageTypeDefinition<_verdict_v1_WatchAlertsRequest, _verdict_v1_WatchAlertsRequest__Output>
    }
  }
}

