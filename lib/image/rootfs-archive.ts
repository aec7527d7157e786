// A root file system as a .tar.gz that is the same, byte for byte, every
// time the same tree is archived (issue 14: `build.ts image`). What makes
// an archive differ although the files do not, and what is done here:
//   - the order entries are read in: every folder's entries sorted by name;
//   - times: every entry's mtime is SOURCE_DATE_EPOCH; no atime or ctime;
//   - owners: numeric uid and gid only, no user or group names (the names
//     are the image's own, in its /etc/passwd);
//   - inodes: a hard link points at the first path of its inode, in that
//     order; no device, inode or link-count fields;
//   - gzip: one member per 16 MiB of tar, each with no name and a zero
//     time in its header (level 1), compressed on every
//     core (parallel-gzip.ts). One zlib stream used one core, 65 s of the
//     build for a 2.4 GB root; on this host's 2 cores the members halved
//     it (670 MB of /usr/lib: 26 s, now 13 s) for 0.01 % more bytes. The
//     block size is fixed: the core count never changes the bytes.
// Headers are the tar package's (ustar, with a pax header for long paths).
// Device nodes, sockets and FIFOs are left out: a container or an
// unprivileged LXC guest cannot create device nodes, and systemd makes /dev.
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, promises as fs, type Stats } from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Header, Pax } from "tar";
import { parallelGzip } from "./parallel-gzip.ts";

export interface RootfsArchive {
  file: string;
  sha256: string;
  size: number;
  /** Entries written (the root folder included). */
  entries: number;
}

type EntryType = "Directory" | "File" | "SymbolicLink" | "Link";

interface Entry {
  /** "./etc/hostname"; the root is "./". */
  name: string;
  full: string;
  stat: Stats;
  type: EntryType;
  linkpath?: string;
}

const BLOCK = 512;

/** Writes `rootDir` as `file` (.tar.gz), atomically: a partial archive never has the final name. */
export async function writeRootfsArchive(
  rootDir: string,
  file: string,
  sourceDateEpoch: number,
  progress?: (read: number, total: number) => void,
): Promise<RootfsArchive> {
  if (!Number.isInteger(sourceDateEpoch) || sourceDateEpoch < 0)
    throw new Error(`SOURCE_DATE_EPOCH must be whole seconds since 1970, not ${sourceDateEpoch}`);
  const mtime = new Date(sourceDateEpoch * 1000);
  const entries = await collect(rootDir);
  const partial = `${file}.part-${process.pid}`;
  const total = entries.reduce((sum, e) => sum + (e.type === "File" ? e.stat.size : 0), 0);
  let read = 0;
  const timer = progress && setInterval(() => progress(read, total), 10_000);
  try {
    // Level 1: on 1 GB of a built devvm's tar, gzip's default 6 took 47 s of CPU for 398 MB, level 1 17 s
    // for 438 MB (9 took three times 6's time for 0.4 % less). An admin waits on the archive once; 10 % more
    // bytes cost less than twice the time.
    await pipeline(
      Readable.from(tarStream(entries, mtime, (n) => (read += n))),
      parallelGzip({ level: 1 }),
      createWriteStream(partial, { mode: 0o644 }),
    );
    const sha256 = await sha256Of(partial);
    const { size } = await fs.stat(partial);
    await fs.rename(partial, file);
    return { file, sha256, size, entries: entries.length };
  } catch (error) {
    await fs.rm(partial, { force: true });
    throw error;
  } finally {
    clearInterval(timer);
  }
}

/** Every entry under rootDir in archive order: a folder, then its entries sorted by name (byte order). */
async function collect(rootDir: string): Promise<Entry[]> {
  const entries: Entry[] = [];
  const firstPathOfInode = new Map<string, string>();
  const visit = async (full: string, name: string): Promise<void> => {
    const stat = await fs.lstat(full);
    const type = typeOf(stat);
    if (!type) return;
    const entry: Entry = { name, full, stat, type };
    if (type === "SymbolicLink") entry.linkpath = await fs.readlink(full);
    if (type === "File" && stat.nlink > 1) {
      const inode = `${stat.dev}:${stat.ino}`;
      const first = firstPathOfInode.get(inode);
      if (first) Object.assign(entry, { type: "Link", linkpath: first });
      else firstPathOfInode.set(inode, name);
    }
    entries.push(entry);
    if (type !== "Directory") return;
    const names = (await fs.readdir(full)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const child of names) await visit(path.join(full, child), name === "./" ? `./${child}` : `${name}/${child}`);
  };
  await visit(rootDir, "./");
  return entries;
}

function typeOf(stat: Stats): EntryType | null {
  if (stat.isDirectory()) return "Directory";
  if (stat.isFile()) return "File";
  if (stat.isSymbolicLink()) return "SymbolicLink";
  return null; // device nodes, sockets, FIFOs
}

async function* tarStream(entries: Entry[], mtime: Date, onRead: (bytes: number) => void): AsyncGenerator<Buffer> {
  for (const entry of entries) {
    const size = entry.type === "File" ? entry.stat.size : 0;
    const name = entry.type === "Directory" && entry.name !== "./" ? `${entry.name}/` : entry.name;
    const fields = {
      path: name,
      mode: entry.stat.mode & 0o7777,
      uid: entry.stat.uid,
      gid: entry.stat.gid,
      size,
      mtime,
      type: entry.type,
      linkpath: entry.linkpath,
      uname: "",
      gname: "",
    };
    const header = new Header(fields);
    header.encode();
    // A path or link beyond ustar's fields: a pax header before it, with the deterministic fields only.
    if (header.needPax)
      yield new Pax({ path: name, linkpath: entry.linkpath, size, uid: fields.uid, gid: fields.gid, mtime }).encode();
    yield header.block!;
    if (size === 0) continue;
    let read = 0;
    for await (const chunk of createReadStream(entry.full)) {
      read += (chunk as Buffer).length;
      if (read > size) throw new Error(`${entry.full} grew while it was archived`);
      onRead((chunk as Buffer).length);
      yield chunk as Buffer;
    }
    if (read !== size) throw new Error(`${entry.full} shrank while it was archived (${read} of ${size} bytes)`);
    if (size % BLOCK) yield Buffer.alloc(BLOCK - (size % BLOCK));
  }
  // The end of the archive: two zero blocks.
  yield Buffer.alloc(2 * BLOCK);
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
