import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import type http2 from 'node:http2';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where `web/build.ts` (run by `npm start`, and by the Dockerfile) leaves the console's bundle. */
export const CONSOLE_DIST = fileURLToPath(new URL('../../web/dist/', import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
};

/** The pages the console routes itself (history routing): the server answers index.html there. */
const PAGE = /^\/(?:campaigns\/[^/]+\/?)?$/;

/**
 * Same origin only: the console calls this service and nothing else; inline styles are uPlot's
 * and React's style attributes.
 */
const CONTENT_SECURITY_POLICY =
  "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

interface Bundle {
  readonly index: Buffer;
  /** Every file of dist/assets by name: only these are served, so no path from a URL reaches the disk. */
  readonly assets: ReadonlyMap<string, Buffer>;
}

function readBundle(dist: string): Bundle | undefined {
  const index = path.join(dist, 'index.html');
  if (!existsSync(index)) return undefined;
  const assetsDir = path.join(dist, 'assets');
  const names = existsSync(assetsDir) ? readdirSync(assetsDir) : [];
  return {
    index: readFileSync(index),
    assets: new Map(names.map((name) => [name, readFileSync(path.join(assetsDir, name))])),
  };
}

/**
 * The web console on the service's own port: `GET /` and `/campaigns/<id>` answer index.html
 * (never cached: it names the current assets), `/assets/*` the content-hashed files, cached a
 * year. Returns false for any other request, which goes on to the API. The bundle is read once,
 * at the first request; without one (web/ not built) the pages say how to build it.
 */
export function consoleHandler(dist = CONSOLE_DIST): (request: Request, response: Response) => boolean {
  let bundle: Bundle | undefined;
  return (request, response) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return false;
    const pathname = (request.url ?? '/').split('?', 1)[0] ?? '/';
    const isPage = PAGE.test(pathname);
    const asset = pathname.startsWith('/assets/') ? pathname.slice('/assets/'.length) : undefined;
    if (!isPage && asset === undefined) return false;
    bundle ??= readBundle(dist);
    const send = (status: number, headers: Record<string, string>, body: Buffer | string) => {
      response.statusCode = status;
      response.setHeader('x-content-type-options', 'nosniff');
      for (const [name, value] of Object.entries(headers)) response.setHeader(name, value);
      if (request.method === 'HEAD') response.end();
      else response.end(body);
    };
    if (!bundle) {
      send(
        503,
        { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' },
        'The web console is not built: run `node web/build.ts` (npm start does it), or set CONSOLE=off.\n',
      );
      return true;
    }
    if (isPage) {
      send(
        200,
        {
          'content-type': 'text/html; charset=utf-8',
          'cache-control': 'no-cache',
          'content-security-policy': CONTENT_SECURITY_POLICY,
          'referrer-policy': 'no-referrer',
        },
        bundle.index,
      );
      return true;
    }
    const file = asset === undefined ? undefined : bundle.assets.get(asset);
    if (!file) {
      send(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }, 'not found\n');
      return true;
    }
    send(
      200,
      {
        'content-type': CONTENT_TYPES[path.extname(asset as string)] ?? 'application/octet-stream',
        // The names carry a content hash: a new build has new names, so these never go stale.
        'cache-control': 'public, max-age=31536000, immutable',
        'content-length': String(file.length),
      },
      file,
    );
    return true;
  };
}
