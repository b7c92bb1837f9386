// Original file: proto/verdict/v1/admin.proto


export interface GetPolicyStatusRequest {
}

export interface GetPolicyStatusRequest__Output {
}
