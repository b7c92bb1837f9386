// Original file: proto/verdict/v1/admin.proto


export interface LiftSuspensionRequest {
  'principalId'?: (string);
}

export interface LiftSuspensionRequest__Output {
  'principalId': (string);
}
