import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { certificateFiles } from "../sources/download.ts";

/** npm and other Node children read extra CAs from NODE_EXTRA_CA_CERTS (one file), not the system store. */
export function trustExtraCaCertsInChildren(extraCaCerts: string[], outputDir: string): void {
  if (extraCaCerts.length === 0 || process.env.NODE_EXTRA_CA_CERTS) return;
  const bundle = path.join(outputDir, "extra-ca-certs.pem");
  mkdirSync(outputDir, { recursive: true });
  writeFileSync(
    bundle,
    extraCaCerts
      .flatMap(certificateFiles)
      .map((f) => readFileSync(f, "utf8"))
      .join("\n"),
  );
  process.env.NODE_EXTRA_CA_CERTS = bundle;
}
