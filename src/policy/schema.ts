import { z } from 'zod';
import { ENGINE_REASONS } from '../types.js';

/**
 * The file formats of a policy directory. Every document names its `kind`;
 * each kind has one strict schema, so a misspelt key is an error, not a silent no-op.
 */

const IDENTIFIER = /^[A-Za-z0-9_][A-Za-z0-9_.:\/-]*$/;
const identifier = (what: string) =>
  z.string().regex(IDENTIFIER, { error: `${what} may use letters, digits and _ . : / - only` });

const scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);

/** The matcher forms over values of `value`: itself (equals), a list (any of), and the object forms. */
function matcherOf<V extends z.ZodType>(value: V, emptyList: string, error: string) {
  return z.union(
    [
    value,
    z.array(value).min(1, { error: emptyList }),
    z.strictObject({ equals: value }),
    z.strictObject({ anyOf: z.array(value).min(1) }),
    z.strictObject({ notAnyOf: z.array(value).min(1) }),
    z.strictObject({ glob: z.union([z.string(), z.array(z.string()).min(1)]) }),
    z.strictObject({ exists: z.boolean() }),
    ],
    { error },
  );
}

/**
 * How one attribute is matched. A bare value means "equals"; a list means "any of".
 * The object forms say the same explicitly, plus glob patterns (`acme-*`) and presence.
 */
export const matcherSchema = matcherOf(
  scalar,
  'an any-of list needs at least one value',
  'a matcher is a value (equals), a list of values (any of), or one of {equals: v}, {anyOf: [..]}, {notAnyOf: [..]}, {glob: "acme-*"}, {exists: true|false}',
);
export type MatcherSpec = z.infer<typeof matcherSchema>;

/**
 * How a principal or resource id is matched: the matcher forms with text only. Ids
 * always arrive as strings, so a number, boolean or null could never equal one, and a
 * deny written `id: 42` would never fire.
 */
const idMatcherSchema = matcherOf(
  z.string({ error: 'an id is text: write it as a string ("42", not 42), or it never matches' }),
  'an any-of list needs at least one id',
  'an id matcher is an id as a string (equals), a list of them (any of), or one of {equals: "id"}, {anyOf: [..]}, {notAnyOf: [..]}, {glob: "acme-*"}, {exists: true|false}; ids are text, so write "42", not 42',
);

const attributeMatchers = z.record(z.string().min(1), matcherSchema);

const oneOrMany = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

export const ruleSchema = z.strictObject({
  id: identifier('a rule id'),
  description: z.string().optional(),
  effect: z.enum(['allow', 'deny'], { error: 'effect must be allow or deny' }),
  actions: z.array(z.string().min(1)).min(1, { error: 'list at least one action, or "*" for every action' }),
  principal: z
    .strictObject({
      id: idMatcherSchema.optional(),
      roles: z.array(z.string().min(1)).min(1).optional(),
      /** The principal holds none of these roles, directly or by inheritance. */
      notRoles: z.array(z.string().min(1)).min(1).optional(),
      attributes: attributeMatchers.optional(),
    })
    .optional(),
  resource: z
    .strictObject({
      type: oneOrMany.optional(),
      id: idMatcherSchema.optional(),
      attributes: attributeMatchers.optional(),
    })
    .optional(),
  context: z.strictObject({ attributes: attributeMatchers.optional() }).optional(),
  when: z.string().min(1).optional(),
});
export type RuleSpec = z.infer<typeof ruleSchema>;

export const rulesDocumentSchema = z.strictObject({
  kind: z.literal('rules'),
  description: z.string().optional(),
  // Items are checked one by one (ruleSchema), so one bad rule does not hide the others' errors.
  rules: z.array(z.unknown()),
});

export const permissionSchema = z.strictObject({
  id: identifier('a permission id').optional(),
  description: z.string().optional(),
  actions: z.array(z.string().min(1)).min(1, { error: 'list at least one action, or "*" for every action' }),
  resources: z.array(z.string().min(1)).min(1).optional(),
  when: z.string().min(1).optional(),
});
export type PermissionSpec = z.infer<typeof permissionSchema>;

export const roleSchema = z.strictObject({
  name: identifier('a role name'),
  description: z.string().optional(),
  inherits: z.array(z.string().min(1)).optional(),
  permissions: z.array(permissionSchema).default([]),
});
export type RoleSpec = z.infer<typeof roleSchema>;

export const rolesDocumentSchema = z.strictObject({
  kind: z.literal('roles'),
  description: z.string().optional(),
  roles: z.array(z.unknown()),
});

const attributesValue = z.record(z.string(), z.unknown());

export const principalSchema = z.strictObject({
  id: z.string().min(1, { error: 'principal.id must not be empty' }),
  roles: z.array(z.string()).default([]),
  attributes: attributesValue.default({}),
});

export const resourceSchema = z.strictObject({
  type: z.string().min(1, { error: 'resource.type must not be empty' }),
  id: z.string().default(''),
  attributes: attributesValue.default({}),
});

export const contextSchema = z.strictObject({ attributes: attributesValue.default({}) });

/** A decision request as JSON, the shape `verdict check` and test cases use. */
export const requestSchema = z.strictObject({
  principal: principalSchema,
  action: z.string().min(1, { error: 'action must not be empty' }),
  resource: resourceSchema,
  context: contextSchema.default({ attributes: {} }),
});

const effectName = z.enum(['allow', 'deny', 'ALLOW', 'DENY'], { error: 'expected effect must be allow or deny' });

/** An HTTP request in a test case, turned into action, resource and context by the routes files. */
export const httpTestRequestSchema = z.strictObject({
  method: z.string().regex(/^[A-Z]+$/, { error: 'method is an upper-case HTTP method such as GET or POST' }),
  /** Path and optional query, as a client sends them: `/v1/models/m1/predict?region=eu`. */
  path: z.string().startsWith('/', { error: 'path starts with "/"' }),
  headers: z.record(z.string().min(1), z.string()).default({}),
});
export type HttpTestRequest = z.infer<typeof httpTestRequestSchema>;

const singleExpect = z.strictObject({
  effect: effectName,
  reason: z.enum(ENGINE_REASONS).optional(),
  rules: z.array(z.string().min(1)).optional(),
});
const oneName = z.string().min(1);
/** One row of a matrix case's table: for these principals and resources, the effect of each action. */
const matrixRow = z.strictObject({
  principal: z.union([oneName, z.array(oneName).min(1)], { error: 'principal is a fixture name or a list of them' }),
  resource: z.union([oneName, z.array(oneName).min(1)], { error: 'resource is a fixture name or a list of them' }),
  actions: z.record(z.string().min(1), effectName),
});

export const testCaseSchema = z.strictObject({
  name: z.string().min(1),
  principal: z
    .union([z.string().min(1), principalSchema], {
      error: 'principal is the name of an entry under "principals", or {id, roles, attributes}',
    })
    .optional(),
  // Either action and resource, or an http request that the routes turn into them.
  action: z.string().min(1).optional(),
  resource: z
    .union([z.string().min(1), resourceSchema], {
      error: 'resource is the name of an entry under "resources", or {type, id, attributes}',
    })
    .optional(),
  http: httpTestRequestSchema.optional(),
  context: contextSchema.optional(),
  /** A matrix case: every principal × action × resource, by fixture name; `expect` is then a table. */
  principals: z.array(oneName).min(1).optional(),
  actions: z.array(z.string().min(1)).min(1).optional(),
  resources: z.array(oneName).min(1).optional(),
  // {effect, reason, rules}, or for a matrix case a list of {principal, resource, actions: {action: allow|deny}}.
  // No message of its own: the issues of the form that was written are reported (stages/schema.ts).
  expect: z.union([singleExpect, z.array(matrixRow).min(1)]),
});
export type TestCaseSpec = z.infer<typeof testCaseSchema>;

export const testsDocumentSchema = z.strictObject({
  kind: z.literal('tests'),
  name: z.string().min(1),
  description: z.string().optional(),
  /** Shared fixture files (`kind: fixtures`) whose principals and resources this file's cases may name. */
  fixtures: z.array(z.string().min(1)).default([]),
  principals: z.record(z.string(), principalSchema).default({}),
  resources: z.record(z.string(), resourceSchema).default({}),
  // Cases are checked one by one (testCaseSchema), so one bad case does not hide the others' errors.
  cases: z.array(z.unknown()).min(1, { error: 'a tests file needs at least one case' }),
});
/** Principals and resources shared by any test file that lists this file's name under `fixtures`. */
export const fixturesDocumentSchema = z.strictObject({
  kind: z.literal('fixtures'),
  name: z.string().min(1),
  description: z.string().optional(),
  principals: z.record(z.string(), principalSchema).default({}),
  resources: z.record(z.string(), resourceSchema).default({}),
});
export type FixturesSpec = Omit<z.infer<typeof fixturesDocumentSchema>, 'kind'>;

/** A tests file without its cases: its name and the fixtures its cases refer to. */
export type TestSuiteSpec = Omit<z.infer<typeof testsDocumentSchema>, 'cases' | 'kind'>;

const httpMethod = z.string().regex(/^[A-Z]+$/, { error: 'a method is an upper-case HTTP method such as GET or POST' });
/** A constant, or text with placeholders: `{model}`, `{query.region}`, `{header.x-org}`, `{source.address}`. */
const routeValue = z.union([z.string(), z.number(), z.boolean()], { error: 'a route value is a string (placeholders allowed), a number or a boolean' });

/** One HTTP route: `POST /v1/models/{model}/predict` is action `predict` on resource `model` `{model}`. */
export const routeSchema = z.strictObject({
  description: z.string().optional(),
  method: z.union([httpMethod, z.array(httpMethod).min(1)]),
  path: z.string().min(1),
  action: z.string().min(1).regex(/^[^{}]*$/, { error: 'the action of a route is fixed text, without placeholders' }),
  resource: z.strictObject({
    type: identifier('a resource type'),
    id: routeValue.optional(),
    attributes: z.record(z.string().min(1), routeValue).optional(),
  }),
  context: z.strictObject({ attributes: z.record(z.string().min(1), routeValue).optional() }).optional(),
});
export type RouteSpec = z.infer<typeof routeSchema>;

export const routesDocumentSchema = z.strictObject({
  kind: z.literal('routes'),
  description: z.string().optional(),
  routes: z.array(z.unknown()),
});

/**
 * A named condition (`expr`, CEL) or constant (`value`), defined once per policy set and
 * read from any `when` as `variables.<name>`.
 */
export const variableSchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'a variable name may use letters, digits and _ only, and does not start with a digit' }),
    description: z.string().optional(),
    expr: z.string().min(1).optional(),
    value: z.union([scalar, z.array(scalar)]).optional(),
  })
  .refine((v) => (v.expr === undefined) !== (v.value === undefined), { error: 'a variable has either "expr" (a CEL expression) or "value" (a constant), not both and not neither' });
export type VariableSpec = z.infer<typeof variableSchema>;

export const variablesDocumentSchema = z.strictObject({
  kind: z.literal('variables'),
  description: z.string().optional(),
  variables: z.array(z.unknown()),
});

/**
 * A rate: a whole count per unit, `100/minute`, `10/second`, `5000/hour`, `2000000/day`
 * (also `/s`, `/sec`, `/min`, `/m`, `/h`, `/hr`, `/d`).
 */
export const RATE_PATTERN = /^\s*([1-9][0-9]{0,11})\s*\/\s*(second|sec|s|minute|min|m|hour|hr|h|day|d)\s*$/;
const rateText = z.string().regex(RATE_PATTERN, { error: 'a rate is a whole count per second, minute, hour or day: "100/minute", "10/second", "5000/hour", "2000000/day"' });
const burstValue = z.number().int({ error: 'burst is a whole number' }).min(1, { error: 'burst is at least 1' }).max(1e12, { error: 'burst is at most 1000000000000' });
/** A tier's rate: a rate, or a rate with its own burst. */
const tierRate = z.union([rateText, z.strictObject({ rate: rateText, burst: burstValue.optional() })], {
  error: 'a tier is a rate ("1000/minute") or {rate: "1000/minute", burst: 100}',
});
/** A duration: a whole count of `s`, `m`, `h` or `d` (`30s`, `1m`, `1h`, `1d`). */
export const DURATION_PATTERN = /^\s*([1-9][0-9]{0,8})\s*(s|m|h|d)\s*$/;
const durationText = z.string().regex(DURATION_PATTERN, { error: 'a duration is a whole number of s, m, h or d: "30s", "1m", "1h", "1d"' });
const ATTRIBUTE_KEY = /^(principal|resource|context)\.attributes\.[A-Za-z0-9_:\/-]+(\.[A-Za-z0-9_:\/-]+)*$/;

/**
 * A rate limit: what it applies to (actions, resource, principal, context, a `when`),
 * the key it counts by, a rate and burst (or tiers from a principal attribute), and
 * optionally a cost per call (CEL) instead of one.
 */
export const limitSchema = z.strictObject({
  id: identifier('a limit id'),
  description: z.string().optional(),
  actions: z.array(z.string().min(1)).min(1, { error: 'list at least one action, or leave "actions" out for every action' }).optional(),
  principal: z
    .strictObject({
      roles: z.array(z.string().min(1)).min(1).optional(),
      attributes: attributeMatchers.optional(),
    })
    .optional(),
  resource: z
    .strictObject({
      type: oneOrMany.optional(),
      attributes: attributeMatchers.optional(),
    })
    .optional(),
  context: z.strictObject({ attributes: attributeMatchers.optional() }).optional(),
  when: z.string().min(1).optional(),
  key: z
    .union(
      [
        z.enum(['principal', 'principal+resource']),
        z.strictObject({ attribute: z.string().regex(ATTRIBUTE_KEY, { error: 'an attribute key is principal.attributes.<name>, resource.attributes.<name> or context.attributes.<name>' }) }),
        z.strictObject({ expr: z.string().min(1) }),
      ],
      { error: 'key is "principal" (the default), "principal+resource", {attribute: principal.attributes.org} or {expr: <CEL>}' },
    )
    .default('principal'),
  rate: rateText,
  burst: burstValue.optional(),
  tiers: z
    .strictObject({
      attribute: z.string().regex(/^[A-Za-z0-9_:\/-]+(\.[A-Za-z0-9_:\/-]+)*$/, { error: 'the tier attribute is the name of a principal attribute, e.g. tier' }),
      rates: z.record(z.string().min(1), tierRate),
    })
    .optional(),
  cost: z.string().min(1).optional(),
  /** Scale the rate down while a pool reports load (Admin ReportLoad): whole up to `from`, down to `min` at full load. */
  loadAware: z
    .strictObject({
      pool: z.string().regex(/^[A-Za-z0-9._:-]{1,100}$/, { error: 'a pool is a name of 1 to 100 letters, digits, ., _, : or -' }).optional(),
      min: z.number({ error: 'min is a number above 0, at most 1' }).gt(0, { error: 'min is above 0' }).max(1, { error: 'min is at most 1' }),
      from: z.number().min(0, { error: 'from is a load from 0 to 0.99' }).max(0.99, { error: 'from is a load from 0 to 0.99' }).optional(),
    })
    .optional(),
  /** With a shared backend (Redis): what a check does when the backend cannot answer in time. */
  onBackendFailure: z.enum(['deny', 'allow', 'local'], { error: 'onBackendFailure is deny, allow or local' }).optional(),
  /** Repeat offenders: `after` refusals within `within` block the key for `block`, doubling per further offence up to `max`. */
  backoff: z
    .strictObject({
      after: z.number().int({ error: 'after is a whole number of refusals' }).min(1, { error: 'after is at least 1 refusal' }).max(1_000_000, { error: 'after is at most 1000000 refusals' }),
      within: durationText,
      block: durationText,
      max: durationText,
    })
    .optional(),
});
export type LimitSpec = z.infer<typeof limitSchema>;

export const limitsDocumentSchema = z.strictObject({
  kind: z.literal('limits'),
  description: z.string().optional(),
  limits: z.array(z.unknown()),
});

/** The types an attribute can be declared with in a `kind: schema` document. */
export const ATTRIBUTE_TYPES = ['string', 'int', 'number', 'bool', 'list', 'enum', 'map'] as const;
const ITEM_TYPES = ['string', 'int', 'number', 'bool'] as const;
const attributeTypeName = z.enum(ATTRIBUTE_TYPES, { error: `an attribute type is one of ${ATTRIBUTE_TYPES.join(', ')}` });

/** One declared attribute: `string` (shorthand: optional), or `{type, required, values (enum), items (list)}`. */
export const attributeDeclarationSchema = z.union(
  [
    attributeTypeName,
    z
      .strictObject({
        type: attributeTypeName,
        required: z.boolean().default(false),
        description: z.string().optional(),
        /** enum: the allowed values. */
        values: z.array(z.string()).min(1).optional(),
        /** list: the type of every item. */
        items: z.enum(ITEM_TYPES, { error: `a list's items are one of ${ITEM_TYPES.join(', ')}` }).optional(),
      })
      .refine((d) => (d.type === 'enum') === (d.values !== undefined), { error: 'an enum lists its "values", and only an enum has "values"' })
      .refine((d) => d.items === undefined || d.type === 'list', { error: 'only a list has "items"' }),
  ],
  { error: `an attribute is a type (${ATTRIBUTE_TYPES.join(', ')}) or {type, required, values, items}` },
);
export type AttributeDeclarationSpec = z.infer<typeof attributeDeclarationSchema>;

/** The attributes of the principal, of the context, or of one or more resource types. */
export const attributeSchemaSchema = z
  .strictObject({
    for: z.enum(['principal', 'resource', 'context'], { error: 'for is principal, resource or context' }),
    /** for: resource — the resource types these attributes are those of. */
    resourceTypes: z.array(identifier('a resource type')).min(1).optional(),
    description: z.string().optional(),
    attributes: z.record(z.string().regex(/^[A-Za-z0-9_:\/-]+$/, { error: 'an attribute name may use letters, digits and _ : / - only' }), attributeDeclarationSchema),
  })
  .refine((s) => (s.for === 'resource') === (s.resourceTypes !== undefined), { error: 'a resource schema names its "resourceTypes", and only a resource schema does' });
export type AttributeSchemaSpec = z.infer<typeof attributeSchemaSchema>;

export const ENFORCEMENTS = ['reject', 'warn', 'none'] as const;
export type Enforcement = (typeof ENFORCEMENTS)[number];

export const schemaDocumentSchema = z.strictObject({
  kind: z.literal('schema'),
  description: z.string().optional(),
  /** What a decision does with a request whose attributes break the schema. */
  enforcement: z.enum(ENFORCEMENTS, { error: 'enforcement is reject, warn or none' }).optional(),
  schemas: z.array(z.unknown()),
});


/**
 * Which value a decision uses where a request and a directory disagree:
 * `directory` (the default) — the directory's, whatever the request says;
 * `request` — the request's when it sends one, else the directory's.
 * For roles also `merge`: the request's roles and the directory's together.
 */
const attributePrecedence = z.enum(['directory', 'request'], { error: 'precedence is directory (the default) or request' });
const rolesPrecedence = z.enum(['directory', 'request', 'merge'], { error: 'roles precedence is directory (the default), request or merge' });

/** One principal of a directory: its roles (defined in roles files) and attributes. */
export const directoryPrincipalSchema = z.strictObject({
  id: z.string().min(1, { error: 'a principal id must not be empty' }),
  description: z.string().optional(),
  roles: z.array(z.string().min(1)).optional(),
  attributes: attributesValue.optional(),
});
export type DirectoryPrincipalSpec = z.infer<typeof directoryPrincipalSchema>;

/** One resource of a directory: its type, id and attributes. */
export const directoryResourceSchema = z.strictObject({
  type: identifier('a resource type'),
  id: z.string().min(1, { error: 'a resource id must not be empty' }),
  description: z.string().optional(),
  attributes: attributesValue.optional(),
});
export type DirectoryResourceSpec = z.infer<typeof directoryResourceSchema>;

export const principalsDocumentSchema = z.strictObject({
  kind: z.literal('principals'),
  description: z.string().optional(),
  /** Which wins where a request and this directory disagree, per attribute; the directory unless said otherwise. */
  precedence: z
    .strictObject({
      roles: rolesPrecedence.optional(),
      attributes: z.record(z.string().min(1), attributePrecedence).optional(),
    })
    .optional(),
  principals: z.array(z.unknown()),
});

export const resourcesDocumentSchema = z.strictObject({
  kind: z.literal('resources'),
  description: z.string().optional(),
  precedence: z.strictObject({ attributes: z.record(z.string().min(1), attributePrecedence).optional() }).optional(),
  resources: z.array(z.unknown()),
});
/** A directory document's `precedence`, as written. */
export interface PrecedenceSpec {
  readonly roles?: 'directory' | 'request' | 'merge';
  readonly attributes?: Readonly<Record<string, 'directory' | 'request'>>;
}

export const KNOWN_KINDS = ['rules', 'roles', 'tests', 'routes', 'variables', 'limits', 'schema', 'fixtures', 'principals', 'resources'] as const;
export type PolicyKind = (typeof KNOWN_KINDS)[number];

export const documentSchemas = {
  rules: rulesDocumentSchema,
  roles: rolesDocumentSchema,
  tests: testsDocumentSchema,
  routes: routesDocumentSchema,
  variables: variablesDocumentSchema,
  limits: limitsDocumentSchema,
  schema: schemaDocumentSchema,
  fixtures: fixturesDocumentSchema,
  principals: principalsDocumentSchema,
  resources: resourcesDocumentSchema,
} as const;

/** The list of items each kind of document holds, and the schema of one item. */
export const itemSchemas = {
  rules: { list: 'rules', schema: ruleSchema },
  roles: { list: 'roles', schema: roleSchema },
  tests: { list: 'cases', schema: testCaseSchema },
  routes: { list: 'routes', schema: routeSchema },
  variables: { list: 'variables', schema: variableSchema },
  limits: { list: 'limits', schema: limitSchema },
  schema: { list: 'schemas', schema: attributeSchemaSchema },
  // A fixtures file has no list of items: its maps are read whole (see stages/schema.ts).
  fixtures: { list: null, schema: null },
  principals: { list: 'principals', schema: directoryPrincipalSchema },
  resources: { list: 'resources', schema: directoryResourceSchema },
} as const;
