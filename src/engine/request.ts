import { VerdictError } from '../errors.js';
import { requestSchema } from '../policy/schema.js';
import type { DecisionRequest } from '../types.js';

/**
 * Validates a decision request given as JSON data (the CLI's and test files' form).
 * Throws INPUT_INVALID naming every field that is wrong.
 */
export function parseRequestJson(data: unknown): DecisionRequest {
  const result = requestSchema.safeParse(data);
  if (result.success) return result.data as DecisionRequest;
  const problems = result.error.issues.map((issue) => {
    const path = issue.path.map(String).join('.') || '(request)';
    if (issue.code === 'unrecognized_keys') return `${path === '(request)' ? '' : `${path}.`}${issue.keys.join(', ')}: unknown field`;
    if (issue.message.includes('received undefined')) return `${path}: is required`;
    return `${path}: ${issue.message}`;
  });
  throw new VerdictError('INPUT_INVALID', `invalid request: ${problems.join('; ')}`);
}
