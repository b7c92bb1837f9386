// Original file: proto/verdict/v1/authorization.proto

import type { Long } from '@grpc/proto-loader';

export interface SettleResponse {
  'settleId'?: (string);
  'reservedUnits'?: (number | string);
  'actualUnits'?: (number | string);
  'limitIds'?: (string)[];
  'remaining'?: (number | string | Long);
}

export interface SettleResponse__Output {
  'settleId': (string);
  'reservedUnits': (number);
  'actualUnits': (number);
  'limitIds': (string)[];
  'remaining': (string);
}
