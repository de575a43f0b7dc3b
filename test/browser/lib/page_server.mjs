// The static server for the test page, on its own loopback port so that the
// page's origin differs from the SockJS server's (every transport then runs
// cross-origin, as it does in production). It serves only three paths:
//   /                the echo page (echo_page.html)
//   /sandboxed       the echo page again, in an iframe sandboxed without
//                    allow-same-origin, so that it runs with `Origin: null`
//   /sockjs.min.js   the sockjs-client build from node_modules; also loaded by
//                    the SockJS server's iframe.html through --client-url

import { readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const HOST = '127.0.0.1';

/** The sockjs-client build under test. */
export const SOCKJS_CLIENT_PATH = createRequire(import.meta.url).resolve(
  'sockjs-client/dist/sockjs.min.js',
);

/**
 * Starts the page server; `tls` ({ cert, key } paths) makes it https so the
 * TLS tests load no mixed content. Resolves `{ origin, close() }`.
 */
export async function startPageServer({ tls } = {}) {
  const files = {
    '/': {
      type: 'text/html; charset=utf-8',
      body: await readFile(new URL('./echo_page.html', import.meta.url)),
    },
    '/sandboxed': {
      type: 'text/html; charset=utf-8',
      body: await readFile(new URL('./sandboxed_page.html', import.meta.url)),
    },
    '/sockjs.min.js': {
      type: 'application/javascript; charset=utf-8',
      body: await readFile(SOCKJS_CLIENT_PATH),
    },
  };

  const handler = (req, res) => {
    const file = req.method === 'GET' && files[new URL(req.url, 'http://x').pathname];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': file.type, 'Cache-Control': 'no-store' });
    res.end(file.body);
  };

  const server = tls
    ? https.createServer({ cert: await readFile(tls.cert), key: await readFile(tls.key) }, handler)
    : http.createServer(handler);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  });

  return {
    origin: `${tls ? 'https' : 'http'}://${HOST}:${server.address().port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Writes the echo page into `dir` as a file whose sockjs-client comes from
 * the page server at `origin`; resolves its file:// URL. A page opened from
 * file:// has an opaque origin, so its requests carry `Origin: null`, but
 * unlike a sandboxed frame's, the iframes it creates are not sandboxed.
 */
export async function writeEchoPageFile(dir, origin) {
  const page = await readFile(new URL('./echo_page.html', import.meta.url), 'utf8');
  const script = '<script src="/sockjs.min.js"></script>';
  if (!page.includes(script)) throw new Error(`echo_page.html no longer holds ${script}`);
  const file = path.join(dir, 'echo_page.html');
  await writeFile(file, page.replace(script, `<script src="${origin}/sockjs.min.js"></script>`));
  return pathToFileURL(file).href;
}
