// Original file: proto/verdict/v1/admin.proto


export interface WatchAlertsRequest {
  'types'?: (string)[];
  'subjectId'?: (string);
}

export interface WatchAlertsRequest__Output {
  'types': (string)[];
  'subjectId': (string);
}
