// What every stand-in server records: one entry per HTTP request it got,
// appended when the request arrives, its status filled in when answered.

export interface RequestLogEntry {
  method: string;
  /** The request target as sent: path and query, e.g. `/t3` or `/t3/-/t3-0.0.26.tgz`. */
  path: string;
  /** The answer's status; undefined while it is still being answered. */
  status?: number;
}

export interface RequestLog {
  record(method: string | undefined, path: string | undefined): RequestLogEntry;
  /** A copy of the entries so far, oldest first. */
  entries(): RequestLogEntry[];
  clear(): void;
}

export function createRequestLog(): RequestLog {
  let entries: RequestLogEntry[] = [];
  return {
    record(method, path) {
      const entry: RequestLogEntry = { method: method ?? "?", path: path ?? "" };
      entries.push(entry);
      return entry;
    },
    entries: () => entries.map((e) => ({ ...e })),
    clear: () => {
      entries = [];
    },
  };
}
