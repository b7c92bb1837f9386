// Original file: proto/verdict/v1/authorization.proto


export interface SettleRequest {
  'decisionId'?: (string);
  'actualUnits'?: (number | string);
  'requestId'?: (string);
  '_actualUnits'?: "actualUnits";
}

export interface SettleRequest__Output {
  'decisionId': (string);
  'actualUnits'?: (number);
  'requestId': (string);
  '_actualUnits'?: "actualUnits";
}
