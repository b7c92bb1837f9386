// The request limits live with the policy loader (policy/request-bounds.ts), which checks
// test cases with them at load; the decide core applies them to every request it is given.
export * from '../policy/request-bounds.js';
