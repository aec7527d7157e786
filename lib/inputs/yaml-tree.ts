// Reads a YAML input (roster.yaml) into plain data and a SourceNode tree,
// refusing what no input needs and what lets a small file do harm: aliases
// (a few lines of them expand to gigabytes), nesting past MAX_DEPTH,
// more than one document, keys that are not plain names, duplicate keys
// and __proto__. Checked on yaml's concrete syntax tree first, which its
// parser builds without recursion; only then is the document composed.
import {
  Composer,
  type CST,
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  Parser,
  type Node as YamlNode,
} from "yaml";
import { MAX_DEPTH, PROTO_KEY, PROTO_KEY_MESSAGE, type SourceNode, type SourceTree } from "./source-tree.ts";

export function readYamlTree(text: string): SourceTree {
  let tokens: CST.Token[];
  let docs: Document.Parsed[];
  try {
    tokens = Array.from(new Parser().parse(text));
    const refused = refusedSyntax(tokens);
    if (refused.length > 0) return { problems: refused };
    // Duplicate keys are found below: yaml's uniqueKeys compares each key with every other (minutes on a large map).
    docs = Array.from(new Composer({ uniqueKeys: false }).compose(tokens, true, text.length));
  } catch (error) {
    // The yaml library should not throw on any text; if it does, it is this input's problem, not a crash.
    return { problems: [{ offset: 0, message: `cannot be read as YAML: ${(error as Error).message.split("\n")[0]}` }] };
  }
  const doc = docs[0]!;
  if (docs.length > 1)
    return {
      problems: [
        { offset: docs[1]!.range[0], message: "a second YAML document (after ---): the file holds exactly one" },
      ],
    };
  if (doc.errors.length > 0)
    return { problems: doc.errors.map((e) => ({ offset: e.pos[0], message: e.message.split("\n")[0]! })) };

  const problems: SourceTree["problems"] = [];
  const root = doc.contents ? sourceNode(doc.contents, [], problems) : undefined;
  if (problems.length > 0) return { problems };
  try {
    return { value: doc.toJS(), root, problems };
  } catch (error) {
    return {
      problems: [
        { offset: root?.offset ?? 0, message: `cannot be read as YAML: ${(error as Error).message.split("\n")[0]}` },
      ],
    };
  }
}

/** Aliases and nesting past MAX_DEPTH, found in the token tree with an explicit stack. */
function refusedSyntax(tokens: CST.Token[]): SourceTree["problems"] {
  const aliases: Array<{ offset: number; source: string }> = [];
  let tooDeep: number | undefined;
  const stack: Array<{ token: CST.Token | null | undefined; depth: number }> = tokens.map((token) => ({
    token,
    depth: 0,
  }));
  while (stack.length > 0) {
    const { token, depth } = stack.pop()!;
    if (!token) continue;
    if (token.type === "alias") aliases.push({ offset: token.offset, source: token.source });
    else if (token.type === "document" || token.type === "doc-end") {
      if (token.type === "document") stack.push({ token: token.value, depth });
    } else if (token.type === "block-map" || token.type === "block-seq" || token.type === "flow-collection") {
      if (depth >= MAX_DEPTH) {
        tooDeep = Math.min(tooDeep ?? token.offset, token.offset);
        continue;
      }
      for (const item of token.items) {
        stack.push({ token: "key" in item ? item.key : undefined, depth: depth + 1 });
        stack.push({ token: item.value, depth: depth + 1 });
      }
    }
  }
  const problems: SourceTree["problems"] = [];
  if (aliases.length > 0) {
    const first = aliases.reduce((a, b) => (b.offset < a.offset ? b : a));
    const more = aliases.length > 1 ? ` (this file has ${aliases.length})` : "";
    problems.push({
      offset: first.offset,
      message: `an alias (${first.source}): YAML aliases are refused${more}, since a few lines of them can expand without bound; write the value out`,
    });
  }
  if (tooDeep !== undefined) problems.push({ offset: tooDeep, message: `nested deeper than ${MAX_DEPTH} levels` });
  return problems;
}

/** The composed document's positions; depth is bounded by refusedSyntax. */
function sourceNode(node: unknown, path: string[], problems: SourceTree["problems"]): SourceNode {
  const offset = (node as YamlNode | null)?.range?.[0] ?? 0;
  if (isMap(node)) {
    const entries = new Map<string, { keyOffset: number; node: SourceNode }>();
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      const keyOffset = (pair.key as YamlNode | null)?.range?.[0] ?? offset;
      if (!isScalar(pair.key) || isAlias(pair.key)) {
        problems.push({
          offset: keyOffset,
          message: `${label(path)}a key that is a list or map: keys are plain names`,
        });
        continue;
      }
      if (typeof pair.key.value !== "string") {
        // `True:`, `no:`, `~:`, `123:` are a boolean, null or a number to YAML: String() would make "true" a user nobody wrote.
        const written = pair.key.source ?? String(pair.key.value);
        const kind = pair.key.value === null ? "null" : typeof pair.key.value === "boolean" ? "a boolean" : "a number";
        problems.push({
          offset: keyOffset,
          message: `${label(path)}the key ${written} is ${kind} to YAML, not a name; quote it ("${written}") if it is meant as one`,
        });
        continue;
      }
      const key = pair.key.value;
      if (key === PROTO_KEY)
        problems.push({ offset: keyOffset, message: `${label([...path, key])}${PROTO_KEY_MESSAGE}` });
      else if (entries.has(key))
        problems.push({ offset: keyOffset, message: `${label([...path, key])}appears twice in one map; keep one` });
      const valueOffset = (pair.value as YamlNode | null)?.range?.[0] ?? keyOffset;
      if (!entries.has(key))
        entries.set(key, {
          keyOffset,
          node: pair.value ? sourceNode(pair.value, [...path, key], problems) : { offset: valueOffset },
        });
    }
    return { offset, entries };
  }
  if (isSeq(node))
    return { offset, items: node.items.map((item, i) => sourceNode(item, [...path, String(i)], problems)) };
  return { offset };
}

const label = (path: string[]) => (path.length === 0 ? "" : `${path.join(".")}: `);
