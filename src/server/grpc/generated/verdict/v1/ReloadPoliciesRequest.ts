// Original file: proto/verdict/v1/admin.proto


export interface ReloadPoliciesRequest {
}

export interface ReloadPoliciesRequest__Output {
}
