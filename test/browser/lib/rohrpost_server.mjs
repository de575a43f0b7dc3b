// Runs the real `rohrpost` binary for the browser tests: a dev certificate
// (`rohrpost gen-cert`) and the SockJS test server (`rohrpost
// sockjs-test-server`), started on a free loopback port and polled until its
// `/echo/info` answers. Every wait here is bounded, and a started server is
// killed by `stop()` or, failing that, when the test process exits or dies.

import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const HOST = '127.0.0.1';
/** util-linux's setpriv, used to tie the server's life to this process. */
const SETPRIV = '/usr/bin/setpriv';
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** The binary under test: `$ROHRPOST_BIN`, else the release build in this repo. */
export const ROHRPOST_BIN =
  process.env.ROHRPOST_BIN || path.join(REPO_ROOT, 'target/release/rohrpost');

const READY_TIMEOUT_MS = 20_000;
const READY_POLL_MS = 100;
const PROBE_TIMEOUT_MS = 2_000;
const GEN_CERT_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;
/** How much of the server's output is kept for failure messages. */
const OUTPUT_TAIL_CHARS = 16_384;

/** Writes a self-signed certificate for 127.0.0.1 into `dir`; returns the PEM paths. */
export async function generateDevCert(dir) {
  await promisify(execFile)(ROHRPOST_BIN, ['gen-cert', '--dir', dir], {
    timeout: GEN_CERT_TIMEOUT_MS,
  });
  const files = { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  for (const file of Object.values(files)) {
    if (!existsSync(file)) throw new Error(`${ROHRPOST_BIN} gen-cert --dir ${dir} wrote no ${file}`);
  }
  return files;
}

/**
 * Starts `rohrpost sockjs-test-server` and resolves once it serves
 * `/echo/info`. `clientUrl` is the sockjs-client script its `iframe.html`
 * loads; `tls` ({ cert, key } paths) switches it to https/wss.
 */
export async function startSockjsTestServer({ clientUrl, tls }) {
  const port = await freePort();
  const args = ['sockjs-test-server', '--host', HOST, '--port', String(port), '--client-url', clientUrl];
  if (tls) args.push('--tls-cert', tls.cert, '--tls-key', tls.key);

  const child = spawnDyingWithUs(ROHRPOST_BIN, args);
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  let output = '';
  const keep = (chunk) => {
    output = (output + chunk).slice(-OUTPUT_TAIL_CHARS);
  };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => resolve({ error }));
  });

  const server = {
    baseUrl: `${tls ? 'https' : 'http'}://${HOST}:${port}`,
    /** The tail of the server's stdout and stderr, for failure messages. */
    output: () => output,
    async stop() {
      process.removeListener('exit', killOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };

  const ready = await Promise.race([
    waitForInfo(`${server.baseUrl}/echo/info`),
    exited.then((how) => ({ exited: how })),
  ]);
  if (ready !== true) {
    await server.stop();
    const why = ready.exited
      ? `exited early (${JSON.stringify(ready.exited.error?.message ?? ready.exited)})`
      : `did not answer GET /echo/info with 200 within ${READY_TIMEOUT_MS} ms (last: ${ready.last})`;
    throw new Error(`${ROHRPOST_BIN} ${args.join(' ')}: ${why}\n--- server output ---\n${output}`);
  }
  return server;
}

/**
 * Spawns `command` so that it is SIGKILLed by the kernel if this process dies
 * first: the test runner kills a cancelled test file's process in a way that
 * skips its 'exit' handlers. Without setpriv, a plain spawn.
 */
function spawnDyingWithUs(command, args) {
  const options = { stdio: ['ignore', 'pipe', 'pipe'] };
  if (!existsSync(SETPRIV)) return spawn(command, args, options);
  return spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', command, ...args], options);
}

/** Polls `url` until it answers 200; resolves `true`, or `{ last }` describing the last try. */
async function waitForInfo(url) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = 'no attempt';
  while (Date.now() < deadline) {
    last = await probe(url);
    if (last === 200) return true;
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
  return { last };
}

/** One GET; resolves the status code, or the error message. */
function probe(url) {
  const client = url.startsWith('https:') ? https : http;
  return new Promise((resolve) => {
    // Readiness only: the dev certificate is self-signed, and the browser is
    // the one told to accept it, so it is not verified here.
    const req = client.get(url, { rejectUnauthorized: false, timeout: PROBE_TIMEOUT_MS }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy(new Error('probe timed out')));
    req.on('error', (error) => resolve(error.message));
  });
}

/** A loopback port that was free a moment ago (the OS picks it). */
function freePort() {
  return new Promise((resolve, reject) => {
    const probeServer = net.createServer();
    probeServer.once('error', reject);
    probeServer.listen(0, HOST, () => {
      const { port } = probeServer.address();
      probeServer.close(() => resolve(port));
    });
  });
}
