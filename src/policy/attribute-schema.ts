import { someOf } from './suggest.js';
import { Environment } from '@marcbachmann/cel-js';
import type { AttributeValue, DecisionRequest } from '../types.js';
import type { ATTRIBUTE_TYPES, AttributeDeclarationSpec, Enforcement } from './schema.js';
import { didYouMean } from './variables.js';
import { cutText } from '../cut-text.js';

/**
 * Typed attributes (`kind: schema`): what the principal, the context and each resource
 * type carry, and of which type. At load, conditions are type-checked against it and
 * matchers' values checked for their attribute's type; at decision time a request is
 * checked by the precompiled tests below (one pass over the declared attributes, no
 * parsing), and refused or warned about as `enforcement` says.
 */

export type AttributePart = 'principal' | 'resource' | 'context';

/** Rule id of the error recorded for a request whose attributes break the attribute schema. */
export const SCHEMA_RULE_ID = 'schema';

/** The error recorded for a request refused for breaking the schema, naming every violation. */
export function schemaViolationMessage(violations: readonly string[]): string {
  return `the request breaks the attribute schema: ${violations.join('; ')}`;
}
type ItemType = 'string' | 'int' | 'number' | 'bool';

/** One declared attribute, compiled. */
export interface AttributeType {
  readonly type: (typeof ATTRIBUTE_TYPES)[number];
  readonly required: boolean;
  /** enum: the allowed values. */
  readonly values: ReadonlySet<string> | null;
  /** list: the type of each item; null: any. */
  readonly items: ItemType | null;
  /** Where it is declared, for messages. */
  readonly file: string;
  readonly line: number;
}

/** The declared attributes of one part (the principal, the context, or one resource type). */
export type PartSchema = ReadonlyMap<string, AttributeType>;

/** Compiles one declaration as written. */
export function attributeType(spec: AttributeDeclarationSpec, file: string, line: number): AttributeType {
  if (typeof spec === 'string') return { type: spec, required: false, values: null, items: null, file, line };
  return { type: spec.type, required: spec.required, values: spec.values ? new Set(spec.values) : null, items: spec.items ?? null, file, line };
}

const describeType = (t: AttributeType): string => {
  if (t.type === 'enum') return `one of ${[...t.values!].map((v) => JSON.stringify(v)).join(', ')}`;
  if (t.type === 'list') return t.items ? `a list of ${t.items} values` : 'a list';
  if (t.type === 'map') return 'a map';
  return t.type === 'int' ? 'a whole number (int)' : t.type === 'bool' ? 'true or false (bool)' : `a ${t.type}`;
};

function shown(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  const text = JSON.stringify(value);
  const cut = cutText(text, 60);
  return typeof value === 'string' ? `the string ${cut}` : `the ${typeof value} ${cut}`;
}

function itemFits(items: ItemType, value: unknown): boolean {
  switch (items) {
    case 'string':
      return typeof value === 'string';
    case 'bool':
      return typeof value === 'boolean';
    case 'int':
      return typeof value === 'number' && Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
  }
}

/** Why `value` does not fit the declared type, or null when it does. Work bounded by the value's size (a list is scanned once). */
export function valueProblem(t: AttributeType, value: unknown): string | null {
  switch (t.type) {
    case 'string':
    case 'int':
    case 'number':
    case 'bool':
      return itemFits(t.type, value) ? null : `must be ${describeType(t)}, not ${shown(value)}`;
    case 'enum':
      return typeof value === 'string' && t.values!.has(value) ? null : `must be ${describeType(t)}, not ${shown(value)}`;
    case 'map':
      return value !== null && typeof value === 'object' && !Array.isArray(value) ? null : `must be a map, not ${shown(value)}`;
    case 'list': {
      if (!Array.isArray(value)) return `must be ${describeType(t)}, not ${shown(value)}`;
      const items = t.items;
      if (items === null) return null;
      for (let i = 0; i < value.length; i++) {
        if (!itemFits(items, value[i])) return `must be ${describeType(t)}, but item ${i} is ${shown(value[i])}`;
      }
      return null;
    }
  }
}

const CEL_TYPES: Readonly<Record<AttributeType['type'], string>> = {
  string: 'string',
  int: 'int',
  number: 'double',
  bool: 'bool',
  enum: 'string',
  map: 'map<string, dyn>',
  list: 'list<dyn>',
};
const celType = (t: AttributeType): string => (t.type === 'list' && t.items ? `list<${CEL_TYPES[t.items]}>` : CEL_TYPES[t.type]);

const hasOwn = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);
const NO_VIOLATIONS = null;

/** The problems of one part's attributes, appended to `out` (created on the first). */
function partViolations(label: string, schema: PartSchema, attributes: Readonly<Record<string, AttributeValue>>, out: string[] | null): string[] | null {
  for (const [name, t] of schema) {
    if (!hasOwn(attributes, name)) {
      if (t.required) (out ??= []).push(`${label}.attributes.${name} is required (${describeType(t)})`);
      continue;
    }
    const problem = valueProblem(t, attributes[name]);
    if (problem !== null) (out ??= []).push(`${label}.attributes.${name} ${problem}`);
  }
  return out;
}

/**
 * A policy set's attribute schemas, compiled once per load. `violations` is the decision-time
 * check: it reads only the declared attributes (attributes no schema declares are left alone).
 */
export class AttributeSchemas {
  private readonly environments = new Map<string, Environment>();

  constructor(
    readonly enforcement: Enforcement,
    readonly principal: PartSchema | null,
    readonly context: PartSchema | null,
    readonly resources: ReadonlyMap<string, PartSchema>,
  ) {}

  /** The schema of `part` for a resource type (null: the rule applies to any type; resource attributes are then unchecked). */
  partSchema(part: AttributePart, resourceType: string | null): PartSchema | null {
    if (part === 'principal') return this.principal;
    if (part === 'context') return this.context;
    return resourceType === null ? null : (this.resources.get(resourceType) ?? null);
  }

  /** What is wrong with a request's attributes; null when nothing is (the common case allocates nothing). */
  violations(request: DecisionRequest): readonly string[] | null {
    let out: string[] | null = NO_VIOLATIONS;
    if (this.principal !== null) out = partViolations('principal', this.principal, request.principal.attributes, out);
    const resource = this.resources.size === 0 ? undefined : this.resources.get(request.resource.type);
    if (resource !== undefined) out = partViolations('resource', resource, request.resource.attributes, out);
    if (this.context !== null) out = partViolations('context', this.context, request.context.attributes, out);
    return out;
  }

  /**
   * Type-checks a condition (with its variables already put in) as it would run for one
   * resource type (null: any type). Returns null, or the problem and where it is in the text.
   */
  check(expression: string, resourceType: string | null): { readonly message: string; readonly offset: number | null } | null {
    const env = this.environment(resourceType);
    let checked;
    try {
      checked = env.parse(expression).check();
    } catch (error) {
      return { message: firstLine(error), offset: null };
    }
    if (checked.valid) return null;
    const error = checked.error as { message: string; range?: { start: number } };
    let message = firstLine(error);
    const offset = error.range ? error.range.start : null;
    const unknown = /^No such key: (.+)$/.exec(message);
    if (unknown) message = this.unknownKey(unknown[1]!, expression, offset, resourceType);
    else if (resourceType !== null && this.resources.has(resourceType)) message += ` (for resource type ${resourceType})`;
    return { message, offset };
  }

  private unknownKey(name: string, expression: string, offset: number | null, resourceType: string | null): string {
    const before = offset === null ? '' : expression.slice(0, offset);
    const part = /(principal|resource|context)\s*\.\s*attributes\s*(?:\.\s*|\[\s*)?$/.exec(before)?.[1] as AttributePart | undefined;
    const schema = part === undefined ? null : this.partSchema(part, resourceType);
    if (part !== undefined && schema !== null) {
      const where = part === 'resource' ? `resource type ${resourceType}` : part;
      return `unknown attribute ${part}.attributes.${name}: the schema of ${where} declares ${someOf(schema.keys()) || 'none'}${didYouMean(name, schema.keys())}`;
    }
    return `unknown field "${name}"${didYouMean(name, ['id', 'roles', 'directRoles', 'attributes', 'type'])}`;
  }

  private environment(resourceType: string | null): Environment {
    const key = resourceType ?? '';
    let env = this.environments.get(key);
    if (env) return env;
    env = new Environment({ unlistedVariablesAreDyn: false, homogeneousAggregateLiterals: false });
    const attributesType = (name: string, schema: PartSchema | null): string => {
      if (schema === null) return 'map<string, dyn>';
      const fields: Record<string, string> = {};
      for (const [attribute, t] of schema) fields[attribute] = celType(t);
      env!.registerType(name, { fields });
      return name;
    };
    const resource = resourceType === null ? null : (this.resources.get(resourceType) ?? null);
    env
      .registerType('verdict.Principal', { fields: { id: 'string', roles: 'list<string>', directRoles: 'list<string>', attributes: attributesType('verdict.PrincipalAttributes', this.principal) } })
      .registerType('verdict.Resource', { fields: { type: 'string', id: 'string', attributes: attributesType('verdict.ResourceAttributes', resource) } })
      .registerType('verdict.Context', { fields: { attributes: attributesType('verdict.ContextAttributes', this.context) } })
      .registerVariable('principal', 'verdict.Principal')
      .registerVariable('resource', 'verdict.Resource')
      .registerVariable('action', 'string')
      .registerVariable('context', 'verdict.Context');
    this.environments.set(key, env);
    return env;
  }
}

function firstLine(error: unknown): string {
  const e = error as { summary?: string; message?: string };
  const text = typeof e.summary === 'string' && e.summary ? e.summary : String(e.message ?? error);
  const nl = text.indexOf('\n');
  return (nl === -1 ? text : text.slice(0, nl));
}
