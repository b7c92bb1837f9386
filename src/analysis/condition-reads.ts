import { Environment } from '@marcbachmann/cel-js';
import { forEachCelNode } from '../policy/condition-guards.js';

/**
 * Which parts of a request a condition reads, asked of its parsed expression rather
 * than of its text: a condition naming `variables.on_call` reads whatever on_call's
 * definition reads, and a string literal "context" reads nothing. The access review
 * (access-review.ts) decides from this which grants hang on what a request sends.
 */
export interface ConditionReads {
  /** It reads `context` (anything of it). */
  readonly context: boolean;
  /**
   * The principal attributes it reads by name (`principal.attributes.org`,
   * `principal.attributes["org"]`); `all` when it reads the attributes as a whole
   * or by a computed key, so that any of them may matter.
   */
  readonly principalAttributes: ReadonlySet<string> | 'all';
}

/** What is assumed of an expression that cannot be parsed: that it reads everything. */
const READS_EVERYTHING: ConditionReads = Object.freeze({ context: true, principalAttributes: 'all' });

// Parsing only (no type check): the request's parts are declared so that the parser
// accepts them, anything else a condition names is already a load error.
const parser = new Environment({ unlistedVariablesAreDyn: true, homogeneousAggregateLiterals: false })
  .registerVariable('principal', 'map')
  .registerVariable('resource', 'map')
  .registerVariable('action', 'string')
  .registerVariable('context', 'map');

/** The little of the CEL library's AST node read here. */
interface CelNode {
  readonly op: string;
  readonly args: unknown;
}

const isNode = (value: unknown): value is CelNode => typeof value === 'object' && value !== null && typeof (value as { op?: unknown }).op === 'string' && 'args' in value;

const isIdentifier = (value: unknown, name: string): boolean => isNode(value) && value.op === 'id' && value.args === name;

/** `principal.attributes` (by field or by `["attributes"]`). */
function isPrincipalAttributes(value: unknown): boolean {
  if (!isNode(value) || !Array.isArray(value.args)) return false;
  const [object, key] = value.args as [unknown, unknown];
  if (value.op === '.' || value.op === '.?') return isIdentifier(object, 'principal') && key === 'attributes';
  if (value.op === '[]' || value.op === '[?]') return isIdentifier(object, 'principal') && isNode(key) && key.op === 'value' && key.args === 'attributes';
  return false;
}

/** The attribute name of `principal.attributes.<name>` or `principal.attributes["<name>"]`; null when the node is neither. */
function principalAttributeName(node: CelNode): string | null {
  if (!Array.isArray(node.args)) return null;
  const [object, key] = node.args as [unknown, unknown];
  if (!isPrincipalAttributes(object)) return null;
  if ((node.op === '.' || node.op === '.?') && typeof key === 'string') return key;
  if ((node.op === '[]' || node.op === '[?]') && isNode(key) && key.op === 'value' && typeof key.args === 'string') return key.args;
  return null;
}

/** Every node of the tree, once, macro arguments and expansions included. */
function nodesOf(root: unknown): CelNode[] {
  const nodes: CelNode[] = [];
  forEachCelNode(root, (node) => nodes.push(node));
  return nodes;
}

const readsByText = new Map<string, ConditionReads>();

/**
 * What a condition reads of the request. `expression` is the condition as it runs:
 * with its named conditions and constants put in (a rule's `conditionExpanded`).
 * A comprehension variable named like a request part counts as that part, which can
 * only make a rule look more dependent on the request than it is, never less.
 */
export function conditionReads(expression: string): ConditionReads {
  let reads = readsByText.get(expression);
  if (reads === undefined) {
    reads = readsOf(expression);
    readsByText.set(expression, reads);
  }
  return reads;
}

function readsOf(expression: string): ConditionReads {
  let ast: unknown;
  try {
    ast = parser.parse(expression).ast;
  } catch {
    return READS_EVERYTHING;
  }
  const nodes = nodesOf(ast);
  let context = false;
  const named = new Set<string>();
  // Every `principal.attributes` should be the object of a read by name; one that is not
  // (passed whole, `"x" in principal.attributes`, a computed key) may read any attribute.
  let attributeMaps = 0;
  let readByName = 0;
  let principals = 0;
  let principalFields = 0;
  for (const node of nodes) {
    if (isIdentifier(node, 'context')) context = true;
    if (isIdentifier(node, 'principal')) principals += 1;
    if ((node.op === '.' || node.op === '.?' || node.op === '[]' || node.op === '[?]') && Array.isArray(node.args) && isIdentifier(node.args[0], 'principal')) principalFields += 1;
    if (isPrincipalAttributes(node)) attributeMaps += 1;
    const name = principalAttributeName(node);
    if (name !== null) {
      named.add(name);
      readByName += 1;
    }
  }
  const whole = attributeMaps !== readByName || principals !== principalFields;
  return Object.freeze({ context, principalAttributes: whole ? 'all' : named });
}
