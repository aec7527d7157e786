import { inspect } from "node:util";
import { fetch } from "undici";
import { describe, expect, it } from "vitest";
import { REDACTED, redactSecrets, Secret, tokenProblem } from "./secret.ts";

describe("Secret", () => {
  const value = "sk-ant-oat01-hunter2hunter2";

  it("redacts itself in strings, JSON and inspect, and reveals on request", () => {
    const secret = new Secret(value);
    expect(`token=${secret}`).toBe(`token=${REDACTED}`);
    expect(String(secret)).toBe(REDACTED);
    expect(JSON.stringify({ token: secret })).toBe(`{"token":"${REDACTED}"}`);
    expect(inspect({ nested: { secret } }, { depth: 5 })).not.toContain("hunter2");
    expect(inspect(secret, { showHidden: true })).not.toContain("hunter2");
    expect(Object.keys(secret)).toEqual([]);
    expect(secret.reveal()).toBe(value);
  });

  it("scrubs values it has seen from other text", () => {
    const secret = new Secret("another-long-token-value");
    expect(redactSecrets(`body: {"t":"${secret.reveal()}"} and ${value}`)).toBe(
      `body: {"t":"${REDACTED}"} and ${REDACTED}`,
    );
    expect(redactSecrets("nothing to hide")).toBe("nothing to hide");
  });

  it("compares without revealing", () => {
    expect(new Secret("abcdefgh").equals(new Secret("abcdefgh"))).toBe(true);
    expect(new Secret("abcdefgh").equals(new Secret("abcdefgX"))).toBe(false);
  });
});

describe("redactSecrets finds a secret in every form it takes in text", () => {
  // A value with what escaping changes: quotes, a backslash, a line break, non-ASCII, a slash and a plus.
  const awkward = new Secret('tok"en\\with\nbreak/é+plus-0123456789').reveal();
  const hidden = (text: string) => {
    const out = redactSecrets(text);
    expect(out).toContain(REDACTED);
    for (const part of ["0123456789", "with", "break/"]) expect(out, `"${part}" left in ${out}`).not.toContain(part);
    return out;
  };

  it("JSON-escaped, once, twice, with \\u escapes, and as util.inspect quotes it", () => {
    const json = JSON.stringify({ error: awkward });
    expect(hidden(json)).toBe(`{"error":"${REDACTED}"}`);
    hidden(JSON.stringify({ report: json }));
    hidden(
      JSON.stringify(awkward).replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`),
    );
    hidden(
      JSON.stringify(awkward).replace(
        /[^\x00-\x7f]/g,
        (c) => `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`,
      ),
    );
    hidden(inspect({ body: awkward }));
  });

  it("URL-encoded, in either case of hex, and form-encoded", () => {
    hidden(`GET https://vault.example/v1/x?token=${encodeURIComponent(awkward)}&a=1`);
    hidden(encodeURIComponent(awkward).replace(/%[0-9A-F]{2}/g, (c) => c.toLowerCase()));
    hidden(new URLSearchParams({ token: awkward }).toString());
  });

  it("split across lines: wrapped, indented, or an escaped line break inside", () => {
    const token = new Secret("hvs.CAESIJwrappedTokenValue0123456789").reveal();
    const wrapped = `error: the token ${token.slice(0, 15)}\n      ${token.slice(15)} was refused`;
    expect(redactSecrets(wrapped)).toBe(`error: the token ${REDACTED} was refused`);
    expect(redactSecrets(`{"message":"${token.slice(0, 10)}\\n  ${token.slice(10)}"}`)).toBe(
      `{"message":"${REDACTED}"}`,
    );
    // A value with a line break of its own, printed with every line indented, or one line at a time.
    hidden(`      ${awkward.split("\n").join("\n      ")}`);
    hidden(awkward.split("\n")[1]!);
  });

  it("in base64: alone, and inside a Basic Authorization header at any offset", () => {
    const token = new Secret("ghp_basicAuthToken0123456789abcdef").reveal();
    for (const user of ["x", "xy", "xyz"]) {
      const header = `Authorization: Basic ${Buffer.from(`${user}:${token}`).toString("base64")}`;
      const out = redactSecrets(header);
      expect(out, user).toContain(REDACTED);
      expect(Buffer.from(out.split(" ").pop()!, "base64").toString()).not.toContain("0123456789");
    }
    expect(redactSecrets(Buffer.from(token).toString("base64"))).toBe(REDACTED);
    expect(redactSecrets(Buffer.from(token).toString("base64url"))).not.toContain(
      Buffer.from(token).toString("base64url").slice(4, 30),
    );
  });

  it("a token inside a JSON secret, printed on its own", () => {
    new Secret(
      JSON.stringify(
        {
          OPENAI_API_KEY: null,
          tokens: { access_token: "eyJhbGciOiJSUzI1NiJ9.accessPayload.signature", account_id: "short" },
        },
        null,
        2,
      ),
    );
    expect(redactSecrets("refresh failed for eyJhbGciOiJSUzI1NiJ9.accessPayload.signature")).toBe(
      `refresh failed for ${REDACTED}`,
    );
    expect(redactSecrets("account short")).toBe("account short");
  });

  it("inside a library's error message that quotes a header value (undici)", async () => {
    const token = new Secret("hvs.undici-quotes\nheader-values-0123").reveal();
    const error = (await fetch("http://127.0.0.1:9/", { headers: { "X-Vault-Token": token } }).catch(
      (e: unknown) => e,
    )) as Error;
    expect(error.message).toContain("undici-quotes");
    for (const text of [error.message, error.stack ?? "", inspect(error), JSON.stringify({ error: error.message })]) {
      const out = redactSecrets(text);
      expect(out).not.toContain("undici-quotes");
      expect(out).not.toContain("header-values");
    }
  });

  it("leaves other text as it was, escapes and line breaks included", () => {
    const text = 'line one\n      line two\\n "quoted" C:\\new %2F aGVsbG8=';
    expect(redactSecrets(text)).toBe(text);
  });
});

describe("tokenProblem", () => {
  it("names the kind of character a header cannot carry, never the value", () => {
    expect(tokenProblem("hvs.CAESIvalid-token_0123")).toBeUndefined();
    expect(tokenProblem("hvs.abc\ndef")).toBe("it contains a line break");
    expect(tokenProblem("hvs.abc\rdef")).toBe("it contains a line break");
    expect(tokenProblem("hvs.abc def")).toBe("it contains a space or a tab");
    expect(tokenProblem("hvs.abc\u0000def")).toBe("it contains a control character");
    expect(tokenProblem("hvs.abcédef")).toBe("it contains a non-ASCII character");
    expect(tokenProblem("")).toBe("it is empty");
  });
});
