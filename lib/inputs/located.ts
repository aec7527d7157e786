// Parses a YAML (or JSON: YAML is a superset) document and validates it
// with a zod schema, turning every problem into file:line: message.
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from "yaml";
import { ZodArray, ZodDefault, ZodNullable, ZodObject, ZodOptional, ZodRecord, type z } from "zod";
import type { InputProblem } from "../errors.ts";

export interface Located<T> {
  data?: T;
  problems: InputProblem[];
  /** The line of a key path in the document, for checks made after the schema. */
  lineOf(path: ReadonlyArray<PropertyKey>): number | undefined;
}

export function parseLocated<S extends z.ZodType>(text: string, file: string, schema: S): Located<z.infer<S>> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const lineAt = (offset: number | undefined) => (offset === undefined ? undefined : lineCounter.linePos(offset).line);
  const lineOf = (path: ReadonlyArray<PropertyKey>) => lineAt(locate(doc, path));
  const problems: InputProblem[] = doc.errors.map((e) => ({ file, line: lineAt(e.pos[0]), message: e.message.split("\n")[0]! }));
  if (problems.length > 0) return { problems, lineOf };

  const parsed = schema.safeParse(doc.toJS());
  if (parsed.success) return { data: parsed.data, problems, lineOf };
  for (const issue of parsed.error.issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        problems.push({ file, line: lineAt(locateKey(doc, [...issue.path, key])), message: `${label([...issue.path, key])}: unknown key; ${expectedKeys(schema, issue.path)}` });
      }
      continue;
    }
    if (issue.code === "invalid_key") {
      const why = issue.issues.map((i) => i.message).join("; ");
      problems.push({ file, line: lineAt(locateKey(doc, issue.path)), message: `${label(issue.path)}: ${why}` });
      continue;
    }
    problems.push({ file, line: lineOf(issue.path), message: `${label(issue.path)}: ${issue.message}` });
  }
  return { problems, lineOf };
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
    if (current instanceof ZodObject) current = unwrap(current.shape[String(key)]);
    else if (current instanceof ZodRecord) current = unwrap(current.valueType as z.ZodType);
    else if (current instanceof ZodArray) current = unwrap(current.element as z.ZodType);
    else return undefined;
  }
  return current instanceof ZodObject ? Object.keys(current.shape) : undefined;
}

function unwrap(schema: z.ZodType | undefined): z.ZodType | undefined {
  let current = schema;
  while (current instanceof ZodOptional || current instanceof ZodDefault || current instanceof ZodNullable) current = current.unwrap() as z.ZodType;
  return current;
}

/** Offset of the value at path, or of the nearest ancestor that exists. */
function locate(doc: Document, path: ReadonlyArray<PropertyKey>): number | undefined {
  let node: unknown = doc.contents;
  let offset = (doc.contents as YamlNode | null)?.range?.[0];
  for (const key of path) {
    const next = child(node, key);
    if (!next) break;
    node = next.value;
    offset = (next.value as YamlNode | null)?.range?.[0] ?? (next.key as YamlNode | null)?.range?.[0] ?? offset;
  }
  return offset;
}

/** Offset of the key itself (for unknown keys). */
function locateKey(doc: Document, path: ReadonlyArray<PropertyKey>): number | undefined {
  const parent = path.slice(0, -1);
  let node: unknown = doc.contents;
  for (const key of parent) node = child(node, key)?.value;
  const pair = child(node, path[path.length - 1]!);
  return (pair?.key as YamlNode | null)?.range?.[0] ?? locate(doc, parent);
}

function child(node: unknown, key: PropertyKey): { key: unknown; value: unknown } | undefined {
  if (isMap(node)) {
    const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(key));
    return pair ? { key: pair.key, value: pair.value } : undefined;
  }
  if (isSeq(node) && typeof key === "number") {
    const item = node.items[key];
    return item === undefined ? undefined : { key: item, value: item };
  }
  return undefined;
}
