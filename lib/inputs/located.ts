// Parses an input (pins.json as strict JSON, anything else as YAML) and
// validates it with a zod schema, turning every problem into file:line: message.
import { ZodArray, ZodDefault, ZodEnum, ZodNullable, ZodObject, ZodOptional, ZodRecord, type z } from "zod";
import type { InputProblem } from "../core/errors.ts";
import { readJsonTree } from "./json-tree.ts";
import { lineIndex, type SourceNode } from "./source-tree.ts";
import { readYamlTree } from "./yaml-tree.ts";

export interface Located<T> {
  data?: T;
  problems: InputProblem[];
  /** The line of a key path's value in the document, for checks made after the schema. */
  lineOf(path: ReadonlyArray<PropertyKey>): number | undefined;
  /** The line of a key path's key (of the last map it is in). */
  lineOfKey(path: ReadonlyArray<PropertyKey>): number | undefined;
}

export function parseLocated<S extends z.ZodType>(text: string, file: string, schema: S): Located<z.infer<S>> {
  const tree = file.endsWith(".json") ? readJsonTree(text) : readYamlTree(text);
  const lineAt = lineIndex(text);
  // An empty document has no node: its problems are on line 1.
  const root = tree.root ?? { offset: 0 };
  const lineOf = (path: ReadonlyArray<PropertyKey>) => lineAt(locate(root, path));
  const lineOfKey = (path: ReadonlyArray<PropertyKey>) => lineAt(locateKey(root, path));
  const problems: InputProblem[] = tree.problems.map((p) => ({ file, line: lineAt(p.offset), message: p.message }));
  if (problems.length > 0) return { problems, lineOf, lineOfKey };

  const parsed = schema.safeParse(tree.value ?? null);
  if (parsed.success) return { data: parsed.data, problems, lineOf, lineOfKey };
  for (const issue of parsed.error.issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        problems.push({
          file,
          line: lineOfKey([...issue.path, key]),
          message: `${label([...issue.path, key])}: unknown key; ${expectedKeys(schema, issue.path)}`,
        });
      }
      continue;
    }
    if (issue.code === "invalid_key") {
      const why = issue.issues.map((i) => i.message).join("; ");
      problems.push({ file, line: lineOfKey(issue.path), message: `${label(issue.path)}: ${why}` });
      continue;
    }
    problems.push({ file, line: lineOf(issue.path), message: `${label(issue.path)}: ${issue.message}` });
  }
  return { problems, lineOf, lineOfKey };
}

function label(path: ReadonlyArray<PropertyKey>): string {
  return path.length === 0 ? "(document)" : path.map(String).join(".");
}

function expectedKeys(schema: z.ZodType, path: ReadonlyArray<PropertyKey>): string {
  const keys = objectAt(schema, path);
  return keys ? `expected one of: ${keys.join(", ")}` : "check its spelling";
}

/** The keys the schema allows at a path, found by walking the schema itself. */
function objectAt(schema: z.ZodType, path: ReadonlyArray<PropertyKey>): string[] | undefined {
  let current: z.ZodType | undefined = unwrap(schema);
  for (const key of path) {
    if (current instanceof ZodObject)
      current = Object.hasOwn(current.shape, String(key)) ? unwrap(current.shape[String(key)]) : undefined;
    else if (current instanceof ZodRecord) current = unwrap(current.valueType as z.ZodType);
    else if (current instanceof ZodArray) current = unwrap(current.element as z.ZodType);
    else return undefined;
  }
  if (current instanceof ZodObject) return Object.keys(current.shape);
  // A record keyed by an enum (pins.json's apt, by release) allows the enum's values.
  if (current instanceof ZodRecord && current.keyType instanceof ZodEnum) return current.keyType.options.map(String);
  return undefined;
}

function unwrap(schema: z.ZodType | undefined): z.ZodType | undefined {
  let current = schema;
  while (current instanceof ZodOptional || current instanceof ZodDefault || current instanceof ZodNullable)
    current = current.unwrap() as z.ZodType;
  return current;
}

/** Offset of the value at path, or of the nearest ancestor that exists. */
function locate(root: SourceNode, path: ReadonlyArray<PropertyKey>): number {
  let node = root;
  for (const key of path) {
    const next = child(node, key);
    if (!next) break;
    node = next.node;
  }
  return node.offset;
}

/** Offset of the key itself (for unknown keys and names). */
function locateKey(root: SourceNode, path: ReadonlyArray<PropertyKey>): number {
  const parent = path.slice(0, -1);
  let node: SourceNode | undefined = root;
  for (const key of parent) node = node && child(node, key)?.node;
  const entry = node && child(node, path[path.length - 1]!);
  return entry?.keyOffset ?? locate(root, parent);
}

function child(node: SourceNode, key: PropertyKey): { keyOffset: number; node: SourceNode } | undefined {
  if (node.entries) return node.entries.get(String(key));
  const index = Number(key);
  const item = node.items && Number.isInteger(index) ? node.items[index] : undefined;
  return item ? { keyOffset: item.offset, node: item } : undefined;
}
