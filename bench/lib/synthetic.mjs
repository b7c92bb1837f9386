// The synthetic multi-tenant policy sets that bench/engine.mjs and bench/peers/engines.mjs
// share (seeded, so every run benchmarks the same rules and requests), and their
// translation into equivalent Cedar policies and an equivalent casbin model + policy rows.
//
// Verdict rule shapes used by the generator, and what they become:
//   rule / role permission      Cedar                                   casbin row [eft, type, act, role, cond, id]
//   effect allow / deny         permit / forbid (forbid wins)           eft allow / deny (deny wins)
//   actions [a, b] / ["*"]      action in [Action::"a", ...] / any      one row per action / "*"
//   resource.type T             resource is T (hyphens → _)             type column
//   principal.roles [R]         principal.roles.containsAny(holders)    role column, g(r.sub.role, R) with the
//                               (holders: R and every role inheriting)  inheritance as g links
//   attribute equals / any-of   P has k && P.k == v (|| ...)            r.P.k == v (|| ...) (absent never equals)
//   attribute glob "x-*"        P has k && P.k like "x-*"               regexMatch(r.P.k, "^x-.*$")
//   `when` (CEL)                the same test in Cedar's language       the same test in casbin's expressions
// Known differences, none of which the generated requests reach (checked on a sample
// before timing): Cedar has no regular expressions, so the break-glass condition
// ticket.matches("^INC-[0-9]+$") is only `like "INC-*"` there (every generated ticket is
// INC-1234); a condition that cannot be evaluated makes a verdict deny rule deny, while
// Cedar skips the policy and casbin reads `undefined` (every attribute a generated
// condition reads is present); casbin gets the principal's first role (generated
// principals have at most one).

/** A small seeded PRNG (mulberry32), so every run benchmarks the same sets and requests. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ACTIONS = ['read', 'list', 'predict', 'query', 'update', 'retrain', 'deploy', 'delete'];
const ROLES = ['viewer', 'analyst', 'data_scientist', 'admin'];
const ENVS = ['production', 'staging', 'dev'];
const CONDITIONS = [
  'resource.attributes.org == principal.attributes.org',
  'context.attributes.tier >= 2',
  '"admin" in principal.roles || resource.attributes.owner == principal.id',
  'resource.attributes.env != "production" && principal.attributes.org == resource.attributes.org',
];
const BREAK_GLASS = 'context.attributes.ticket.matches("^INC-[0-9]+$")';
const RULES_PER_TENANT = 6;
const SHARED_RULES = 4;

function tenantRules(tenant, count) {
  const random = prng(1000 + tenant);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const org = `tenant-${tenant}`;
  const rules = [];
  for (let i = 0; i < count; i++) {
    const rule = {
      id: `${org}-r${i}`,
      effect: random() < 0.15 ? 'deny' : 'allow',
      actions: random() < 0.05 ? ['*'] : [...new Set([pick(ACTIONS), pick(ACTIONS)])].slice(0, random() < 0.5 ? 1 : 2),
      resource: { type: `${org}-${i % 2 ? 'dataset' : 'model'}` },
    };
    const r = random();
    if (r < 0.35) rule.resource.attributes = { org };
    else if (r < 0.5) rule.resource.attributes = { env: [pick(ENVS), pick(ENVS)] };
    else if (r < 0.6) rule.principal = { attributes: { team: { glob: `${org}-*` } } };
    if (random() < 0.35) rule.when = pick(CONDITIONS);
    if (random() < 0.3) rule.principal = { ...(rule.principal ?? {}), roles: [pick(ROLES)] };
    rules.push(rule);
  }
  return rules;
}

/**
 * A set like a real multi-tenant one: every tenant has its own resource types
 * (`tenant-7-model`, `tenant-7-dataset`) and six rules over eight actions — about a third
 * with attribute matchers (equals, any-of, glob), a third with CEL conditions, some denies,
 * some naming roles — plus two global rules and two role grants that apply to every type.
 * Returns { rules, roles, tenants } in verdict's policy form.
 */
export function syntheticSet(size) {
  const tenants = Math.ceil((size - SHARED_RULES) / RULES_PER_TENANT);
  const rules = [
    { id: 'global-suspended', effect: 'deny', actions: ['*'], principal: { attributes: { status: 'suspended' } } },
    {
      id: 'global-break-glass',
      effect: 'allow',
      actions: ['*'],
      principal: { roles: ['admin'] },
      context: { attributes: { ticket: { glob: 'INC-*' } } },
      when: BREAK_GLASS,
    },
  ];
  for (let t = 0; t < tenants; t++) rules.push(...tenantRules(t, Math.min(RULES_PER_TENANT, size - SHARED_RULES - t * RULES_PER_TENANT)));
  const roles = [
    { name: 'viewer', permissions: [{ id: 'read', actions: ['read', 'list'], when: 'resource.attributes.org == principal.attributes.org' }] },
    { name: 'analyst', inherits: ['viewer'], permissions: [{ id: 'query', actions: ['query'] }] },
    { name: 'data_scientist', inherits: ['analyst'] },
    { name: 'admin', inherits: ['data_scientist'] },
  ];
  return { rules, roles, tenants };
}

/** Requests from every tenant, on their own types, over all actions: a mix of outcomes (plain JSON). */
export function syntheticRequests(tenants, count) {
  const random = prng(42);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const requests = [];
  for (let i = 0; i < count; i++) {
    const tenant = Math.floor(random() * tenants);
    const own = `tenant-${tenant}`;
    const org = random() < 0.8 || tenants === 1 ? own : `tenant-${(tenant + 1) % tenants}`;
    requests.push({
      principal: {
        id: `user-${i % 97}`,
        roles: random() < 0.8 ? [pick(ROLES)] : [],
        attributes: { org, team: `${org}-ml`, ...(random() < 0.02 ? { status: 'suspended' } : {}) },
      },
      action: pick(ACTIONS),
      resource: { type: `${own}-${random() < 0.5 ? 'model' : 'dataset'}`, id: `res-${i}`, attributes: { org: own, env: pick(ENVS), owner: `user-${i % 89}` } },
      context: { attributes: { tier: Math.floor(random() * 4), ...(random() < 0.05 ? { ticket: 'INC-1234' } : {}) } },
    });
  }
  return requests;
}

// ---------------------------------------------------------------- shared

/** Every rule of the set as one list: rules, then role permissions as allow rules (verdict's role:<role>:<id>). */
export function flatRules({ rules, roles }) {
  const out = rules.map((r) => ({ ...r, origin: 'rule' }));
  for (const role of roles) {
    for (const p of role.permissions ?? []) {
      out.push({ id: `role:${role.name}:${p.id}`, effect: 'allow', actions: p.actions, principal: { roles: [role.name] }, resource: p.resources ? { type: p.resources } : undefined, when: p.when, origin: 'role' });
    }
  }
  return out;
}

/** role → every role that holds it (itself and every role inheriting it, transitively). */
export function roleHolders(roles) {
  const parents = new Map(roles.map((r) => [r.name, r.inherits ?? []]));
  const effective = (name, seen = new Set()) => {
    if (seen.has(name)) return seen;
    seen.add(name);
    for (const p of parents.get(name) ?? []) effective(p, seen);
    return seen;
  };
  const holders = new Map(roles.map((r) => [r.name, new Set()]));
  for (const r of roles) for (const granted of effective(r.name)) holders.get(granted)?.add(r.name);
  return holders;
}

const asList = (v) => (v === undefined ? null : Array.isArray(v) ? v : [v]);
const lit = (v) => JSON.stringify(v);

function globRegex(glob) {
  let source = '';
  for (const ch of glob) {
    if (ch === '*') source += '.*';
    else if (ch === '?') source += '.';
    else source += ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return `^${source}$`;
}

// ---------------------------------------------------------------- Cedar

export const cedarType = (type) => type.replace(/[^A-Za-z0-9_]/g, '_');

const CEDAR_CONDITIONS = {
  [CONDITIONS[0]]: 'resource.org == principal.org',
  [CONDITIONS[1]]: 'context.tier >= 2',
  [CONDITIONS[2]]: 'principal.roles.contains("admin") || resource.owner == principal.id',
  [CONDITIONS[3]]: 'resource.env != "production" && principal.org == resource.org',
  // Cedar has no regular expressions: the closest is the glob the rule already has.
  [BREAK_GLASS]: 'context.ticket like "INC-*"',
  // policies/ (the example set): what its conditions become.
  'resource.attributes.owner == principal.id': 'resource.owner == principal.id',
};

function cedarMatcher(part, key, spec) {
  const ref = `${part}.${key}`;
  const has = `${part} has ${key}`;
  if (spec !== null && typeof spec === 'object' && !Array.isArray(spec)) {
    if (!('glob' in spec)) throw new Error(`no Cedar translation for matcher ${JSON.stringify(spec)}`);
    const globs = asList(spec.glob);
    if (globs.some((g) => g.includes('?'))) throw new Error('Cedar like has no single-character wildcard');
    return `(${has} && (${globs.map((g) => `${ref} like ${lit(g)}`).join(' || ')}))`;
  }
  const values = asList(spec);
  return `(${has} && (${values.map((v) => `${ref} == ${lit(v)}`).join(' || ')}))`;
}

/** { policies: { id: text }, count } for Cedar's preparsePolicySet({ staticPolicies }). */
export function toCedar(set) {
  const holders = roleHolders(set.roles);
  const policies = {};
  for (const rule of flatRules(set)) {
    const actions = rule.actions.includes('*') ? 'action' : `action in [${rule.actions.map((a) => `Action::${lit(a)}`).join(', ')}]`;
    const types = asList(rule.resource?.type);
    const clauses = [];
    let resource = 'resource';
    if (types && types.length === 1) resource = `resource is ${cedarType(types[0])}`;
    else if (types) clauses.push(`(${types.map((t) => `resource is ${cedarType(t)}`).join(' || ')})`);
    const roles = asList(rule.principal?.roles);
    if (roles) {
      const all = [...new Set(roles.flatMap((r) => [...(holders.get(r) ?? [])]))].sort();
      clauses.push(`principal.roles.containsAny([${all.map(lit).join(', ')}])`);
    }
    for (const part of ['principal', 'resource', 'context']) {
      for (const [key, spec] of Object.entries(rule[part]?.attributes ?? {})) clauses.push(cedarMatcher(part, key, spec));
    }
    if (rule.when !== undefined) {
      const cedar = CEDAR_CONDITIONS[rule.when];
      if (!cedar) throw new Error(`no Cedar translation for condition ${rule.when}`);
      clauses.push(`(${cedar})`);
    }
    const head = `${rule.effect === 'deny' ? 'forbid' : 'permit'} (principal, ${actions}, ${resource})`;
    policies[rule.id] = clauses.length ? `${head}\nwhen { ${clauses.join(' && ')} };` : `${head};`;
  }
  return { policies, count: Object.keys(policies).length };
}

const RESERVED_PRINCIPAL = ['id', 'roles'];

/** A verdict request as the argument of Cedar's statefulIsAuthorized (built once, outside timing). */
export function toCedarCall(request, policySetId) {
  for (const key of RESERVED_PRINCIPAL) if (key in request.principal.attributes) throw new Error(`principal attribute "${key}" would clash`);
  const principal = { type: 'User', id: request.principal.id };
  const resource = { type: cedarType(request.resource.type), id: request.resource.id };
  return {
    principal,
    action: { type: 'Action', id: request.action },
    resource,
    context: { ...request.context.attributes },
    preparsedPolicySetId: policySetId,
    entities: [
      { uid: principal, attrs: { ...request.principal.attributes, id: request.principal.id, roles: [...request.principal.roles] }, parents: [] },
      { uid: resource, attrs: { ...request.resource.attributes }, parents: [] },
    ],
  };
}

// ---------------------------------------------------------------- casbin

export const CASBIN_MODEL = `[request_definition]
r = sub, obj, act, ctx

[policy_definition]
p = eft, type, act, role, cond, id

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = (p.type == "*" || r.obj.type == p.type) && (p.act == "*" || r.act == p.act) && (p.role == "*" || g(r.sub.role, p.role)) && eval(p.cond)
`;

const CASBIN_CONDITIONS = {
  [CONDITIONS[0]]: 'r.obj.org == r.sub.org',
  [CONDITIONS[1]]: 'r.ctx.tier >= 2',
  [CONDITIONS[2]]: 'r.sub.roles.includes("admin") || r.obj.owner == r.sub.id',
  [CONDITIONS[3]]: 'r.obj.env != "production" && r.sub.org == r.obj.org',
  [BREAK_GLASS]: 'regexMatch(r.ctx.ticket, "^INC-[0-9]+$")',
  'resource.attributes.owner == principal.id': 'r.obj.owner == r.sub.id',
};
const CASBIN_PART = { principal: 'r.sub', resource: 'r.obj', context: 'r.ctx' };

function casbinMatcher(part, key, spec) {
  const ref = `${CASBIN_PART[part]}.${key}`;
  if (spec !== null && typeof spec === 'object' && !Array.isArray(spec)) {
    if (!('glob' in spec)) throw new Error(`no casbin translation for matcher ${JSON.stringify(spec)}`);
    return `(${asList(spec.glob).map((g) => `regexMatch(${ref}, ${lit(globRegex(g))})`).join(' || ')})`;
  }
  return `(${asList(spec).map((v) => `${ref} == ${lit(v)}`).join(' || ')})`;
}

/** { rows, groupings } for casbin: one row per rule × action × type × role; role inheritance as g links. */
export function toCasbin(set) {
  const rows = [];
  for (const rule of flatRules(set)) {
    const clauses = [];
    for (const part of ['principal', 'resource', 'context']) {
      for (const [key, spec] of Object.entries(rule[part]?.attributes ?? {})) clauses.push(casbinMatcher(part, key, spec));
    }
    if (rule.when !== undefined) {
      const expr = CASBIN_CONDITIONS[rule.when];
      if (!expr) throw new Error(`no casbin translation for condition ${rule.when}`);
      clauses.push(`(${expr})`);
    }
    const cond = clauses.length ? clauses.join(' && ') : 'true';
    for (const type of asList(rule.resource?.type) ?? ['*']) {
      for (const act of rule.actions) {
        for (const role of asList(rule.principal?.roles) ?? ['*']) rows.push([rule.effect, type, act, role, cond, rule.id]);
      }
    }
  }
  // g(a, b): role a inherits role b.
  const groupings = set.roles.flatMap((r) => (r.inherits ?? []).map((parent) => [r.name, parent]));
  return { rows, groupings };
}

/** A verdict request as casbin enforce() arguments (built once, outside timing). */
export function toCasbinArgs(request) {
  if (request.principal.roles.length > 1) throw new Error('the casbin model takes one role per principal');
  for (const key of ['id', 'role', 'roles']) if (key in request.principal.attributes) throw new Error(`principal attribute "${key}" would clash`);
  for (const key of ['id', 'type']) if (key in request.resource.attributes) throw new Error(`resource attribute "${key}" would clash`);
  return [
    { ...request.principal.attributes, id: request.principal.id, role: request.principal.roles[0] ?? '', roles: request.principal.roles },
    { ...request.resource.attributes, type: request.resource.type, id: request.resource.id },
    request.action,
    { ...request.context.attributes },
  ];
}
