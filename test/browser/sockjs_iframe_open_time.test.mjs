// The iframe transports open well under sockjs-client's own timeout, measured
// against the reference server, sockjs-node 0.3.24, in the same run and the
// same browser. For each iframe transport, the echo page (on its own origin,
// so the transports run cross-origin) opens connections to `rohrpost
// sockjs-test-server`'s /echo and to sockjs-node's /echo, alternating: one
// untimed warm-up each, then OPENS_PER_TRANSPORT timed from `new SockJS(...)`
// to `onopen`. Neither server may fail an open (warm-ups included), and
// Rohrpost's slowest timed open must stay under OPEN_BOUND_MS, which
// sockjs-node's slowest must meet with a factor of two to spare (else the
// machine is too loaded for the figures to mean anything). The medians and
// maxima are printed for the lead to copy.
//
//   ROHRPOST_BIN=/work/main/target/release/rohrpost node --test test/browser/sockjs_iframe_open_time.test.mjs

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchChromium, recordPageEvents } from './lib/browser.mjs';
import { startPageServer } from './lib/page_server.mjs';
import { startSockjsTestServer } from './lib/rohrpost_server.mjs';
import { startSockjsNodeServer } from './lib/sockjs_node_server.mjs';

const IFRAME_TRANSPORTS = ['iframe-eventsource', 'iframe-htmlfile', 'iframe-xhr-polling'];
const OPENS_PER_TRANSPORT = 10;

// sockjs-client 1.6 gives a transport max(options.timeout, rto × roundTrips)
// ms to open (lib/main.js, _connect), where rto = countRTO(the /info RTT):
// 300 + rtt when the RTT is at most 100 ms, else 4 × rtt. The iframe
// transports count 3 round trips (transport/lib/iframe-wrap.js: the iframe's
// 2 plus the facade transport's 2, less 1), so on loopback the client gives up
// after 3 × (300 + rtt) ≥ 900 ms and closes with "All transports failed".
const CLIENT_TIMEOUT_FLOOR_MS = 3 * 300;
// Half the client's timeout at its floor. Measured in Chromium 156 on a
// 2-core machine busy with a cargo build, both servers open each iframe
// transport in 40–80 ms typically and at worst 210 ms, so sockjs-node meets
// OPEN_BOUND_MS / 2 with room, while an iframe page that holds its bootstrap
// back by half a second fails the bound on every open. The warm-up is not
// timed: a page's first open also fetches iframe.html into the cache and
// took up to 500 ms under that load on either server alike.
const OPEN_BOUND_MS = CLIENT_TIMEOUT_FLOOR_MS / 2;
/** The page's own limit on one open and echo, beyond the client's timeout. */
const ROUND_TRIP_TIMEOUT_MS = 5_000;
/** Every open of both servers at the page's limit, and room to start and close. */
const TEST_TIMEOUT_MS = 2 * (OPENS_PER_TRANSPORT + 1) * ROUND_TRIP_TIMEOUT_MS + 15_000;

let browser;
let pageServer;
let rohrpostServer;
let sockjsNodeServer;
before(async () => {
  browser = await launchChromium();
  pageServer = await startPageServer();
  const clientUrl = `${pageServer.origin}/sockjs.min.js`;
  rohrpostServer = await startSockjsTestServer({ clientUrl });
  sockjsNodeServer = await startSockjsNodeServer({ clientUrl });
});
after(async () => {
  await browser?.close();
  await rohrpostServer?.stop();
  await sockjsNodeServer?.stop();
  await pageServer?.close();
});

for (const transport of IFRAME_TRANSPORTS) {
  const name = `${transport} opens under ${OPEN_BOUND_MS} ms on rohrpost, as on sockjs-node`;
  test(name, { timeout: TEST_TIMEOUT_MS }, async () => {
    const runs = [
      await openPage('rohrpost', rohrpostServer),
      await openPage('sockjs-node', sockjsNodeServer),
    ];
    try {
      for (const run of runs) await run.open(transport, { timed: false });
      // Alternating, so that both servers see the same load on the machine.
      for (let i = 0; i < OPENS_PER_TRANSPORT; i += 1) {
        for (const run of runs) await run.open(transport, { timed: true });
      }
    } finally {
      await Promise.all(runs.map((run) => run.close()));
    }

    const [rohrpost, sockjsNode] = runs.map(summarize);
    const figures = [rohrpost, sockjsNode].map((s) => `${transport} ${s.line}`).join('\n');
    console.log(figures);
    const explain = (s) =>
      [
        figures,
        ...s.failures,
        `--- browser (${s.name}) ---`,
        s.events(),
        `--- ${s.name} output (tail) ---`,
        s.server.output(),
      ].join('\n');

    assert.equal(sockjsNode.failures.length, 0, `sockjs-node failed opens\n${explain(sockjsNode)}`);
    assert.ok(
      sockjsNode.maxMs <= OPEN_BOUND_MS / 2,
      `sockjs-node's slowest open took over ${OPEN_BOUND_MS / 2} ms: the machine is too loaded for ` +
        `this comparison\n${explain(sockjsNode)}`,
    );
    assert.equal(rohrpost.failures.length, 0, `rohrpost failed opens\n${explain(rohrpost)}`);
    assert.ok(
      rohrpost.maxMs < OPEN_BOUND_MS,
      `rohrpost's slowest open took ${Math.round(rohrpost.maxMs)} ms, not under ${OPEN_BOUND_MS} ms ` +
        `(the client gives up at ${CLIENT_TIMEOUT_FLOOR_MS} ms or later)\n${explain(rohrpost)}`,
    );
  });
}

/**
 * A fresh context and echo page for `server`; `open(transport, { timed })`
 * opens one connection over `transport`, echoes a message and closes,
 * recording why it failed, or when `timed` how long it took to open.
 */
async function openPage(name, server) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const events = recordPageEvents(page);
  await page.goto(`${pageServer.origin}/`);
  const run = { name, server, events, openMs: [], failures: [] };
  let opens = 0;
  run.open = async (transport, { timed }) => {
    opens += 1;
    const result = await page.evaluate(
      ([url, t, timeoutMs]) => window.sockjsRoundTrip(url, t, ['ping'], timeoutMs),
      [`${server.baseUrl}/echo`, transport, ROUND_TRIP_TIMEOUT_MS],
    );
    if (result.error !== null || result.transport !== transport) {
      run.failures.push(`open ${opens}: ${result.error ?? `sockjs-client used ${result.transport}`}`);
    } else if (timed) {
      run.openMs.push(result.openMs);
    }
  };
  run.close = () => context.close();
  return run;
}

/** Median and maximum open time of a run, and a line saying them. */
function summarize(run) {
  const sorted = [...run.openMs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianMs = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  const maxMs = sorted.at(-1);
  const ms = (v) => (v === undefined || Number.isNaN(v) ? '-' : `${Math.round(v)} ms`);
  const line =
    `${run.name}: median ${ms(medianMs)}, max ${ms(maxMs)} ` +
    `(${run.openMs.length} opened, ${run.failures.length} failed)`;
  return { ...run, medianMs, maxMs: maxMs ?? Infinity, line };
}
