// Original file: proto/verdict/v1/authorization.proto

export const Effect = {
  EFFECT_UNSPECIFIED: 'EFFECT_UNSPECIFIED',
  EFFECT_ALLOW: 'EFFECT_ALLOW',
  EFFECT_DENY: 'EFFECT_DENY',
} as const;

export type Effect =
  | 'EFFECT_UNSPECIFIED'
  | 0
  | 'EFFECT_ALLOW'
  | 1
  | 'EFFECT_DENY'
  | 2

export type Effect__Output = typeof Effect[keyof typeof Effect]
