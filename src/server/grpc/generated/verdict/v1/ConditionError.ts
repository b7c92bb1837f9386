// Original file: proto/verdict/v1/authorization.proto


export interface ConditionError {
  'ruleId'?: (string);
  'message'?: (string);
}

export interface ConditionError__Output {
  'ruleId': (string);
  'message': (string);
}
