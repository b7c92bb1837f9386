// Original file: proto/verdict/v1/admin.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { Alert as _verdict_v1_Alert, Alert__Output as _verdict_v1_Alert__Output } from '../../verdict/v1/Alert.js';
import type { DecisionRecord as _verdict_v1_DecisionRecord, DecisionRecord__Output as _verdict_v1_DecisionRecord__Output } from '../../verdict/v1/DecisionRecord.js';
import type { GetDecisionRequest as _verdict_v1_GetDecisionRequest, GetDecisionRequest__Output as _verdict_v1_GetDecisionRequest__Output } from '../../verdict/v1/GetDecisionRequest.js';
import type { GetPolicyStatusRequest as _verdict_v1_GetPolicyStatusRequest, GetPolicyStatusRequest__Output as _verdict_v1_GetPolicyStatusRequest__Output } from '../../verdict/v1/GetPolicyStatusRequest.js';
import type { LiftSuspensionRequest as _verdict_v1_LiftSuspensionRequest, LiftSuspensionRequest__Output as _verdict_v1_LiftSuspensionRequest__Output } from '../../verdict/v1/LiftSuspensionRequest.js';
import type { ListDecisionsRequest as _verdict_v1_ListDecisionsRequest, ListDecisionsRequest__Output as _verdict_v1_ListDecisionsRequest__Output } from '../../verdict/v1/ListDecisionsRequest.js';
import type { ListDecisionsResponse as _verdict_v1_ListDecisionsResponse, ListDecisionsResponse__Output as _verdict_v1_ListDecisionsResponse__Output } from '../../verdict/v1/ListDecisionsResponse.js';
import type { ListSuspensionsRequest as _verdict_v1_ListSuspensionsRequest, ListSuspensionsRequest__Output as _verdict_v1_ListSuspensionsRequest__Output } from '../../verdict/v1/ListSuspensionsRequest.js';
import type { ListSuspensionsResponse as _verdict_v1_ListSuspensionsResponse, ListSuspensionsResponse__Output as _verdict_v1_ListSuspensionsResponse__Output } from '../../verdict/v1/ListSuspensionsResponse.js';
import type { PolicyStatus as _verdict_v1_PolicyStatus, PolicyStatus__Output as _verdict_v1_PolicyStatus__Output } from '../../verdict/v1/PolicyStatus.js';
import type { ReloadPoliciesRequest as _verdict_v1_ReloadPoliciesRequest, ReloadPoliciesRequest__Output as _verdict_v1_ReloadPoliciesRequest__Output } from '../../verdict/v1/ReloadPoliciesRequest.js';
import type { ReloadPoliciesResponse as _verdict_v1_ReloadPoliciesResponse, ReloadPoliciesResponse__Output as _verdict_v1_ReloadPoliciesResponse__Output } from '../../verdict/v1/ReloadPoliciesResponse.js';
import type { ReportLoadRequest as _verdict_v1_ReportLoadRequest, ReportLoadRequest__Output as _verdict_v1_ReportLoadRequest__Output } from '../../verdict/v1/ReportLoadRequest.js';
import type { ReportLoadResponse as _verdict_v1_ReportLoadResponse, ReportLoadResponse__Output as _verdict_v1_ReportLoadResponse__Output } from '../../verdict/v1/ReportLoadResponse.js';
import type { SuspendPrincipalRequest as _verdict_v1_SuspendPrincipalRequest, SuspendPrincipalRequest__Output as _verdict_v1_SuspendPrincipalRequest__Output } from '../../verdict/v1/SuspendPrincipalRequest.js';
import type { Suspension as _verdict_v1_Suspension, Suspension__Output as _verdict_v1_Suspension__Output } from '../../verdict/v1/Suspension.js';
import type { WatchAlertsRequest as _verdict_v1_WatchAlertsRequest, WatchAlertsRequest__Output as _verdict_v1_WatchAlertsRequest__Output } from '../../verdict/v1/WatchAlertsRequest.js';

export interface AdminClient extends grpc.Client {
  GetDecision(argument: _verdict_v1_GetDecisionRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_DecisionRecord__Output>): grpc.ClientUnaryCall;
  GetDecision(argument: _verdict_v1_GetDecisionRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_DecisionRecord__Output>): grpc.ClientUnaryCall;
  GetDecision(argument: _verdict_v1_GetDecisionRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_DecisionRecord__Output>): grpc.ClientUnaryCall;
  GetDecision(argument: _verdict_v1_GetDecisionRequest, callback: grpc.requestCallback<_verdict_v1_DecisionRecord__Output>): grpc.ClientUnaryCall;
  getDecision(argument: _verdict_v1_GetDecisionRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_DecisionRecord__Output>): grpc.ClientUnaryCall;
  getDecision(argument: _verdict_v1_GetDecisionRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_DecisionRecord__Output>): grpc.ClientUnaryCall;
  getDecision(argument: _verdict_v1_GetDecisionRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_DecisionRecord__Output>): grpc.ClientUnaryCall;
  getDecision(argument: _verdict_v1_GetDecisionRequest, callback: grpc.requestCallback<_verdict_v1_DecisionRecord__Output>): grpc.ClientUnaryCall;
  
  GetPolicyStatus(argument: _verdict_v1_GetPolicyStatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_PolicyStatus__Output>): grpc.ClientUnaryCall;
  GetPolicyStatus(argument: _verdict_v1_GetPolicyStatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_PolicyStatus__Output>): grpc.ClientUnaryCall;
  GetPolicyStatus(argument: _verdict_v1_GetPolicyStatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_PolicyStatus__Output>): grpc.ClientUnaryCall;
  GetPolicyStatus(argument: _verdict_v1_GetPolicyStatusRequest, callback: grpc.requestCallback<_verdict_v1_PolicyStatus__Output>): grpc.ClientUnaryCall;
  getPolicyStatus(argument: _verdict_v1_GetPolicyStatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_PolicyStatus__Output>): grpc.ClientUnaryCall;
  getPolicyStatus(argument: _verdict_v1_GetPolicyStatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_PolicyStatus__Output>): grpc.ClientUnaryCall;
  getPolicyStatus(argument: _verdict_v1_GetPolicyStatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_PolicyStatus__Output>): grpc.ClientUnaryCall;
  getPolicyStatus(argument: _verdict_v1_GetPolicyStatusRequest, callback: grpc.requestCallback<_verdict_v1_PolicyStatus__Output>): grpc.ClientUnaryCall;
  
  LiftSuspension(argument: _verdict_v1_LiftSuspensionRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  LiftSuspension(argument: _verdict_v1_LiftSuspensionRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  LiftSuspension(argument: _verdict_v1_LiftSuspensionRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  LiftSuspension(argument: _verdict_v1_LiftSuspensionRequest, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  liftSuspension(argument: _verdict_v1_LiftSuspensionRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  liftSuspension(argument: _verdict_v1_LiftSuspensionRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  liftSuspension(argument: _verdict_v1_LiftSuspensionRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  liftSuspension(argument: _verdict_v1_LiftSuspensionRequest, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  
  ListDecisions(argument: _verdict_v1_ListDecisionsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ListDecisionsResponse__Output>): grpc.ClientUnaryCall;
  ListDecisions(argument: _verdict_v1_ListDecisionsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_ListDecisionsResponse__Output>): grpc.ClientUnaryCall;
  ListDecisions(argument: _verdict_v1_ListDecisionsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ListDecisionsResponse__Output>): grpc.ClientUnaryCall;
  ListDecisions(argument: _verdict_v1_ListDecisionsRequest, callback: grpc.requestCallback<_verdict_v1_ListDecisionsResponse__Output>): grpc.ClientUnaryCall;
  listDecisions(argument: _verdict_v1_ListDecisionsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ListDecisionsResponse__Output>): grpc.ClientUnaryCall;
  listDecisions(argument: _verdict_v1_ListDecisionsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_ListDecisionsResponse__Output>): grpc.ClientUnaryCall;
  listDecisions(argument: _verdict_v1_ListDecisionsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ListDecisionsResponse__Output>): grpc.ClientUnaryCall;
  listDecisions(argument: _verdict_v1_ListDecisionsRequest, callback: grpc.requestCallback<_verdict_v1_ListDecisionsResponse__Output>): grpc.ClientUnaryCall;
  
  ListSuspensions(argument: _verdict_v1_ListSuspensionsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ListSuspensionsResponse__Output>): grpc.ClientUnaryCall;
  ListSuspensions(argument: _verdict_v1_ListSuspensionsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_ListSuspensionsResponse__Output>): grpc.ClientUnaryCall;
  ListSuspensions(argument: _verdict_v1_ListSuspensionsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ListSuspensionsResponse__Output>): grpc.ClientUnaryCall;
  ListSuspensions(argument: _verdict_v1_ListSuspensionsRequest, callback: grpc.requestCallback<_verdict_v1_ListSuspensionsResponse__Output>): grpc.ClientUnaryCall;
  listSuspensions(argument: _verdict_v1_ListSuspensionsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ListSuspensionsResponse__Output>): grpc.ClientUnaryCall;
  listSuspensions(argument: _verdict_v1_ListSuspensionsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_ListSuspensionsResponse__Output>): grpc.ClientUnaryCall;
  listSuspensions(argument: _verdict_v1_ListSuspensionsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ListSuspensionsResponse__Output>): grpc.ClientUnaryCall;
  listSuspensions(argument: _verdict_v1_ListSuspensionsRequest, callback: grpc.requestCallback<_verdict_v1_ListSuspensionsResponse__Output>): grpc.ClientUnaryCall;
  
  ReloadPolicies(argument: _verdict_v1_ReloadPoliciesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ReloadPoliciesResponse__Output>): grpc.ClientUnaryCall;
  ReloadPolicies(argument: _verdict_v1_ReloadPoliciesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_ReloadPoliciesResponse__Output>): grpc.ClientUnaryCall;
  ReloadPolicies(argument: _verdict_v1_ReloadPoliciesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ReloadPoliciesResponse__Output>): grpc.ClientUnaryCall;
  ReloadPolicies(argument: _verdict_v1_ReloadPoliciesRequest, callback: grpc.requestCallback<_verdict_v1_ReloadPoliciesResponse__Output>): grpc.ClientUnaryCall;
  reloadPolicies(argument: _verdict_v1_ReloadPoliciesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ReloadPoliciesResponse__Output>): grpc.ClientUnaryCall;
  reloadPolicies(argument: _verdict_v1_ReloadPoliciesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_ReloadPoliciesResponse__Output>): grpc.ClientUnaryCall;
  reloadPolicies(argument: _verdict_v1_ReloadPoliciesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ReloadPoliciesResponse__Output>): grpc.ClientUnaryCall;
  reloadPolicies(argument: _verdict_v1_ReloadPoliciesRequest, callback: grpc.requestCallback<_verdict_v1_ReloadPoliciesResponse__Output>): grpc.ClientUnaryCall;
  
  ReportLoad(argument: _verdict_v1_ReportLoadRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ReportLoadResponse__Output>): grpc.ClientUnaryCall;
  ReportLoad(argument: _verdict_v1_ReportLoadRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_ReportLoadResponse__Output>): grpc.ClientUnaryCall;
  ReportLoad(argument: _verdict_v1_ReportLoadRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ReportLoadResponse__Output>): grpc.ClientUnaryCall;
  ReportLoad(argument: _verdict_v1_ReportLoadRequest, callback: grpc.requestCallback<_verdict_v1_ReportLoadResponse__Output>): grpc.ClientUnaryCall;
  reportLoad(argument: _verdict_v1_ReportLoadRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ReportLoadResponse__Output>): grpc.ClientUnaryCall;
  reportLoad(argument: _verdict_v1_ReportLoadRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_ReportLoadResponse__Output>): grpc.ClientUnaryCall;
  reportLoad(argument: _verdict_v1_ReportLoadRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_ReportLoadResponse__Output>): grpc.ClientUnaryCall;
  reportLoad(argument: _verdict_v1_ReportLoadRequest, callback: grpc.requestCallback<_verdict_v1_ReportLoadResponse__Output>): grpc.ClientUnaryCall;
  
  SuspendPrincipal(argument: _verdict_v1_SuspendPrincipalRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  SuspendPrincipal(argument: _verdict_v1_SuspendPrincipalRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  SuspendPrincipal(argument: _verdict_v1_SuspendPrincipalRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  SuspendPrincipal(argument: _verdict_v1_SuspendPrincipalRequest, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  suspendPrincipal(argument: _verdict_v1_SuspendPrincipalRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  suspendPrincipal(argument: _verdict_v1_SuspendPrincipalRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  suspendPrincipal(argument: _verdict_v1_SuspendPrincipalRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  suspendPrincipal(argument: _verdict_v1_SuspendPrincipalRequest, callback: grpc.requestCallback<_verdict_v1_Suspension__Output>): grpc.ClientUnaryCall;
  
  WatchAlerts(argument: _verdict_v1_WatchAlertsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_verdict_v1_Alert__Output>;
  WatchAlerts(argument: _verdict_v1_WatchAlertsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_verdict_v1_Alert__Output>;
  watchAlerts(argument: _verdict_v1_WatchAlertsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_verdict_v1_Alert__Output>;
  watchAlerts(argument: _verdict_v1_WatchAlertsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_verdict_v1_Alert__Output>;
  
}

export interface AdminHandlers extends grpc.UntypedServiceImplementation {
  GetDecision: grpc.handleUnaryCall<_verdict_v1_GetDecisionRequest__Output, _verdict_v1_DecisionRecord>;
  
  GetPolicyStatus: grpc.handleUnaryCall<_verdict_v1_GetPolicyStatusRequest__Output, _verdict_v1_PolicyStatus>;
  
  LiftSuspension: grpc.handleUnaryCall<_verdict_v1_LiftSuspensionRequest__Output, _verdict_v1_Suspension>;
  
  ListDecisions: grpc.handleUnaryCall<_verdict_v1_ListDecisionsRequest__Output, _verdict_v1_ListDecisionsResponse>;
  
  ListSuspensions: grpc.handleUnaryCall<_verdict_v1_ListSuspensionsRequest__Output, _verdict_v1_ListSuspensionsResponse>;
  
  ReloadPolicies: grpc.handleUnaryCall<_verdict_v1_ReloadPoliciesRequest__Output, _verdict_v1_ReloadPoliciesResponse>;
  
  ReportLoad: grpc.handleUnaryCall<_verdict_v1_ReportLoadRequest__Output, _verdict_v1_ReportLoadResponse>;
  
  SuspendPrincipal: grpc.handleUnaryCall<_verdict_v1_SuspendPrincipalRequest__Output, _verdict_v1_Suspension>;
  
  WatchAlerts: grpc.handleServerStreamingCall<_verdict_v1_WatchAlertsRequest__Output, _verdict_v1_Alert>;
  
}

export interface AdminDefinition extends grpc.ServiceDefinition {
  GetDecision: MethodDefinition<_verdict_v1_GetDecisionRequest, _verdict_v1_DecisionRecord, _verdict_v1_GetDecisionRequest__Output, _verdict_v1_DecisionRecord__Output>
  GetPolicyStatus: MethodDefinition<_verdict_v1_GetPolicyStatusRequest, _verdict_v1_PolicyStatus, _verdict_v1_GetPolicyStatusRequest__Output, _verdict_v1_PolicyStatus__Output>
  LiftSuspension: MethodDefinition<_verdict_v1_LiftSuspensionRequest, _verdict_v1_Suspension, _verdict_v1_LiftSuspensionRequest__Output, _verdict_v1_Suspension__Output>
  ListDecisions: MethodDefinition<_verdict_v1_ListDecisionsRequest, _verdict_v1_ListDecisionsResponse, _verdict_v1_ListDecisionsRequest__Output, _verdict_v1_ListDecisionsResponse__Output>
  ListSuspensions: MethodDefinition<_verdict_v1_ListSuspensionsRequest, _verdict_v1_ListSuspensionsResponse, _verdict_v1_ListSuspensionsRequest__Output, _verdict_v1_ListSuspensionsResponse__Output>
  ReloadPolicies: MethodDefinition<_verdict_v1_ReloadPoliciesRequest, _verdict_v1_ReloadPoliciesResponse, _verdict_v1_ReloadPoliciesRequest__Output, _verdict_v1_ReloadPoliciesResponse__Output>
  ReportLoad: MethodDefinition<_verdict_v1_ReportLoadRequest, _verdict_v1_ReportLoadResponse, _verdict_v1_ReportLoadRequest__Output, _verdict_v1_ReportLoadResponse__Output>
  SuspendPrincipal: MethodDefinition<_verdict_v1_SuspendPrincipalRequest, _verdict_v1_Suspension, _verdict_v1_SuspendPrincipalRequest__Output, _verdict_v1_Suspension__Output>
  WatchAlerts: MethodDefinition<_verdict_v1_WatchAlertsRequest, _verdict_v1_Alert, _verdict_v1_WatchAlertsRequest__Output, _verdict_v1_Alert__Output>
}
