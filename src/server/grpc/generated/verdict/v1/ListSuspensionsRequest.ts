// Original file: proto/verdict/v1/admin.proto


export interface ListSuspensionsRequest {
  'pageSize'?: (number);
  'pageToken'?: (string);
}

export interface ListSuspensionsRequest__Output {
  'pageSize': (number);
  'pageToken': (string);
}
