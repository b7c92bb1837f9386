// Warnings for `verdict validate`: deny rules that a gateway request can slip past
// because a route can leave out the attribute the rule tests.

import type { PolicyDiagnostic } from './diagnostic.js';
import type { CompiledRule, PolicySet } from './policy-set.js';
import type { CompiledRoute } from './routes.js';

/** `resource.attributes.env`, `context.attributes["ticket"]` in a condition. */
const CONDITION_ATTRIBUTE = /\b(resource|context)\.attributes(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*["']([^"'\]]+)["']\s*\])/g;

/** The resource and context attributes a rule tests (its attribute matches and its condition), with how it tests each. */
function attributesRead(rule: CompiledRule): Map<string, 'match' | 'condition'> {
  const read = new Map<string, 'match' | 'condition'>();
  for (const matcher of rule.matchers) {
    const [part, attributes, name] = matcher.label.split('.');
    if ((part === 'resource' || part === 'context') && attributes === 'attributes' && name !== undefined) read.set(`${part}.attributes.${name}`, 'match');
  }
  // With named conditions put in, so an attribute read through a variable counts too.
  for (const found of (rule.conditionExpanded ?? rule.conditionSource ?? '').matchAll(CONDITION_ATTRIBUTE)) {
    const path = `${found[1]}.attributes.${found[2] ?? found[3]}`;
    if (!read.has(path)) read.set(path, 'condition');
  }
  return read;
}

function routeName(route: CompiledRoute): string {
  return `${route.methods.join('|')} ${route.path} (${route.file}:${route.line})`;
}

/**
 * One warning per deny rule and route that the rule applies to (same action and
 * resource type) where the rule reads a resource or context attribute that the
 * route does not set, or sets from an optional placeholder (`{header.x?}`). Such
 * a request reaches the rules without the attribute: an attribute match then does
 * not match, so the deny is skipped; a condition errs, so the request is denied
 * by error. Either way the route, not the client, should say what the rule needs.
 */
export function absentAttributeWarnings(policySet: PolicySet): PolicyDiagnostic[] {
  const warnings: PolicyDiagnostic[] = [];
  const readByRule = new Map<CompiledRule, Map<string, 'match' | 'condition'>>();
  for (const route of policySet.routes.routes) {
    const set = new Map(route.attributes.map((a) => [a.path, a.mayBeAbsent]));
    for (const rule of policySet.candidates(route.resourceType, route.action)) {
      if (rule.effect !== 'DENY') continue;
      let read = readByRule.get(rule);
      if (!read) readByRule.set(rule, (read = attributesRead(rule)));
      for (const [path, how] of read) {
        const mayBeAbsent = set.get(path);
        if (mayBeAbsent === false) continue;
        const gap = mayBeAbsent === undefined ? `which the route ${routeName(route)} does not set` : `which the route ${routeName(route)} can leave out (an optional {…?} placeholder)`;
        const effect =
          how === 'match'
            ? 'without it the attribute match does not match, so the deny is skipped'
            : 'without it the condition errs, so such requests are denied by error';
        warnings.push({
          file: rule.file,
          line: rule.line,
          col: 1,
          path: '',
          message: `warning: deny rule "${rule.id}" reads ${path}, ${gap}: ${effect}; have the route set it from a required value`,
        });
      }
    }
  }
  return warnings.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.message.localeCompare(b.message));
}
