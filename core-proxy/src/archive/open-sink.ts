import type { ArchiveTarget } from './archive-config.js';
import { DirectorySink } from './directory-sink.js';
import type { ArchiveSink } from './sink.js';

/**
 * Opens the sink a target names (`undefined` for `off`). The S3 sink is imported only when asked
 * for, so a proxy that archives to a directory never loads the AWS SDK.
 */
export async function openSink(target: ArchiveTarget): Promise<ArchiveSink | undefined> {
  if (target.kind === 'off') return undefined;
  if (target.kind === 'dir') return new DirectorySink(target.path);
  const { S3Sink } = await import('./s3-sink.js');
  return new S3Sink(target);
}
