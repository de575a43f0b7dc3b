// The Rohrpost client library (static/js/rohrpost.js) under Node.
//
// First its pure logic against a scripted SockJS and /connect (pattern matching, queue order,
// backoff, restart codes, timeouts, resume tokens), then the real supervisor with two workers
// and its embedded broker: handshake, publish and receive, patterns, errors, queueing, a page
// reload, a staged restart and a killed worker the client rides out by itself, and close().
// The backend speaks through the server API and one `[[http_topics]]` rule served here.
//
//   ROHRPOST_BIN=/work/main/target/release/rohrpost node --test test/browser/client.test.mjs

import { test, before, after, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import http from 'node:http';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const SockJS = require('sockjs-client');
const { Rohrpost, patternMatches } = require(join(here, '../../static/js/rohrpost.js'));
const BIN = process.env.ROHRPOST_BIN || join(here, '../../target/release/rohrpost');
const KEY = 'test-key';
/** The longest any single wait in this file may take. */
const WAIT = 10_000;
/** The longest one server test may take, all its waits included. */
const TEST_TIMEOUT = 60_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Lets pending promise callbacks run (setImmediate is not among the mocked timers). */
const flush = () => new Promise((r) => setImmediate(r));

async function until(what, check, within = WAIT) {
  const deadline = Date.now() + within;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${within} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** Resolves with the next `{data, topic}` of `pattern` (a topic pattern or an event) on `client`. */
function next(client, pattern, within = WAIT) {
  return new Promise((resolve, reject) => {
    const handler = (data, topic) => {
      clearTimeout(timer);
      resolve({ data, topic });
    };
    const timer = setTimeout(() => {
      client.off(pattern, handler);
      reject(new Error(`nothing on ${pattern} within ${within} ms`));
    }, within);
    client.once(pattern, handler);
  });
}

/** Every client a test makes; whatever a test leaves open is closed after it, pass or fail. */
const clients = new Set();
afterEach(() => {
  for (const client of clients) client.close();
  clients.clear();
});

function track(client) {
  clients.add(client);
  return client;
}

// ---------------------------------------------------------------------------------------------
// The client's own logic, against a scripted server
// ---------------------------------------------------------------------------------------------

/**
 * A SockJS stand-in the test plays the server of: `accept()` opens, `tell()` delivers a
 * message, `drop()` closes from the server's side. `socks` lists every one made, in order.
 */
function scriptedSockJS() {
  const socks = [];
  class FakeSockJS {
    constructor(url, _reserved, options) {
      this.url = url;
      this.options = options;
      this.readyState = 0;
      this.sent = [];
      this.closedBy = null;
      socks.push(this);
    }
    send(text) {
      if (this.readyState !== 1) throw new Error(`send on readyState ${this.readyState}: ${text}`);
      this.sent.push(JSON.parse(text));
    }
    close(code, reason) {
      this.readyState = 3;
      this.closedBy = { code, reason };
    }
    accept(transport = 'websocket') {
      this.readyState = 1;
      this.transport = transport;
      this.onopen?.();
    }
    tell(topic, data) {
      this.onmessage?.({ data: JSON.stringify({ topic, data }) });
    }
    welcome(session = 'a'.repeat(32), resumed = false) {
      this.tell('rohrpost.welcome', { session, resume: `token-of-${session}`, resumed, whitelist: ['anonym.*'] });
    }
    drop(code, reason = '') {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }
  return { FakeSockJS, socks };
}

const HANG = Symbol('hang');

/**
 * A fetch for /connect answering from `answers` in turn (the last one repeats): a URL string,
 * an Error to reject with, or HANG for a request that only ends when aborted.
 */
function scriptedFetch(...answers) {
  const calls = [];
  const fetch = (url, init) => {
    const answer = answers[Math.min(calls.length, answers.length - 1)];
    calls.push({ url, init });
    if (answer === HANG) {
      return new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(new Error('aborted'))));
    }
    if (answer instanceof Error) return Promise.reject(answer);
    return Promise.resolve({ ok: true, status: 200, text: async () => `${answer}\n` });
  };
  fetch.calls = calls;
  return fetch;
}

/** A client on the scripted server, welcomed on its first socket. */
async function scriptedClient(options = {}) {
  const { FakeSockJS, socks } = scriptedSockJS();
  const fetch = options.fetch || scriptedFetch('http://w1/rohrpost');
  const client = track(new Rohrpost({ connectUrl: 'http://main/connect', SockJS: FakeSockJS, fetch, ...options }));
  await flush();
  return { client, socks, fetch };
}

/** Under mocked timers: ms until `fetch` is called again, ticking 1 ms at a time. */
async function msUntilNextAttempt(fetch, limit = 100_000) {
  const before = fetch.calls.length;
  for (let ms = 0; ms <= limit; ms++) {
    mock.timers.tick(ms === 0 ? 0 : 1);
    if (fetch.calls.length > before) {
      await flush(); // let this attempt's failure schedule the next one
      return ms;
    }
  }
  throw new Error(`no attempt within ${limit} ms`);
}

test('pattern matching follows the server: * is any run of characters, everything else literal', () => {
  const cases = [
    ['anonym.*', 'anonym.a.b', true],
    ['anonym.*', 'anonym.', true],
    ['anonym.*', 'anonym', false],
    ['*', 'x', true],
    ['*.end', 'a.b.end', true],
    ['a*b*c', 'a.x.b.y.c', true],
    ['a*b*c', 'a.x.c.y.b', false],
    ['a?b', 'a?b', true],
    ['a?b', 'axb', false],
    ['a[bc]d', 'a[bc]d', true],
    ['a[bc]d', 'abd', false],
    ['a.b', 'aXb', false],
    ['exact', 'exact', true],
    ['exact', 'exactly', false],
    ['**x', 'yyx', true],
    [`${'*a'.repeat(20)}b`, 'a'.repeat(60), false],
  ];
  for (const [pattern, topic, want] of cases) {
    assert.equal(patternMatches(pattern, topic), want, `${pattern} vs ${topic}`);
  }
});

test('says hello, and sends what was published before the welcome in order, then the rest', async () => {
  const { client, socks, fetch } = await scriptedClient({ transports: ['xhr-polling'] });
  assert.equal(fetch.calls[0].url, 'http://main/connect');
  assert.equal(socks[0].url, 'http://w1/rohrpost');
  assert.deepEqual(socks[0].options, { transports: ['xhr-polling'] });
  for (let i = 0; i < 5; i++) client.publish('anonym.q', i);
  client.on('open', () => client.publish('anonym.q', 'from open'));
  socks[0].accept('xhr-polling');
  assert.deepEqual(socks[0].sent, [{ hello: 1 }]);
  client.publish('anonym.q', 5); // open socket, but no welcome yet: still queued
  socks[0].welcome();
  client.publish('anonym.q', 6);
  assert.deepEqual(socks[0].sent.slice(1).map((m) => m.data), [0, 1, 2, 3, 4, 5, 'from open', 6]);
  assert.equal(client.state, 'open');
  assert.equal(client.transport, 'xhr-polling');
  assert.equal(client.url, 'http://w1/rohrpost');
});

test('handlers get (data, topic); events and topics never mix; a throwing handler spares the rest', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const { client, socks } = await scriptedClient();
  socks[0].accept();
  socks[0].welcome();
  const got = [];
  client.on('anonym.*', (data, topic) => got.push([topic, data]));
  client.on('anonym.*', () => { throw new Error('handler bug'); });
  client.on('anonym.*', (data) => got.push(['again', data]));
  client.on('state', (s) => got.push(['state', s]));
  socks[0].tell('anonym.x', { n: 1 });
  socks[0].tell('state', 'not an event');
  assert.deepEqual(got, [['anonym.x', { n: 1 }], ['again', { n: 1 }]]);
  // The handler's error is rethrown from a timer of its own, where it is reported.
  assert.throws(() => mock.timers.runAll(), /handler bug/);
});

test('a message published while the socket is closing is queued, not lost', async () => {
  const { client, socks } = await scriptedClient();
  socks[0].accept();
  socks[0].welcome();
  socks[0].readyState = 2; // SockJS has seen the close frame; onclose comes a tick later
  client.publish('anonym.q', 'closing');
  client.on('close', () => client.publish('anonym.q', 'in close handler'));
  socks[0].drop(1012, 'Service Restart');
  assert.equal(client.state, 'reconnecting');
  await until('the second socket', () => socks[1]);
  socks[1].accept();
  assert.deepEqual(socks[1].sent, [{ hello: 1, resume: `token-of-${'a'.repeat(32)}` }]);
  socks[1].welcome('a'.repeat(32), true);
  assert.deepEqual(socks[1].sent.slice(1).map((m) => m.data), ['closing', 'in close handler']);
  assert.equal(client.reconnects, 1);
});

test('backoff doubles with jitter up to maxBackoff and never gives up; close() stops it', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const random = t.mock.method(Math, 'random', () => 1);
  const fetch = scriptedFetch(new Error('connection refused'));
  const { client } = await scriptedClient({ fetch, maxBackoff: 3000 });
  const closes = [];
  client.on('close', (e) => closes.push(e));
  const delays = [];
  for (let i = 0; i < 7; i++) delays.push(await msUntilNextAttempt(fetch));
  random.mock.mockImplementation(() => 0); // the most jitter: half the ceiling, from the next pause
  for (let i = 0; i < 2; i++) delays.push(await msUntilNextAttempt(fetch));
  assert.deepEqual(delays, [250, 500, 1000, 2000, 3000, 3000, 3000, 3000, 1500]);
  assert.equal(client.state, 'connecting');
  assert.ok(closes.length >= 9 && closes.every((e) => e.code === 4001 && e.willReconnect), JSON.stringify(closes[0]));

  client.close();
  const attempts = fetch.calls.length;
  mock.timers.tick(60_000);
  await flush();
  assert.equal(fetch.calls.length, attempts, 'no attempt after close()');
  assert.equal(client.state, 'closed');
});

test('a restart close (1012, or 0.x\'s 100) retries at once, once; other closes back off', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  t.mock.method(Math, 'random', () => 1);
  const fetch = scriptedFetch('http://w1/rohrpost', new Error('503'), 'http://w2/rohrpost');
  const { client, socks } = await scriptedClient({ fetch });
  socks[0].accept();
  socks[0].welcome();
  socks[0].drop(1012, 'Service Restart');
  assert.equal(await msUntilNextAttempt(fetch), 0, 'at once after 1012');
  assert.equal(await msUntilNextAttempt(fetch), 250, 'the try after a failed one backs off');
  await flush();
  socks[1].accept();
  socks[1].welcome('a'.repeat(32), true);
  assert.equal(client.url, 'http://w2/rohrpost');

  socks[1].drop(100, 'legacy restart');
  assert.equal(await msUntilNextAttempt(fetch), 0, 'at once after 100');
  await flush();
  socks[2].accept();
  socks[2].drop(1012, 'restart before the welcome'); // not an open session: no shortcut
  assert.equal(await msUntilNextAttempt(fetch), 250);
  await flush();
  socks[3].accept();
  socks[3].welcome('a'.repeat(32), true);
  socks[3].drop(1006, 'lost');
  assert.equal(await msUntilNextAttempt(fetch), 250, 'a lost connection backs off');
});

test('a worker that cannot be reached is skipped: the next try asks /connect again', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const fetch = scriptedFetch('http://dead/rohrpost', 'http://alive/rohrpost');
  const { client, socks } = await scriptedClient({ fetch });
  socks[0].drop(2000, 'All transports failed');
  await msUntilNextAttempt(fetch);
  await flush();
  assert.equal(socks.length, 2);
  assert.equal(socks[1].url, 'http://alive/rohrpost');
  socks[1].accept();
  socks[1].welcome();
  assert.equal(client.state, 'open');
  assert.equal(client.url, 'http://alive/rohrpost');
});

test('every attempt is bounded: a hanging /connect or a missing welcome is abandoned and retried', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const fetch = scriptedFetch(HANG, 'http://w1/rohrpost');
  const { client, socks } = await scriptedClient({ fetch, connectTimeout: 2000 });
  const closes = [];
  client.on('close', (e) => closes.push(e));
  mock.timers.tick(2000);
  await flush();
  assert.equal(fetch.calls[0].init.signal.aborted, true);
  assert.deepEqual(closes.map((e) => e.code), [4000]);
  await msUntilNextAttempt(fetch);
  await flush();
  socks[0].accept(); // open, but the welcome never comes
  mock.timers.tick(2000);
  assert.deepEqual(closes.map((e) => e.code), [4000, 4000]);
  assert.equal(socks[0].closedBy.code, 1000);
  assert.equal(client.state, 'connecting');
});

test('the queue is bounded, and publishing after close() is refused, both as error events', async () => {
  const { client } = await scriptedClient({ maxQueue: 2 });
  const errors = [];
  client.on('error', (e) => errors.push(e));
  client.publish('anonym.a', 1).publish('anonym.a', 2).publish('anonym.a', 3);
  assert.deepEqual(errors.map((e) => [e.code, e.topic]), [['queue_full', 'anonym.a']]);
  client.close();
  client.publish('anonym.b', 4);
  assert.deepEqual(errors.map((e) => e.code), ['queue_full', 'closed']);
  assert.throws(() => client.publish('', 1), TypeError);
});

test('the resume token is kept in sessionStorage when resume is on, and only then', async (t) => {
  const stored = new Map();
  globalThis.sessionStorage = {
    getItem: (k) => (stored.has(k) ? stored.get(k) : null),
    setItem: (k, v) => stored.set(k, String(v)),
  };
  t.after(() => { delete globalThis.sessionStorage; });
  const first = await scriptedClient();
  first.socks[0].accept();
  first.socks[0].welcome('b'.repeat(32));
  assert.deepEqual([...stored.values()], [`token-of-${'b'.repeat(32)}`]);

  const reloaded = await scriptedClient();
  reloaded.socks[0].accept();
  assert.deepEqual(reloaded.socks[0].sent, [{ hello: 1, resume: `token-of-${'b'.repeat(32)}` }]);

  stored.clear();
  const ephemeral = await scriptedClient({ resume: false });
  ephemeral.socks[0].accept();
  ephemeral.socks[0].welcome('c'.repeat(32));
  assert.equal(stored.size, 0);
  ephemeral.socks[0].drop(1006);
  await until('the retry', () => ephemeral.socks[1], 2000);
  ephemeral.socks[1].accept();
  assert.deepEqual(ephemeral.socks[1].sent, [{ hello: 1, resume: `token-of-${'c'.repeat(32)}` }], 'reconnects still resume');
});

test('the ES module entry exports the same client', async () => {
  const mod = await import('../../static/js/rohrpost.mjs');
  assert.equal(mod.Rohrpost, Rohrpost);
  assert.equal(mod.default, Rohrpost);
  assert.equal(mod.patternMatches('a.*', 'a.b'), true);
});

// ---------------------------------------------------------------------------------------------
// Against the real supervisor
// ---------------------------------------------------------------------------------------------

let server = null;
let serverLog = '';
let mainPort;
/** What the HTTP backend of `anonym.hook.*` received: each client message's payload. */
const hooked = [];
let hook;

/** A main port with the two worker ports after it free, on 127.0.0.1. */
async function freeBlock() {
  const free = (port) => new Promise((resolve) => {
    const s = net.createServer().once('error', () => resolve(false))
      .listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
  for (let i = 0; i < 50; i++) {
    const base = await new Promise((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    });
    if (base < 60000 && (await free(base + 1)) && (await free(base + 2))) return base;
  }
  throw new Error('no free block of three ports on 127.0.0.1');
}

async function health() {
  try {
    return await (await fetch(`http://127.0.0.1:${mainPort}/health`, { signal: AbortSignal.timeout(2000) })).json();
  } catch {
    return null;
  }
}

/** The server API, as a backend uses it. */
async function api(path, body) {
  const res = await fetch(`http://127.0.0.1:${mainPort}${path}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT),
  });
  assert.ok(res.ok, `${path}: ${res.status} ${await res.text()}`);
}

/** Records every message the client library hands to SockJS, and the socket's state then. */
function recordingSockJS() {
  const wire = [];
  let socks = 0;
  function RecordingSockJS(url, reserved, options) {
    const sock = new SockJS(url, reserved, options);
    const id = socks++;
    const send = sock.send.bind(sock);
    sock.send = (text) => {
      wire.push({ sock: id, readyState: sock.readyState, message: JSON.parse(text) });
      send(text);
    };
    return sock;
  }
  return { RecordingSockJS, wire };
}

/** Records every /connect the client makes: when, and which worker it was given. */
function recordingFetch() {
  const calls = [];
  const spy = async (url, init) => {
    const call = { at: Date.now(), answer: null };
    calls.push(call);
    const res = await fetch(url, init);
    const text = await res.text();
    call.answer = text.trim();
    return new Response(text, { status: res.status });
  };
  spy.calls = calls;
  return spy;
}

function serverClient(options = {}) {
  return track(new Rohrpost({
    connectUrl: `http://127.0.0.1:${mainPort}/connect`,
    SockJS,
    transports: ['websocket'],
    ...options,
  }));
}

async function opened(options) {
  const client = serverClient(options);
  const { data } = await next(client, 'open');
  return { client, welcome: data };
}

/** Waits until server-API publishes on `topic` reach `client` (its subscription is live). */
async function settle(client, topic) {
  let got = false;
  const probe = () => { got = true; };
  client.on(topic, probe);
  await until(`a probe on ${topic} to arrive`, async () => {
    await api('/api/publish', { topic, data: { probe: true } });
    await sleep(30);
    return got;
  });
  client.off(topic, probe);
  await sleep(100); // let late probes pass
}

const hookedWith = (tag) => hooked.filter((d) => d && d.tag === tag).map((d) => d.i);

before(async () => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run cargo build --release (or set ROHRPOST_BIN)`);
  // The HTTP backend of `anonym.hook.*`: records the payload and echoes its data back to the
  // sender on `anonym.echo`, as a backend's answer (applied like a direct-topic message).
  hook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      let payload = null;
      try { payload = JSON.parse(body); } catch { /* recorded as null */ }
      hooked.push(payload?.data ?? null);
      res.writeHead(200, { 'Content-Type': 'application/json' })
        .end(JSON.stringify({ topic: 'anonym.echo', data: { echo: payload?.data ?? null, session: payload?.sessionId } }));
    });
  });
  await new Promise((r) => hook.listen(0, '127.0.0.1', r));
  mainPort = await freeBlock();
  const dir = mkdtempSync(join(tmpdir(), 'rohrpost-client-'));
  writeFileSync(join(dir, 'r.toml'), `
[http]
host = "127.0.0.1"
host_external = "127.0.0.1"
main_port = ${mainPort}
worker_base_port = ${mainPort + 1}
static_dir = ""
[workers]
count = 2
drain_timeout = "5s"
[sessions]
default_whitelist = ["anonym.*"]
[api]
key = "${KEY}"
[[http_topics]]
pattern = "anonym.hook.*"
url = "http://127.0.0.1:${hook.address().port}/hook"
`);
  serverLog = join(dir, 'rohrpost.log');
  const log = openSync(serverLog, 'w');
  // setpriv ties the supervisor's life to this process, should the runner kill it hard.
  const setpriv = '/usr/bin/setpriv';
  const [command, args] = existsSync(setpriv)
    ? [setpriv, ['--pdeathsig', 'KILL', '--', BIN, '--config', 'r.toml']]
    : [BIN, ['--config', 'r.toml']];
  server = spawn(command, args, { cwd: dir, stdio: ['ignore', log, log] });
  process.once('exit', () => server.kill('SIGKILL'));
  await until('both workers ready', async () => {
    if (server.exitCode !== null) throw new Error(`rohrpost exited early; see ${serverLog}:\n${readFileSync(serverLog, 'utf8').slice(-4000)}`);
    return (await health())?.ready_workers === 2;
  }, 20_000);
});

after(async () => {
  hook?.close();
  hook?.closeAllConnections();
  if (server && server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await Promise.race([exited, sleep(8000)]);
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  }
});

test('connects through /connect and is welcomed with a new session', { timeout: TEST_TIMEOUT }, async () => {
  const client = serverClient();
  const states = [];
  client.on('state', (s) => states.push(s));
  assert.equal(client.state, 'connecting');
  const { data } = await next(client, 'open');
  assert.deepEqual(states, ['open']);
  assert.equal(data.resumed, false);
  assert.equal(typeof data.resume, 'string');
  assert.match(client.session, /^[0-9a-f]{32}$/);
  assert.equal(data.session, client.session);
  assert.deepEqual(client.whitelist, ['anonym.*']);
  assert.equal(client.transport, 'websocket');
  assert.match(client.url, new RegExp(`^http://127\\.0\\.0\\.1:(${mainPort + 1}|${mainPort + 2})/`));
  assert.equal(client.reconnects, 0);
});

test('a round trip: the client publishes, the backend answers, server-API publishes arrive by pattern', { timeout: TEST_TIMEOUT }, async () => {
  const { client } = await opened();
  const echo = next(client, 'anonym.*');
  client.publish('anonym.hook.x', { tag: 'trip', i: 1 });
  const answer = await echo;
  assert.equal(answer.topic, 'anonym.echo');
  assert.deepEqual(answer.data, { echo: { tag: 'trip', i: 1 }, session: client.session });

  await settle(client, 'anonym.x');
  const news = next(client, 'anonym.*');
  await api('/api/publish', { topic: 'anonym.x', data: { headline: 'hello' } });
  assert.deepEqual(await news, { topic: 'anonym.x', data: { headline: 'hello' } });
});

test('patterns match as on the server: * spans dots, ? is literal', { timeout: TEST_TIMEOUT }, async () => {
  const { client } = await opened();
  await settle(client, 'anonym.a?c');
  const literal = [];
  const wide = [];
  client.on('anonym.a?c', (d, topic) => literal.push(topic));
  client.on('anonym.*.z', (d, topic) => wide.push(topic));
  for (const topic of ['anonym.abc', 'anonym.a?c', 'anonym.q.z', 'anonym.q.r.z', 'anonym.z']) {
    await api('/api/publish', { topic, data: topic });
  }
  const all = [];
  client.on('anonym.*', (d) => all.push(d));
  await api('/api/publish', { topic: 'anonym.done', data: 'done' });
  await until('the last message', () => all.includes('done'));
  assert.deepEqual(literal, ['anonym.a?c']);
  assert.deepEqual(wide, ['anonym.q.z', 'anonym.q.r.z']);
});

test('once fires once; off removes one handler or all of a pattern', { timeout: TEST_TIMEOUT }, async () => {
  const { client } = await opened();
  await settle(client, 'anonym.count');
  const seen = { once: [], removed: [], kept: [], all: [] };
  const removed = (d) => seen.removed.push(d);
  client.once('anonym.count', (d) => seen.once.push(d));
  client.on('anonym.count', removed);
  client.on('anonym.count', (d) => seen.kept.push(d));
  client.off('anonym.count', removed);
  client.on('anonym.*', (d) => seen.all.push(d));
  for (const n of [1, 2, 3]) await api('/api/publish', { topic: 'anonym.count', data: n });
  await until('three messages', () => seen.all.length === 3);
  assert.deepEqual(seen, { once: [1], removed: [], kept: [1, 2, 3], all: [1, 2, 3] });

  client.off('anonym.count');
  await api('/api/publish', { topic: 'anonym.count', data: 4 });
  await until('the fourth message', () => seen.all.length === 4);
  assert.deepEqual(seen.kept, [1, 2, 3]);
});

test('a publish off the whitelist comes back as an error event', { timeout: TEST_TIMEOUT }, async () => {
  const { client } = await opened();
  const error = next(client, 'error');
  client.publish('secret.stuff', 1);
  const { data } = await error;
  assert.equal(data.code, 'not_whitelisted');
  assert.equal(data.topic, 'secret.stuff');
  assert.equal(typeof data.message, 'string');
  assert.equal(client.state, 'open', 'an error does not end the session');
});

test('messages published before the session opens are sent after the welcome, in order', { timeout: TEST_TIMEOUT }, async () => {
  const { RecordingSockJS, wire } = recordingSockJS();
  const client = serverClient({ SockJS: RecordingSockJS });
  const tag = `queue-${Date.now()}`;
  for (let i = 0; i < 20; i++) client.publish('anonym.hook.queue', { tag, i });
  assert.equal(client.state, 'connecting');
  await next(client, 'open');
  assert.ok('hello' in wire[0].message, 'the hello goes first');
  const sent = wire.slice(1);
  assert.deepEqual(sent.map((w) => w.message.data.i), [...Array(20).keys()]);
  assert.ok(sent.every((w) => w.readyState === 1), 'all sent on an open socket');
  await until('the queued messages at the backend', () => hookedWith(tag).length === 20);
  assert.deepEqual(hookedWith(tag).sort((a, b) => a - b), [...Array(20).keys()]);
});

test('a page reload resumes the session through sessionStorage', { timeout: TEST_TIMEOUT }, async (t) => {
  const stored = new Map();
  globalThis.sessionStorage = {
    getItem: (k) => (stored.has(k) ? stored.get(k) : null),
    setItem: (k, v) => stored.set(k, String(v)),
  };
  t.after(() => { delete globalThis.sessionStorage; });
  const { client: page } = await opened();
  const session = page.session;
  page.close();
  const { client: reloaded, welcome } = await opened();
  assert.equal(welcome.resumed, true);
  assert.equal(reloaded.session, session);
  const { welcome: fresh } = await opened({ resume: false });
  assert.equal(fresh.resumed, false);
  assert.notEqual(fresh.session, session);
});

test('a staged restart (SIGHUP): at once back, same session, messages typed meanwhile sent in order', { timeout: TEST_TIMEOUT }, async () => {
  const { RecordingSockJS, wire } = recordingSockJS();
  const connects = recordingFetch();
  const { client } = await opened({ SockJS: RecordingSockJS, fetch: connects });
  const session = client.session;
  const closes = [];
  const reconnects = [];
  client.on('close', (e) => closes.push({ ...e, at: Date.now() }));
  client.on('reconnect', (e) => reconnects.push(e));
  const errors = [];
  client.on('error', (e) => errors.push(e));
  const generations = (await health()).workers.map((w) => w.generation);
  const tag = `roll-${Date.now()}`;
  process.kill(server.pid, 'SIGHUP');
  // "Typing" through the restart: 60 messages over 3 s, some queued while between workers.
  for (let i = 0; i < 60; i++) {
    client.publish('anonym.hook.roll', { tag, i });
    await sleep(50);
  }
  await until('the roll to finish', async () => {
    const h = await health();
    return h?.ready_workers === 2 && h.workers.every((w, i) => w.generation > generations[i]);
  }, 30_000);
  await until('the client to be open again', () => client.state === 'open');

  const restarts = closes.filter((e) => e.code === 1012);
  assert.ok(restarts.length >= 1, `closes: ${JSON.stringify(closes)}`);
  for (const close of restarts) {
    assert.equal(close.willReconnect, true);
    const retry = connects.calls.find((c) => c.at >= close.at);
    assert.ok(retry && retry.at - close.at < 100, `asked /connect ${retry && retry.at - close.at} ms after the 1012`);
  }
  assert.ok(reconnects.length >= 1 && reconnects.length === client.reconnects);
  for (const r of reconnects) {
    assert.equal(r.resumed, true);
    assert.ok(r.gap >= 0 && r.gap < 2000, `gap ${r.gap} ms`);
  }
  assert.equal(client.session, session, 'same session after the restart');

  const sent = wire.filter((w) => w.message.data?.tag === tag);
  assert.deepEqual(sent.map((w) => w.message.data.i), [...Array(60).keys()], 'sent once each, in order');
  assert.ok(sent.every((w) => w.readyState === 1), 'all sent on open sockets');
  assert.ok(new Set(sent.map((w) => w.sock)).size >= 2, 'some sent after the reconnect');
  await until('every typed message at the backend', () => new Set(hookedWith(tag)).size === 60, 15_000)
    .catch((e) => {
      const got = new Set(hookedWith(tag));
      const missing = [...Array(60).keys()].filter((i) => !got.has(i));
      throw new Error(`${e.message}; missing ${JSON.stringify(missing)}; errors ${JSON.stringify(errors)}; closes ${JSON.stringify(closes)}`);
    });
  assert.deepEqual(errors, [], 'no error events');
});

test('a killed worker: the client backs off, asks /connect again, and resumes on the other worker', { timeout: TEST_TIMEOUT }, async () => {
  // A 100 ms ceiling makes the first retry land before the supervisor has the victim back
  // (it restarts a crashed worker after 100 ms), so /connect can only name the other one.
  const connects = recordingFetch();
  const { client } = await opened({ fetch: connects, maxBackoff: 100 });
  const session = client.session;
  const victimPort = Number(new URL(client.url).port);
  const victim = (await health()).workers.find((w) => w.port === victimPort);
  const states = [];
  const closes = [];
  client.on('state', (s) => states.push(s));
  client.on('close', (e) => closes.push(e));
  const reconnected = next(client, 'reconnect');
  const asked = connects.calls.length;
  process.kill(victim.pid, 'SIGKILL');
  const { data } = await reconnected;
  assert.equal(data.resumed, true);
  assert.ok(data.gap >= 50, `backed off: gap ${data.gap} ms`);
  assert.notEqual(closes[0].code, 1012);
  assert.deepEqual(states.slice(0, 1), ['reconnecting']);
  assert.equal(client.state, 'open');
  assert.equal(client.session, session);
  assert.ok(connects.calls.length > asked, 'asked /connect again');
  assert.equal(client.url, connects.calls.at(-1).answer);
  assert.notEqual(Number(new URL(client.url).port), victimPort, 'resumed on the other worker');
  await until('the killed worker to be back', async () => (await health())?.ready_workers === 2, 20_000);
});

test('close() ends the session for good: no more tries, even when its worker restarts', { timeout: TEST_TIMEOUT }, async () => {
  const { RecordingSockJS, wire } = recordingSockJS();
  const connects = recordingFetch();
  const { client } = await opened({ SockJS: RecordingSockJS, fetch: connects });
  const states = [];
  const closes = [];
  client.on('state', (s) => states.push(s));
  client.on('close', (e) => closes.push(e));
  client.close();
  assert.equal(client.state, 'closed');
  assert.deepEqual(states, ['closed']);
  assert.deepEqual(closes, [{ code: 1000, reason: 'client closed', willReconnect: false }]);
  client.close(); // a second close does nothing
  const generations = (await health()).workers.map((w) => w.generation);
  await api('/api/restart', {});
  await until('the restart to finish', async () => {
    const h = await health();
    return h?.ready_workers === 2 && h.workers.every((w, i) => w.generation > generations[i]);
  }, 30_000);
  await sleep(500);
  assert.equal(connects.calls.length, 1, 'no /connect after close()');
  assert.equal(wire.length, 1, 'nothing sent after close()');
  assert.equal(client.state, 'closed');
  assert.equal(closes.length, 1);
});
