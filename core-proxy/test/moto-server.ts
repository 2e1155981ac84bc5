import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from './ports.js';

// No vitest import here: a global setup may use this file too.

/** A running moto_server (PyPI `moto[server]`, installed by `scripts/install-moto.sh`): a real S3 API on 127.0.0.1. */
export interface MotoServer {
  readonly url: string;
  /** A bucket created for the caller. */
  readonly bucket: string;
  /** The environment a proxy needs to archive to `s3://<bucket>/<prefix>` on it. */
  env(prefix?: string): Record<string, string>;
  /** A client of the server (the same fake credentials). */
  client(): S3Client;
  /** SIGSTOP: the server keeps its port and connections but answers nothing (a hung endpoint). */
  pause(): void;
  /** SIGCONT after {@link MotoServer.pause}. */
  resume(): void;
  /** Stops it (its buckets are gone: moto keeps them in memory). */
  stop(): Promise<void>;
}

/** moto accepts any credentials; these are fake and only ever sent to 127.0.0.1. */
const CREDENTIALS = { AWS_ACCESS_KEY_ID: 'moto-test-key', AWS_SECRET_ACCESS_KEY: 'moto-test-secret' };
const REGION = 'us-east-1';

async function waitForHttp(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i += 1) {
    if (child.exitCode !== null) throw new Error(`moto_server exited with ${child.exitCode}`);
    try {
      await fetch(`${url}/moto-api/`);
      return;
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`moto_server at ${url} did not start`);
}

/** Options of {@link startMotoServer}. */
export interface MotoServerOptions {
  /** Create the bucket with Object Lock enabled. @default false */
  readonly objectLock?: boolean;
}

/** Starts moto_server (`MOTO_SERVER_BIN`) on a free loopback port and creates a bucket. */
export async function startMotoServer(options: MotoServerOptions = {}): Promise<MotoServer> {
  const bin = process.env.MOTO_SERVER_BIN;
  if (!bin)
    throw new Error('MOTO_SERVER_BIN is not set: run the tests with `pnpm test` (scripts/test.sh installs moto).');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(bin, ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: 'ignore',
    env: { ...process.env, ...CREDENTIALS },
  });
  await waitForHttp(url, child);
  const client = (): S3Client =>
    new S3Client({
      region: REGION,
      endpoint: url,
      forcePathStyle: true,
      credentials: { accessKeyId: CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: CREDENTIALS.AWS_SECRET_ACCESS_KEY },
    });
  const bucket = `keybrake-${randomUUID().slice(0, 8)}`;
  const admin = client();
  try {
    await admin.send(
      new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: options.objectLock ?? false }),
    );
  } finally {
    admin.destroy();
  }
  return {
    url,
    bucket,
    env: (prefix = 'audit') => ({
      KEYBRAKE_ARCHIVE: `s3://${bucket}/${prefix}`,
      KEYBRAKE_ARCHIVE_S3_ENDPOINT: url,
      KEYBRAKE_ARCHIVE_S3_REGION: REGION,
      KEYBRAKE_ARCHIVE_S3_PATH_STYLE: '1',
      ...CREDENTIALS,
    }),
    client,
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGCONT');
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
