import { describe, expect, it } from "vitest";
import { InputError } from "../core/errors.ts";
import { dispatchSource, memoryCaps, readSettings, settingsEnvironment } from "./settings.ts";

describe("the t3-dispatch source", () => {
  it("defaults to scripts/t3-dispatch of the admin's infra clone, in either layout", () => {
    const settings = readSettings({});
    expect(dispatchSource(settings, () => false)).toBe("/home/wizard/code/scripts/t3-dispatch");
    expect(dispatchSource(settings, (p) => p === "/home/wizard/code/infra/.git")).toBe(
      "/home/wizard/code/infra/scripts/t3-dispatch",
    );
    expect(dispatchSource(readSettings({ DEVVM_ADMIN_CODE_DIR: "/srv/admin/code" }), () => false)).toBe(
      "/srv/admin/code/scripts/t3-dispatch",
    );
  });

  it("is the setting when one is given", () => {
    expect(dispatchSource(readSettings({ DEVVM_T3_DISPATCH_SOURCE: "/src/t3-dispatch" }), () => true)).toBe(
      "/src/t3-dispatch",
    );
  });
});

describe("the sources' addresses", () => {
  it("refuses VAULT_ADDR without a scheme, naming it and what it is", () => {
    expect(() => readSettings({ VAULT_ADDR: "vault.example:8200" })).toThrow(InputError);
    expect(() => readSettings({ VAULT_ADDR: "vault.example:8200" })).toThrow(
      'environment VAULT_ADDR: expected a URL that starts with http:// or https://, such as https://server.example.org:8443 (it is "vault.example:8200")',
    );
  });

  it.each([
    "DEVVM_NPM_REGISTRY",
    "DEVVM_RELEASES_URL",
    "DEVVM_KUBERNETES_RELEASES_URL",
    "DEVVM_NODE_DIST_URL",
    "DEVVM_OIDC_ISSUER",
  ])("refuses %s without http:// or https://", (variable) => {
    for (const value of ["registry.example:4873", "127.0.0.1:4873", "ftp://mirror.example/x"]) {
      expect(() => readSettings({ [variable]: value })).toThrow(
        `environment ${variable}: expected a URL that starts with http:// or https://`,
      );
    }
  });

  it("takes http and https bases, without the trailing slash (paths are appended to them)", () => {
    const settings = readSettings({
      VAULT_ADDR: "http://127.0.0.1:8200/",
      DEVVM_NPM_REGISTRY: "https://registry.example/npm/",
      DEVVM_REPO_BASE: "https://forgejo.example/org/",
    });
    expect(settings.vaultAddr).toBe("http://127.0.0.1:8200");
    expect(settings.npmRegistry).toBe("https://registry.example/npm");
    expect(settings.repoBase).toBe("https://forgejo.example/org");
  });

  it("keeps an identifier byte for byte: the OIDC issuer with its trailing slash, and without one", () => {
    expect(readSettings({ DEVVM_OIDC_ISSUER: "https://sso.example/application/o/kubernetes/" }).oidcIssuer).toBe(
      "https://sso.example/application/o/kubernetes/",
    );
    expect(readSettings({ DEVVM_OIDC_ISSUER: "https://sso.example/application/o/kubernetes" }).oidcIssuer).toBe(
      "https://sso.example/application/o/kubernetes",
    );
  });

  it("shows the address that is wrong, never the token", () => {
    const error = (() => {
      try {
        readSettings({ VAULT_TOKEN: "hvs.secret", VAULT_ADDR: "nope" });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error?.message).toContain('(it is "nope")');
    expect(error?.message).not.toContain("hvs.secret");
  });
});

describe("DEVVM_GOPROXY", () => {
  it("is unset by default, so go's own default applies", () => {
    expect(readSettings({}).goProxy).toBeUndefined();
  });

  it.each([
    "http://127.0.0.1:3000",
    "https://goproxy.example.org/",
    "https://a.example,https://b.example|direct",
    "off",
    "file:///srv/goproxy",
  ])("takes what GOPROXY takes, as given: %s", (list) => {
    expect(readSettings({ DEVVM_GOPROXY: list }).goProxy).toBe(list);
  });

  it.each(["goproxy.example.org", "https://a.example,,direct", "ftp://mirror.example/go", "https://a.example direct"])(
    "refuses %s, naming the variable",
    (list) => {
      expect(() => readSettings({ DEVVM_GOPROXY: list })).toThrow(
        `environment DEVVM_GOPROXY: expected a Go module proxy list as GOPROXY takes it`,
      );
    },
  );
});

describe("VAULT_TOKEN", () => {
  it.each([
    ["hvs.first-part\nsecond-part", "it contains a line break"],
    ["hvs.first-part\r\nsecond-part", "it contains a line break"],
    ["hvs.first-part second-part", "it contains a space or a tab"],
    ["hvs.first-part\u0007second-part", "it contains a control character"],
    ["hvs.first-partésecond-part", "it contains a non-ASCII character"],
  ])("refuses a token that cannot be a header value, naming VAULT_TOKEN and never the token (%#)", (token, why) => {
    const error = (() => {
      try {
        readSettings({ VAULT_TOKEN: token, VAULT_ADDR: "nope" });
      } catch (e) {
        return e as InputError;
      }
    })();
    expect(error).toBeInstanceOf(InputError);
    expect(error?.problems).toContainEqual({
      file: "environment VAULT_TOKEN",
      message: `expected a Vault token of visible ASCII characters (${why}); it was not sent`,
    });
    for (const text of [error?.message ?? "", error?.stack ?? "", JSON.stringify(error?.problems)]) {
      expect(text).not.toContain("first-part");
      expect(text).not.toContain("second-part");
    }
  });

  it("takes a token of visible ASCII as a Secret", () => {
    expect(readSettings({ VAULT_TOKEN: "hvs.CAESIabc_DEF-123.xyz" }).vaultToken?.reveal()).toBe(
      "hvs.CAESIabc_DEF-123.xyz",
    );
  });
});

describe("the memory caps", () => {
  it("default to shares of the machine's memory, and stay out of the box's settings.env unless set", () => {
    const settings = readSettings({});
    expect(memoryCaps(settings)).toEqual({ userMemoryMax: "77%", paneMemoryMax: "20%", dockerMemoryMax: "25%" });
    expect(settingsEnvironment(settings)).not.toHaveProperty("DEVVM_USER_MEMORY_MAX");
  });

  it("take what systemd's MemoryMax= takes: a share, or a size with K, M, G or T", () => {
    const settings = readSettings({
      DEVVM_USER_MEMORY_MAX: "24G",
      DEVVM_PANE_MEMORY_MAX: "19.5%",
      DEVVM_DOCKER_MEMORY_MAX: "100%",
    });
    expect(memoryCaps(settings)).toEqual({ userMemoryMax: "24G", paneMemoryMax: "19.5%", dockerMemoryMax: "100%" });
    expect(settingsEnvironment(settings)).toMatchObject({
      DEVVM_USER_MEMORY_MAX: "24G",
      DEVVM_PANE_MEMORY_MAX: "19.5%",
    });
    expect(memoryCaps(readSettings({ DEVVM_PANE_MEMORY_MAX: "64M" })).paneMemoryMax).toBe("64M");
    expect(memoryCaps(readSettings({ DEVVM_PANE_MEMORY_MAX: "33554432" })).paneMemoryMax).toBe("33554432");
  });

  it.each(["0%", "101%", "infinity", "6 G", "6GB", "6g", "-1G", "20", "31M", "%", "1e3G", "0x10G", " 20%"])(
    "refuses %j, naming the variable and what it takes",
    (value) => {
      expect(() => readSettings({ DEVVM_PANE_MEMORY_MAX: value })).toThrow(
        `environment DEVVM_PANE_MEMORY_MAX: expected a memory cap as systemd's MemoryMax= takes it: a share of the machine's memory above 0% and at most 100% (such as 20%), or a size of at least 32M with the suffix K, M, G or T (such as 6G) (it is "${value}")`,
      );
    },
  );
});
