import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NotFoundError } from '../../errors.js';

/**
 * The console's Content-Security-Policy: its own scripts, styles and API only. No inline script or
 * style, no third-party origin, no framing, no form posting elsewhere.
 */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** Headers on every response under `/console`, 404s included. */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
};

/** One built file of the console, read once at start. */
interface ConsoleAsset {
  readonly body: Buffer;
  readonly contentType: string;
  readonly etag: string;
  readonly cacheControl: string;
}

/** Options of {@link consoleRoutes}. */
export interface ConsoleRoutesOptions {
  /** The folder `pnpm build` writes the console to. @default {@link DEFAULT_CONSOLE_DIR} */
  readonly assetsDir?: string;
}

/**
 * Where the build puts the console: `core-proxy/dist/console`, shipped in the package's `files`.
 * Three folders up from this file is the package, whether it runs built (`dist/http/routes`) or
 * from source in the tests (`src/http/routes`).
 */
export const DEFAULT_CONSOLE_DIR = fileURLToPath(new URL('../../../dist/console/', import.meta.url));

/**
 * Every file under `dir`, by its path relative to `dir` with `/` separators. The route serves
 * exactly these: a request path is looked up in this map, never joined onto the file system, so no
 * `..`, encoded slash or symlink can reach another file.
 */
function loadAssets(dir: string): Map<string, ConsoleAsset> {
  const assets = new Map<string, ConsoleAsset>();
  if (!existsSync(dir)) return assets;
  const walk = (folder: string): void => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) {
        walk(path);
        continue;
      }
      if (!entry.isFile() || !statSync(path).isFile()) continue;
      const name = relative(dir, path).split(sep).join('/');
      const contentType = CONTENT_TYPES[extname(name)];
      // Source maps and anything of an unknown type are not served.
      if (contentType === undefined) continue;
      const body = readFileSync(path);
      assets.set(name, {
        body,
        contentType,
        etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`,
        // Vite names what it builds under assets/ by content hash, so those never change; the
        // page itself is revalidated every time so that an upgrade is picked up at once.
        cacheControl: name.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
      });
    }
  };
  walk(dir);
  return assets;
}

/**
 * The operator's console at `/console`: the static files `pnpm build` puts in `dist/console`,
 * served with a strict CSP. The console itself calls the admin API with the issuer key the
 * operator pastes; nothing here needs one, since these files hold no data.
 */
export async function consoleRoutes(app: FastifyInstance, options: ConsoleRoutesOptions = {}): Promise<void> {
  const assets = loadAssets(options.assetsDir ?? DEFAULT_CONSOLE_DIR);

  const send = (request: FastifyRequest, reply: FastifyReply, name: string): FastifyReply => {
    void reply.headers(SECURITY_HEADERS);
    const asset = assets.get(name);
    if (asset === undefined) {
      const error = new NotFoundError(
        assets.size === 0 ? 'The console is not built into this package: run `pnpm build`.' : undefined,
      );
      return reply.code(error.statusCode).send(error.toJSON());
    }
    void reply.headers({ 'content-type': asset.contentType, 'cache-control': asset.cacheControl, etag: asset.etag });
    if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send();
    return reply.send(asset.body);
  };

  // The app's assets are addressed relative to /console/, so the bare path moves there.
  app.get('/console', async (_request, reply) => reply.headers(SECURITY_HEADERS).redirect('/console/', 308));
  app.get('/console/', async (request, reply) => send(request, reply, 'index.html'));
  app.get<{ Params: { '*': string } }>('/console/*', async (request, reply) =>
    send(request, reply, request.params['*']),
  );
}
