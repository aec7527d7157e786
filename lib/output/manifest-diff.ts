// Compares two manifests entry by entry, for the idempotence and
// reproducibility checks and the nightly `npm run repro`.
import type { Manifest, ManifestEntry } from "./manifest.ts";

export interface EntryDifference {
  path: string;
  stage: string;
  /** Field name -> [left, right]; "(absent)" where one side lacks the entry. */
  fields: Record<string, [string, string]>;
}

type Comparable = Pick<ManifestEntry, "path" | "stage"> & Partial<Omit<ManifestEntry, "path" | "stage">> & { version?: string };

export function diffManifests(left: Manifest, right: Manifest): EntryDifference[] {
  // Packages compare like paths, under a name no path can have.
  const entries = (m: Manifest): Comparable[] => [...m.paths, ...(m.packages ?? []).map((p) => ({ path: `package ${p.name}`, stage: p.stage, version: p.version }))];
  const index = (m: Manifest) => new Map(entries(m).map((e) => [e.path, e]));
  const a = index(left);
  const b = index(right);
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
  const differences: EntryDifference[] = [];
  for (const path of paths) {
    const x = a.get(path);
    const y = b.get(path);
    const fields: Record<string, [string, string]> = {};
    if (!x || !y) {
      fields.entry = [x ? describe(x) : "(absent)", y ? describe(y) : "(absent)"];
    } else {
      for (const key of new Set([...Object.keys(x), ...Object.keys(y)]) as Set<keyof Comparable>) {
        const [l, r] = [String(x[key] ?? "(absent)"), String(y[key] ?? "(absent)")];
        if (l !== r) fields[key] = [l, r];
      }
    }
    if (Object.keys(fields).length > 0) differences.push({ path, stage: (x ?? y)!.stage, fields });
  }
  if (left.manifestVersion !== right.manifestVersion) {
    differences.unshift({ path: "(manifest)", stage: "-", fields: { manifestVersion: [String(left.manifestVersion), String(right.manifestVersion)] } });
  }
  return differences;
}

export function formatDifferences(differences: EntryDifference[], labels: [string, string] = ["first", "second"]): string {
  return differences
    .map((d) => [`${d.path} (stage ${d.stage}):`, ...Object.entries(d.fields).map(([k, [l, r]]) => `  ${k}: ${labels[0]} ${l}, ${labels[1]} ${r}`)].join("\n"))
    .join("\n");
}

function describe(entry: Comparable): string {
  return [entry.type, entry.version, entry.mode, entry.owner && `${entry.owner}:${entry.group}`, entry.sha256?.slice(0, 12), entry.target && `-> ${entry.target}`].filter(Boolean).join(" ");
}
