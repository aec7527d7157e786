import { readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { makeTestRoot } from "../test/support/test-context.ts";
import { readSettings } from "../lib/inputs/settings.ts";
import stage from "./extra-ca-certs.ts";

describe("extra-ca-certs", () => {
  it("is skipped, with the reason, when no extra certificates are configured", async () => {
    using root = makeTestRoot();
    expect(await stage.check(root.ctx)).toEqual({ skip: expect.stringContaining("DEVVM_EXTRA_CA_CERTS") });
  });

  it("installs each configured certificate as a .crt in the system's extra store", async () => {
    using source = makeTestRoot();
    const cert = path.join(source.dir, "proxy-ca.pem");
    writeFileSync(cert, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    using root = makeTestRoot({ settings: readSettings({ DEVVM_EXTRA_CA_CERTS: cert }) });
    const pending = await stage.check(root.ctx);
    expect("changes" in pending && pending.changes.map((c) => c.kind === "create" && c.path)).toContain(
      "/usr/local/share/ca-certificates/devvm/proxy-ca.crt",
    );
    if ("skip" in pending) throw new Error(pending.skip);
    await stage.apply(root.ctx, pending);
    const installed = path.join(root.dir, "usr/local/share/ca-certificates/devvm/proxy-ca.crt");
    expect(readFileSync(installed, "utf8")).toContain("BEGIN CERTIFICATE");
    expect(statSync(installed).mode & 0o7777).toBe(0o644);
    expect(await stage.check(root.ctx)).toMatchObject({ changes: [] });
  });
});
