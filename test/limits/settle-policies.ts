/** A daily token budget reserved from max_tokens up front, for the Settle tests. */
export const SETTLE_POLICIES = `
kind: rules
rules:
  - { id: everyone-generates, effect: allow, actions: [generate], resource: { type: model } }
---
kind: limits
limits:
  - id: tokens-per-day
    actions: [generate]
    cost: context.attributes.max_tokens
    rate: 10000/day
`;
