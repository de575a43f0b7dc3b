// Debian's Chromium driven by playwright-core, and a recorder of what a page
// did (console, page errors, network) so that a failing test can say what the
// browser saw, not just that an echo was missing.

import { chromium } from 'playwright-core';

const CHROMIUM_PATH = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const LAUNCH_TIMEOUT_MS = 30_000;
/** Entries kept per page; the oldest are dropped first. */
const MAX_EVENTS = 300;
/** Long URLs (JSONP callbacks, session paths) are cut to this for the log. */
const MAX_URL_CHARS = 160;
const MAX_BODY_CHARS = 500;

/** Launches headless Chromium; the caller closes it. */
export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    timeout: LAUNCH_TIMEOUT_MS,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * Records what `page` (and its iframes) does. Returns a function giving the
 * record as text, one event per line.
 */
export function recordPageEvents(page) {
  const events = [];
  const log = (line) => {
    events.push(line);
    if (events.length > MAX_EVENTS) events.shift();
  };

  page.on('console', (m) => log(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  page.on('requestfailed', (r) =>
    log(`request failed: ${r.method()} ${short(r.url())}: ${r.failure()?.errorText}`),
  );
  page.on('response', async (r) => {
    const line = `${r.status()} ${r.request().method()} ${short(r.url())}`;
    if (r.status() < 400) {
      log(line);
      return;
    }
    const body = await r.text().catch((e) => `<body unavailable: ${e.message}>`);
    log(`${line} body=${JSON.stringify(body.slice(0, MAX_BODY_CHARS))}`);
  });
  page.on('websocket', (ws) => {
    log(`websocket opened: ${short(ws.url())}`);
    ws.on('socketerror', (e) => log(`websocket error: ${e}`));
    ws.on('close', () => log('websocket closed'));
  });

  return () => events.join('\n');
}

function short(url) {
  return url.length > MAX_URL_CHARS ? `${url.slice(0, MAX_URL_CHARS)}…` : url;
}
