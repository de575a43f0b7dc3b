// Pages with an opaque origin, whose requests carry `Origin: null`, connect
// to `rohrpost sockjs-test-server`'s /echo and round-trip a message over
// every transport sockjs-client offers them. Two such pages, as users have
// them: the echo page in an iframe sandboxed without allow-same-origin, and
// the echo page opened from file://. sockjs-client sends its XHRs (/info
// first) with credentials, so the server must answer `Origin: null` with
// `Access-Control-Allow-Origin: null` and `Access-Control-Allow-Credentials:
// true`, as sockjs-node does since 0.3.16; `*` is refused by the browser.
//
// What no server can change, found with sockjs-node 0.3.24 in Chromium:
// - sockjs-client never offers xhr-streaming or xhr-polling to a page whose
//   `document.domain` is empty (its `nullOrigin`), which every opaque-origin
//   page's is; a test below checks it still refuses them, so that they join
//   the others here when a client version offers them.
// - The iframe transports cannot run inside a sandboxed frame: the frame
//   they create inherits the sandbox, so its origin is opaque too and the
//   two frames' postMessage origin checks fail. They are tested from the
//   file:// page, whose frames are not sandboxed.
//
//   ROHRPOST_BIN=/work/main/target/release/rohrpost node --test test/browser/sockjs_null_origin.test.mjs

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { launchChromium, recordPageEvents } from './lib/browser.mjs';
import { startPageServer, writeEchoPageFile } from './lib/page_server.mjs';
import { startSockjsTestServer } from './lib/rohrpost_server.mjs';

/**
 * What a sandboxed frame can use; `null` is no `transports` option
 * (sockjs-client chooses). jsonp-polling sends by posting a form, which the
 * sandbox allows with allow-forms (the origin stays opaque).
 */
const SANDBOXED_FRAME_TRANSPORTS = [null, 'websocket', 'eventsource', 'jsonp-polling'];
const IFRAME_TRANSPORTS = ['iframe-eventsource', 'iframe-htmlfile', 'iframe-xhr-polling'];
const REFUSED_BY_CLIENT = ['xhr-streaming', 'xhr-polling'];
const MESSAGE = 'hello from Origin: null';

const ROUND_TRIP_TIMEOUT_MS = 10_000;
const TEST_TIMEOUT_MS = 30_000;
/** How long a request's headers may take to be reported after its response. */
const HEADERS_TIMEOUT_MS = 5_000;

let browser;
let pageServer;
let sockjs;
let fileDir;
let filePageUrl;
before(async () => {
  browser = await launchChromium();
  pageServer = await startPageServer();
  sockjs = await startSockjsTestServer({ clientUrl: `${pageServer.origin}/sockjs.min.js` });
  fileDir = await mkdtemp(path.join(os.tmpdir(), 'rohrpost-null-origin-'));
  filePageUrl = await writeEchoPageFile(fileDir, pageServer.origin);
});
after(async () => {
  await browser?.close();
  await sockjs?.stop();
  await pageServer?.close();
  if (fileDir) await rm(fileDir, { recursive: true, force: true });
});

const PAGES = {
  'sandboxed iframe': {
    transports: SANDBOXED_FRAME_TRANSPORTS,
    async open(page) {
      await page.goto(`${pageServer.origin}/sandboxed`);
      const frame = page.frame({ name: 'sandboxed' });
      if (!frame) throw new Error(`${pageServer.origin}/sandboxed has no frame named sandboxed`);
      return frame;
    },
  },
  'file:// page': {
    transports: [...SANDBOXED_FRAME_TRANSPORTS, ...IFRAME_TRANSPORTS],
    async open(page) {
      await page.goto(filePageUrl);
      return page.mainFrame();
    },
  },
};

for (const [pageName, { transports, open }] of Object.entries(PAGES)) {
  describe(`a ${pageName} (Origin: null)`, () => {
    for (const transport of transports) {
      const name = `connects and echoes over ${transport ?? 'the transport sockjs-client chooses'}`;
      test(name, { timeout: TEST_TIMEOUT_MS }, () =>
        withNullOriginPage(open, transport, async ({ frameOrigin, result, infoOrigin, explain }) => {
          assert.equal(frameOrigin, 'null', `the page's origin is not opaque\n${explain()}`);
          assert.equal(result.error, null, explain());
          if (transport !== null) {
            const why = `sockjs-client did not use the forced transport\n${explain()}`;
            assert.equal(result.transport, transport, why);
          }
          assert.deepEqual(result.echoes, [MESSAGE], explain());
          // Checked last: Chromium reports no headers for a request CORS
          // refused, and then the round trip's failure above says more.
          assert.equal(infoOrigin, 'null', `the /info request did not carry Origin: null\n${explain()}`);
        }),
      );
    }
  });
}

describe('a sandboxed iframe (Origin: null), what sockjs-client itself refuses', () => {
  const { open } = PAGES['sandboxed iframe'];
  for (const transport of REFUSED_BY_CLIENT) {
    const name = `sockjs-client does not offer ${transport}, so no server can serve it there`;
    test(name, { timeout: TEST_TIMEOUT_MS }, () =>
      withNullOriginPage(open, transport, async ({ result, sessionRequests, explain }) => {
        const why =
          `sockjs-client now offers ${transport} to null-origin pages: move it to the transports ` +
          `that must connect\n${explain()}`;
        assert.equal(result.openMs, null, why);
        assert.deepEqual(sessionRequests, [], why);
      }),
    );
  }
});

/**
 * Opens a fresh page, gets the null-origin frame from `open(page)`, round-trips
 * MESSAGE over `transport` there and hands `check` what happened:
 * { frameOrigin (the frame's `self.origin`), result (sockjsRoundTrip's),
 * infoOrigin (the Origin header the first /info request was sent with, or
 * '<not reported>': Chromium reports none for a request CORS refused),
 * sessionRequests (URLs of requests under a session path), explain() (what
 * the browser and the server saw, for failure messages) }.
 */
async function withNullOriginPage(open, transport, check) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const pageEvents = recordPageEvents(page);
    const infoOrigins = [];
    const sessionRequests = [];
    page.on('request', (request) => {
      const { pathname } = new URL(request.url());
      if (pathname === '/echo/info') infoOrigins.push(request.headerValue('origin'));
      else if (/^\/echo\/[^/]+\/[^/]+\//.test(pathname)) sessionRequests.push(request.url());
    });

    const frame = await open(page);
    const frameOrigin = await frame.evaluate(() => self.origin);
    const result = await frame.evaluate(
      ([url, t, message, timeoutMs]) => window.sockjsRoundTrip(url, t, [message], timeoutMs),
      [`${sockjs.baseUrl}/echo`, transport, MESSAGE, ROUND_TRIP_TIMEOUT_MS],
    );
    const infoOrigin = infoOrigins.length
      ? ((await withTimeout(infoOrigins[0], HEADERS_TIMEOUT_MS, 'the /info request headers')) ??
        '<not reported>')
      : '<no /info request>';

    const explain = () =>
      [
        `transport ${transport ?? '(client chooses)'}: ${result.error ?? 'the echo arrived'}`,
        `sockjs-client used transport: ${result.transport}; close: ${JSON.stringify(result.close)}`,
        `origin of the page: ${frameOrigin}; Origin header of its /info request: ${infoOrigin}`,
        '--- browser ---',
        pageEvents(),
        '--- server output (tail) ---',
        sockjs.output(),
      ].join('\n');
    await check({ frameOrigin, result, infoOrigin, sessionRequests, explain });
  } finally {
    await context.close();
  }
}

/** `promise`, or a rejection naming `what` after `ms`. */
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
