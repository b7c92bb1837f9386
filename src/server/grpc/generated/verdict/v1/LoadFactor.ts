// Original file: proto/verdict/v1/admin.proto


export interface LoadFactor {
  'limitId'?: (string);
  'pool'?: (string);
  'load'?: (number | string);
  'factor'?: (number | string);
}

export interface LoadFactor__Output {
  'limitId': (string);
  'pool': (string);
  'load': (number);
  'factor': (number);
}
