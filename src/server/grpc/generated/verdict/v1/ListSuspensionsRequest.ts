// Original file: proto/verdict/v1/admin.proto


export interface ListSuspensionsRequest {
}

export interface ListSuspensionsRequest__Output {
}
