// Original file: proto/verdict/v1/admin.proto


export interface GetDecisionRequest {
  'decisionId'?: (string);
}

export interface GetDecisionRequest__Output {
  'decisionId': (string);
}
