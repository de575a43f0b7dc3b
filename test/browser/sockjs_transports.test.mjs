// Browser end-to-end tests of Rohrpost's SockJS server: the real sockjs-client
// in headless Chromium, talking to `rohrpost sockjs-test-server`'s /echo once
// per transport (forced with the client's `transports` option), from a page
// served on another origin. Each transport must echo an ASCII message, a
// unicode one and a 64 KiB one byte-exactly; websocket and xhr-streaming are
// also run over TLS with a self-signed dev certificate.
//
// Run: cd test/browser && npm ci && node --test
// (ROHRPOST_BIN overrides the binary, default target/release/rohrpost.)

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { launchChromium, recordPageEvents } from './lib/browser.mjs';
import { startPageServer } from './lib/page_server.mjs';
import { generateDevCert, startSockjsTestServer } from './lib/rohrpost_server.mjs';

const TRANSPORTS = [
  'websocket',
  'xhr-streaming',
  'xhr-polling',
  'eventsource',
  'iframe-eventsource',
  'iframe-htmlfile',
  'iframe-xhr-polling',
  'jsonp-polling',
];
const TLS_TRANSPORTS = ['websocket', 'xhr-streaming'];

/** Printable ASCII cycled to 65536 chars; includes `"` and `\`, which framing must escape. */
const LARGE = Array.from({ length: 65536 }, (_, i) => String.fromCharCode(32 + (i % 95))).join('');
const MESSAGES = [
  { name: 'ascii', text: 'hello, rohrpost' },
  // Polish letters, an astral-plane emoji (a surrogate pair in JS), and the
  // line/paragraph separators that SockJS servers must escape in frames.
  { name: 'unicode', text: 'zażółć 😀 \u2028 \u2029 end' },
  { name: '64 KiB', text: LARGE },
];

const ROUND_TRIP_TIMEOUT_MS = 30_000;
const TEST_TIMEOUT_MS = 60_000;

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

describe('SockJS over http', () => {
  const env = serverPair({ tls: false });
  for (const transport of TRANSPORTS) {
    test(`${transport} round-trips ascii, unicode and 64 KiB`, { timeout: TEST_TIMEOUT_MS }, () =>
      assertRoundTrip(env, transport),
    );
  }
});

describe('SockJS over https (self-signed dev certificate)', () => {
  const env = serverPair({ tls: true });
  for (const transport of TLS_TRANSPORTS) {
    test(`${transport} over TLS round-trips ascii, unicode and 64 KiB`, { timeout: TEST_TIMEOUT_MS }, () =>
      assertRoundTrip(env, transport),
    );
  }
});

/**
 * Registers before/after hooks in the current describe that start (and stop)
 * a page server and a rohrpost SockJS server on two loopback ports; with
 * `tls`, both serve https from a certificate made by `rohrpost gen-cert`.
 * Returns the object the hooks fill in: { tls, page, sockjs, certDir }.
 */
function serverPair({ tls }) {
  const env = { tls, page: null, sockjs: null, certDir: null };
  before(async () => {
    let cert;
    if (tls) {
      env.certDir = await mkdtemp(path.join(os.tmpdir(), 'rohrpost-browser-cert-'));
      cert = await generateDevCert(env.certDir);
    }
    env.page = await startPageServer({ tls: cert });
    env.sockjs = await startSockjsTestServer({
      clientUrl: `${env.page.origin}/sockjs.min.js`,
      tls: cert,
    });
  });
  after(async () => {
    await env.sockjs?.stop();
    await env.page?.close();
    if (env.certDir) await rm(env.certDir, { recursive: true, force: true });
  });
  return env;
}

/** Opens the page in a fresh context, runs the round trip over `transport`, checks every echo. */
async function assertRoundTrip(env, transport) {
  const context = await browser.newContext({ ignoreHTTPSErrors: env.tls });
  try {
    const page = await context.newPage();
    const pageEvents = recordPageEvents(page);
    await page.goto(`${env.page.origin}/`);
    const result = await page.evaluate(
      ([url, t, messages, timeoutMs]) => window.sockjsRoundTrip(url, t, messages, timeoutMs),
      [`${env.sockjs.baseUrl}/echo`, transport, MESSAGES.map((m) => m.text), ROUND_TRIP_TIMEOUT_MS],
    );

    const explain = () =>
      [
        `transport ${transport}: ${result.error ?? 'all echoes arrived'}`,
        `sockjs-client used transport: ${result.transport}; close: ${JSON.stringify(result.close)}`,
        '--- browser ---',
        pageEvents(),
        '--- server output (tail) ---',
        env.sockjs.output(),
      ].join('\n');

    assert.equal(result.error, null, explain());
    assert.equal(result.transport, transport, `sockjs-client did not use the forced transport\n${explain()}`);
    assert.equal(result.echoes.length, MESSAGES.length, explain());
    const differences = MESSAGES.flatMap((sent, i) => {
      const diff = describeDifference(result.echoes[i], sent.text);
      return diff === null ? [] : [`${sent.name} echo differs: ${diff}`];
    });
    assert.ok(differences.length === 0, `${differences.join('\n')}\n${explain()}`);
  } finally {
    await context.close();
  }
}

/** null when equal; otherwise where two strings first differ, short enough for 64 KiB inputs. */
function describeDifference(actual, expected) {
  if (actual === expected) return null;
  if (typeof actual !== 'string') return `got ${typeof actual} ${JSON.stringify(actual)}`;
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i += 1;
  // JSON with every non-ASCII UTF-16 unit as \uXXXX, so a mangled surrogate
  // or separator shows in the message.
  const around = (s) =>
    JSON.stringify(s.slice(Math.max(0, i - 10), i + 10)).replace(
      /[^\x20-\x7e]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
  return (
    `lengths ${actual.length} (got) vs ${expected.length} (sent), first difference at ` +
    `UTF-16 index ${i}: got ${around(actual)}, sent ${around(expected)}`
  );
}
