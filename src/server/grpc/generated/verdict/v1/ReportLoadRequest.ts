// Original file: proto/verdict/v1/admin.proto


export interface ReportLoadRequest {
  'pool'?: (string);
  'load'?: (number | string);
}

export interface ReportLoadRequest__Output {
  'pool': (string);
  'load': (number);
}
