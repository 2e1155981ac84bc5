import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { link, mkdir, open, readFile, readdir, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { type ArchiveSink, ArchiveSinkError, type SegmentStat } from './sink.js';
import { SEGMENT_DIR, parseSegmentName, sha256Hex } from './segment.js';

/**
 * The directory sink, the embedded store's default (`KEYBRAKE_ARCHIVE=dir:/path`): one file per
 * segment under `<root>/segments/`. A segment is written to a temporary file, made durable
 * (`fsync`), then linked to its name: `link` fails on an existing name, so a segment is never
 * overwritten, and a reader never sees half a file under a segment's name.
 */
export class DirectorySink implements ArchiveSink {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  describe(): string {
    return `dir:${this.root}`;
  }

  async put(name: string, body: Buffer, sha256: string): Promise<void> {
    const path = this.pathOf(name);
    if (sha256Hex(body) !== sha256) {
      throw new ArchiveSinkError(
        'sink_unavailable',
        `${this.describe()}: ${name}: the bytes do not have the SHA-256 given`,
      );
    }
    const dir = dirname(path);
    const temporary = join(dir, `.tmp-${randomUUID()}`);
    try {
      await mkdir(dir, { recursive: true });
      const file = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
      try {
        await file.writeFile(body);
        await file.sync();
      } finally {
        await file.close();
      }
      try {
        await link(temporary, path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const stored = await readFile(path);
        if (!stored.equals(body)) {
          throw new ArchiveSinkError(
            'segment_conflict',
            `${this.describe()}: ${name} exists with other bytes (sha256 ${sha256Hex(stored)}); it is not overwritten`,
          );
        }
      }
      await syncDirectory(dir);
    } catch (error) {
      if (error instanceof ArchiveSinkError) throw error;
      throw new ArchiveSinkError('sink_unavailable', `${this.describe()}: cannot write ${name}: ${errorCode(error)}`, {
        cause: error,
      });
    } finally {
      await unlink(temporary).catch(() => undefined);
    }
  }

  async get(name: string): Promise<Buffer | undefined> {
    const path = this.pathOf(name);
    try {
      return await readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw this.unavailable(`cannot read ${name}`, error);
    }
  }

  async stat(name: string): Promise<SegmentStat | undefined> {
    const body = await this.get(name);
    if (body === undefined) return undefined;
    // A file system keeps no checksum: the hash is of the bytes as they are read back now.
    return { size: body.length, sha256: sha256Hex(body) };
  }

  async list(prefix = ''): Promise<string[]> {
    let files: string[];
    try {
      files = await readdir(join(this.root, SEGMENT_DIR));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw this.unavailable('cannot list the segments', error);
    }
    return files
      .map((file) => `${SEGMENT_DIR}/${file}`)
      .filter((name) => name.startsWith(prefix) && parseSegmentName(name) !== undefined)
      .sort();
  }

  prepare(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Only segment names map to files: no name can reach outside the root. */
  private pathOf(name: string): string {
    if (parseSegmentName(name) === undefined) {
      throw new ArchiveSinkError(
        'sink_misconfigured',
        `${this.describe()}: ${JSON.stringify(name)} is not a segment name`,
      );
    }
    return join(this.root, name);
  }

  private unavailable(what: string, error: unknown): ArchiveSinkError {
    return new ArchiveSinkError('sink_unavailable', `${this.describe()}: ${what}: ${errorCode(error)}`, {
      cause: error,
    });
  }
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException | undefined)?.code ?? (error instanceof Error ? error.message : String(error));
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
