// The Rohrpost client library (static/js/rohrpost.js) under Node.
//
// First its pure logic against a scripted SockJS and /connect (pattern matching, queue order,
// backoff, restart codes, timeouts, resume tokens, positions, acknowledgements, takeover), then
// the real supervisor with two workers and its embedded broker: handshake, publish and receive,
// patterns, errors, queueing, a page reload, a staged restart and a killed worker the client
// rides out by itself, close(); and issue 11's delivery guarantees: positions sent back as
// `since`, recovery after a reload and across a staged restart (every numbered message counted),
// acks and errors settling publish promises, unacknowledged messages resent with their ids, and
// a takeover (close 4001) leading to a fresh session.
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
import { createHmac } from 'node:crypto';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const SockJS = require('sockjs-client');
const { Rohrpost, patternMatches } = require(join(here, '../../static/js/rohrpost.js'));
const BIN = process.env.ROHRPOST_BIN || join(here, '../../target/release/rohrpost');
const KEY = 'test-key';
/** The server's `auth.hs256_secret`: tokens signed with it are valid. */
const JWT_SECRET = 'client-test secret of at least thirty-two bytes';
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
    tell(topic, data, pos) {
      this.onmessage?.({ data: JSON.stringify(pos === undefined ? { topic, data } : { topic, data, pos }) });
    }
    welcome(session = 'a'.repeat(32), resumed = false, extra = {}) {
      this.tell('rohrpost.welcome', { session, resume: `token-of-${session}`, resumed, whitelist: ['anonym.*'], ...extra });
    }
    /** The messages sent after the hello that carry an id. */
    published() {
      return this.sent.filter((m) => 'id' in m);
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

test('the queue is bounded, and publishing after close() is refused, both as error events and rejections', async () => {
  const { client } = await scriptedClient({ maxQueue: 2 });
  const errors = [];
  client.on('error', (e) => errors.push(e));
  const answers = [1, 2, 3].map((n) => settled(client.publish('anonym.a', n)));
  assert.deepEqual(errors.map((e) => [e.code, e.topic]), [['queue_full', 'anonym.a']]);
  client.close();
  const late = settled(client.publish('anonym.b', 4));
  assert.deepEqual(errors.map((e) => e.code), ['queue_full', 'closed']);
  assert.throws(() => client.publish('', 1), TypeError);
  await flush();
  // The two queued ones were never sent: close() rejects them without error events.
  assert.deepEqual(answers.map((a) => a.error?.code), ['closed', 'closed', 'queue_full']);
  assert.match(answers[0].error.message, /not sent/);
  assert.equal(late.error.code, 'closed');
  assert.deepEqual(errors.map((e) => e.code), ['queue_full', 'closed']);
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

/** A publish's answer within WAIT: its value, or the Error it was rejected with. */
function answerOf(promise, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer to ${what} within ${WAIT} ms`)), WAIT);
  });
  return Promise.race([promise.then((v) => v, (e) => e), late]).finally(() => clearTimeout(timer));
}

/** Tracks a promise's outcome: `{done, value, error}`, filled in once it settles. */
function settled(promise) {
  const outcome = { done: false, value: undefined, error: undefined };
  promise.then(
    (value) => Object.assign(outcome, { done: true, value }),
    (error) => Object.assign(outcome, { done: true, error }),
  );
  return outcome;
}

/** A stand-in for one page's sessionStorage; `copy()` is a duplicated tab's. */
function memoryStorage(entries = []) {
  const stored = new Map(entries);
  return {
    stored,
    getItem: (k) => (stored.has(k) ? stored.get(k) : null),
    setItem: (k, v) => stored.set(k, String(v)),
    removeItem: (k) => stored.delete(k),
    copy: () => memoryStorage(stored),
  };
}

/** Makes `storage` the page's sessionStorage for the clients created while it is set. */
function useStorage(t, storage) {
  globalThis.sessionStorage = storage;
  t.after(() => { delete globalThis.sessionStorage; });
  return storage;
}

test('the last position (welcome, messages, rohrpost.pos) is kept in memory and sessionStorage and sent as since', async (t) => {
  const storage = useStorage(t, memoryStorage());
  const { client, socks } = await scriptedClient();
  const seen = [];
  client.on('*', (data, topic) => seen.push([topic, data, client.pos]));
  socks[0].accept();
  socks[0].welcome('e'.repeat(32), false, { pos: 'ep:5' });
  assert.equal(client.pos, 'ep:5');
  socks[0].tell('anonym.x', 'one', 'ep:7');
  socks[0].tell('anonym.y', 'unpositioned'); // a plain Redis PUBLISH: no pos, nothing changes
  socks[0].tell('rohrpost.pos', { pos: 'ep:9' });
  assert.deepEqual(seen, [['anonym.x', 'one', 'ep:7'], ['anonym.y', 'unpositioned', 'ep:7']],
    'pos is updated before the handlers run; the notice reaches no pattern');
  assert.equal(client.pos, 'ep:9');
  const url = 'http://main/connect';
  assert.deepEqual(Object.fromEntries(storage.stored), {
    [`rohrpost.resume:${url}`]: `token-of-${'e'.repeat(32)}`,
    [`rohrpost.pos:${url}`]: 'ep:9',
  });

  socks[0].drop(1012, 'Service Restart');
  await until('the second socket', () => socks[1]);
  socks[1].accept();
  assert.deepEqual(socks[1].sent, [{ hello: 1, resume: `token-of-${'e'.repeat(32)}`, since: 'ep:9' }]);

  // A reload: the new page starts from what the old one stored (a page that goes away says no
  // goodbye; close() does, and then forgets the session, which has ended).
  const kept = storage.copy();
  client.close();
  assert.deepEqual(Object.fromEntries(storage.stored), {}, 'close() forgets the ended session');
  useStorage(t, kept);
  const reloaded = await scriptedClient();
  reloaded.socks[0].accept();
  assert.deepEqual(reloaded.socks[0].sent, [{ hello: 1, resume: `token-of-${'e'.repeat(32)}`, since: 'ep:9' }]);
  assert.equal(reloaded.client.pos, 'ep:9');
});

test('reconnect reports recovered; a reconnect that cannot recover and a pos notice saying so are gap events', async () => {
  const { client, socks } = await scriptedClient();
  const events = [];
  for (const name of ['open', 'reconnect', 'gap']) client.on(name, (e) => events.push([name, e]));
  socks[0].accept();
  socks[0].welcome('a'.repeat(32), false, { pos: 'ep:1' });
  socks[0].drop(1012, 'Service Restart');
  await until('the second socket', () => socks[1]);
  socks[1].accept();
  socks[1].welcome('a'.repeat(32), true, { pos: 'ep:1', recovered: true });
  socks[1].drop(1012, 'Service Restart');
  await until('the third socket', () => socks[2]);
  socks[2].accept();
  assert.deepEqual(socks[2].sent[0].since, 'ep:1');
  socks[2].welcome('a'.repeat(32), true, { pos: 'other:3', recovered: false });
  socks[2].tell('rohrpost.pos', { pos: 'other:8', recovered: false });
  const shape = events.map(([name, e]) => (name === 'open' ? [name, e.pos]
    : name === 'reconnect' ? [name, e.resumed, e.recovered] : [name, e.cause, e.pos]));
  assert.deepEqual(shape, [
    ['open', 'ep:1'],
    ['reconnect', true, true],
    ['reconnect', true, false],
    ['gap', 'reconnect', 'other:3'],
    ['gap', 'notice', 'other:8'],
  ]);
  assert.equal(client.pos, 'other:8');
});

test('every publish gets an id of its own; acks resolve the promise, errors with its id reject it', async (t) => {
  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.after(() => process.off('unhandledRejection', onUnhandled));
  const { client, socks } = await scriptedClient();
  const errors = [];
  client.on('error', (e) => errors.push(e));
  socks[0].accept();
  socks[0].welcome();
  const answers = ['a', 'b', 'c'].map((d) => settled(client.publish('anonym.q', d)));
  client.publish('anonym.q', 'ignored'); // a caller that ignores the promise, as before
  const ids = socks[0].published().map((m) => m.id);
  assert.equal(new Set(ids).size, 4, `unique ids: ${ids}`);
  assert.ok(ids.every((id) => typeof id === 'string' && id.length >= 1 && id.length <= 128 && /^[\x21-\x7e]+$/.test(id)), `${ids}`);
  assert.deepEqual(socks[0].published().map((m) => m.data), ['a', 'b', 'c', 'ignored']);

  socks[0].tell('rohrpost.ack', { id: ids[1] });
  socks[0].tell('rohrpost.error', { code: 'not_whitelisted', message: 'no', topic: 'anonym.q', id: ids[0] });
  socks[0].tell('rohrpost.ack', { id: 'not-ours' }); // an answer for no queued message: ignored
  socks[0].tell('rohrpost.error', { code: 'backend_error', message: 'boom', topic: 'anonym.q', id: ids[3] });
  await flush();
  assert.deepEqual(answers[1], { done: true, value: { id: ids[1], topic: 'anonym.q' }, error: undefined });
  assert.ok(answers[0].error instanceof Error);
  assert.deepEqual([answers[0].error.code, answers[0].error.message, answers[0].error.id, answers[0].error.topic],
    ['not_whitelisted', 'no', ids[0], 'anonym.q']);
  assert.equal(answers[2].done, false, 'unanswered: still pending');
  assert.deepEqual(errors.map((e) => [e.code, e.id]), [['not_whitelisted', ids[0]], ['backend_error', ids[3]]]);

  // close() rejects what is still unanswered, saying it may have reached the backend.
  client.close();
  await flush();
  assert.equal(answers[2].error.code, 'closed');
  assert.match(answers[2].error.message, /may or may not have reached/);
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(unhandled, [], 'an ignored rejection is not an unhandled one');
});

test('unacknowledged messages are sent again after a reconnect, with the same ids, in publish order', async () => {
  const { client, socks } = await scriptedClient();
  socks[0].accept();
  socks[0].welcome();
  const answers = ['a', 'b', 'c'].map((d) => settled(client.publish('anonym.q', d)));
  const first = socks[0].published();
  socks[0].tell('rohrpost.ack', { id: first[1].id });
  socks[0].drop(1006, 'lost');
  answers.push(settled(client.publish('anonym.q', 'd'))); // while reconnecting
  await until('the second socket', () => socks[1], 2000);
  socks[1].accept();
  assert.deepEqual(socks[1].published(), [], 'nothing before the welcome');
  socks[1].welcome('a'.repeat(32), true);
  const again = socks[1].published();
  assert.deepEqual(again.map((m) => m.data), ['a', 'c', 'd']);
  assert.deepEqual(again.slice(0, 2).map((m) => m.id), [first[0].id, first[2].id], 'the same ids');
  for (const m of again) socks[1].tell('rohrpost.ack', { id: m.id });
  await flush();
  assert.deepEqual(answers.map((a) => a.value?.id), [first[0].id, first[1].id, first[2].id, again[2].id]);
});

test('backend_uncertain is resent with the same id after 500, 1000, 2000 ms, then rejected', async (t) => {
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  const { client, socks } = await scriptedClient();
  const errors = [];
  client.on('error', (e) => errors.push(e));
  socks[0].accept();
  socks[0].welcome();
  const doomed = settled(client.publish('anonym.q', 'doomed'));
  const lucky = settled(client.publish('anonym.q', 'lucky'));
  const [d, l] = socks[0].published();
  const uncertain = (id) => socks[0].tell('rohrpost.error', { code: 'backend_uncertain', message: 'unknown', topic: 'anonym.q', id });
  const copiesOf = (id) => socks[0].published().filter((m) => m.id === id).length;
  uncertain(l.id);
  mock.timers.tick(500);
  assert.equal(copiesOf(l.id), 2);
  socks[0].tell('rohrpost.ack', { id: l.id });
  for (const pause of [500, 1000, 2000]) {
    uncertain(d.id);
    const copies = copiesOf(d.id);
    mock.timers.tick(pause - 1);
    assert.equal(copiesOf(d.id), copies, `not before ${pause} ms`);
    mock.timers.tick(1);
    assert.equal(copiesOf(d.id), copies + 1, `resent after ${pause} ms`);
  }
  assert.deepEqual(errors, [], 'no error event while retrying');
  uncertain(d.id);
  await flush();
  assert.equal(doomed.error.code, 'backend_uncertain');
  assert.equal(doomed.error.id, d.id);
  assert.deepEqual(errors.map((e) => e.code), ['backend_uncertain']);
  assert.deepEqual(lucky.value, { id: l.id, topic: 'anonym.q' });
  mock.timers.tick(10_000);
  assert.equal(copiesOf(d.id), 4, 'sent once and resent three times, no more');
});

test('close 4001 from the server starts a fresh session at once; the client\'s own 4001 (/connect failed) does not', async (t) => {
  const storage = useStorage(t, memoryStorage());
  const fetch = scriptedFetch('http://w1/rohrpost', new Error('503'), 'http://w2/rohrpost');
  const { client, socks } = await scriptedClient({ fetch });
  const events = [];
  for (const name of ['takeover', 'close', 'reconnect']) client.on(name, (e) => events.push([name, e]));
  socks[0].accept();
  socks[0].welcome('a'.repeat(32), false, { pos: 'ep:4' });
  socks[0].drop(1006, 'lost');
  // The retry's /connect fails: the client's own close 4001, which is no takeover.
  await until('the retry after the failed /connect', () => socks[1], 3000);
  socks[1].accept();
  assert.deepEqual(socks[1].sent, [{ hello: 1, resume: `token-of-${'a'.repeat(32)}`, since: 'ep:4' }]);
  socks[1].welcome('a'.repeat(32), true, { pos: 'ep:4', recovered: true });
  assert.deepEqual(events.map(([n, e]) => [n, e.code ?? e.resumed]), [['close', 1006], ['close', 4001], ['reconnect', true]]);
  assert.equal(storage.stored.size, 2);

  events.length = 0;
  const asked = fetch.calls.length;
  socks[1].drop(4001, 'Session resumed elsewhere');
  assert.deepEqual(events, [
    ['close', { code: 4001, reason: 'Session resumed elsewhere', willReconnect: true }],
    ['takeover', { session: 'a'.repeat(32), code: 4001, reason: 'Session resumed elsewhere' }],
  ]);
  assert.equal(storage.stored.size, 0, 'token and position forgotten');
  assert.equal(client.pos, null);
  await until('the attempt after the takeover', () => socks[2], 200); // at once: no backoff
  assert.equal(fetch.calls.length, asked + 1);
  socks[2].accept();
  assert.deepEqual(socks[2].sent, [{ hello: 1 }], 'a fresh session, no resume');
  socks[2].welcome('f'.repeat(32), false, { pos: 'ep:30' });
  assert.equal(client.session, 'f'.repeat(32));
  assert.deepEqual(events.slice(2).map(([n, e]) => [n, e.resumed, e.recovered]), [['reconnect', false, false]]);
  assert.equal(storage.stored.get('rohrpost.resume:http://main/connect'), `token-of-${'f'.repeat(32)}`);
});

/** An HS256 JWT of `claims`. */
function jwt(claims, secret = JWT_SECRET) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signed = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${signed}.${createHmac('sha256', secret).update(signed).digest('base64url')}`;
}

test('the token option goes in every hello (a function is asked each time); refresh() sends it and reports the answer', async () => {
  assert.throws(() => new Rohrpost({ connectUrl: 'http://main/connect', token: 7 }), /token option/);
  const { client, socks } = await scriptedClient({ token: 'jwt-1' });
  socks[0].accept();
  assert.deepEqual(socks[0].sent, [{ hello: 1, token: 'jwt-1' }]);
  socks[0].welcome();
  const refreshed = next(client, 'refresh');
  client.refresh('jwt-2');
  assert.deepEqual(socks[0].sent.at(-1), { refresh: 'jwt-2' });
  socks[0].tell('rohrpost.refreshed', { exp: 1234 });
  assert.deepEqual((await refreshed).data, { exp: 1234 });
  assert.throws(() => client.refresh(''), /token string/);
  socks[0].drop(1012, 'Service Restart');
  await until('a second socket', () => socks.length > 1);
  socks[1].accept();
  assert.deepEqual(socks[1].sent[0], { hello: 1, resume: `token-of-${'a'.repeat(32)}`, token: 'jwt-2' });

  let calls = 0;
  const asked = await scriptedClient({
    token: () => {
      calls += 1;
      if (calls === 1) return Promise.reject(new Error('login service down'));
      return Promise.resolve(`fn-${calls}`);
    },
  });
  const closed = next(asked.client, 'close');
  asked.socks[0].accept();
  const { data } = await closed;
  assert.deepEqual([data.code, data.reason, data.willReconnect], [4002, 'token: login service down', true]);
  await until('a second socket', () => asked.socks.length > 1, 5000);
  asked.socks[1].accept();
  await until('the hello', () => asked.socks[1].sent.length > 0);
  assert.deepEqual(asked.socks[1].sent, [{ hello: 1, token: 'fn-2' }]);
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
/** What the HTTP backend of `anonym.hook.*` received: each client message's whole payload. */
const hooked = [];
let hook;
/**
 * How the hook treats `anonym.hook.held`: while `hold.on`, it keeps the request unanswered
 * (in `hold.waiting`), so the message stays unacknowledged.
 */
const hold = { on: false, waiting: [] };

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

/** The server API, as a backend uses it; resolves with the answer's JSON (or text). */
async function api(path, body) {
  const res = await fetch(`http://127.0.0.1:${mainPort}${path}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT),
  });
  const text = await res.text();
  assert.ok(res.ok, `${path}: ${res.status} ${text}`);
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
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

const hookedWith = (tag) => hooked.filter((p) => p?.data?.tag === tag).map((p) => p.data.i);
/** The `messageId`s of the hook's payloads of `tag`, in arrival order, repeats included. */
const hookedIds = (tag) => hooked.filter((p) => p?.data?.tag === tag).map((p) => p.messageId);
/** What a backend that drops repeated `messageId`s keeps: each id's first arrival, in order. */
const deduped = (tag) => {
  const seen = new Set();
  return hooked.filter((p) => p?.data?.tag === tag && !seen.has(p.messageId) && seen.add(p.messageId))
    .map((p) => p.data.i);
};

/** Counts the numbered messages `client` gets on `topic`: `got` (the numbers, as they came). */
function counter(client, topic) {
  const got = [];
  client.on(topic, (data) => got.push(data.i));
  return { got };
}

/** Whether a staged restart that began at worker `generations` has renewed every worker. */
async function rolled(generations) {
  const h = await health();
  return h?.ready_workers === 2 && h.workers.every((w, i) => w.generation > generations[i]);
}

before(async () => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run cargo build --release (or set ROHRPOST_BIN)`);
  // The HTTP backend of `anonym.hook.*`: records the payload and echoes its data back to the
  // sender on `anonym.echo`, as a backend's answer (applied like a direct-topic message);
  // `anonym.hook.fail` answers 500, `anonym.hook.held` waits while `hold.on`.
  hook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      let payload = null;
      try { payload = JSON.parse(body); } catch { /* recorded as null */ }
      hooked.push(payload);
      if (payload?.topic === 'anonym.hook.fail') {
        res.writeHead(500).end('refused on purpose');
      } else if (payload?.topic === 'anonym.hook.held' && hold.on) {
        hold.waiting.push(res);
      } else {
        res.writeHead(200, { 'Content-Type': 'application/json' })
          .end(JSON.stringify({ topic: 'anonym.echo', data: { echo: payload?.data ?? null, session: payload?.sessionId } }));
      }
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
[auth]
hs256_secret = "${JWT_SECRET}"
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

test('a token from the token function is verified by the server: refused, retried, granted, refreshed', { timeout: TEST_TIMEOUT }, async () => {
  const exp = () => Math.floor(Date.now() / 1000) + 60;
  let calls = 0;
  const client = serverClient({
    token: async () => {
      calls += 1;
      if (calls === 1) return jwt({ sub: 'ada', exp: exp() }, 'a wrong secret of at least thirty-two bytes');
      return jwt({ sub: 'ada', exp: exp(), rohrpost: { add: ['members.*'] } });
    },
  });
  const errors = [];
  client.on('error', (e) => errors.push(e));
  const { data: close } = await next(client, 'close');
  assert.deepEqual([close.code, close.reason, close.willReconnect], [4003, 'Invalid token', true]);
  assert.deepEqual(errors.map((e) => [e.code, e.message]), [['unauthorized', 'invalid token']]);
  const { data: welcome } = await next(client, 'open');
  assert.ok(welcome.whitelist.includes('members.*'), JSON.stringify(welcome));
  const fresh = exp() + 60;
  const refreshed = next(client, 'refresh');
  client.refresh(jwt({ sub: 'ada', exp: fresh }));
  assert.deepEqual((await refreshed).data, { exp: fresh });
  const refused = next(client, 'error');
  client.refresh(jwt({ sub: 'grace', exp: fresh }));
  assert.equal((await refused).data.message, 'refresh refused: the token is for another subject');
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
  page.close({ resumable: true }); // the page goes away without ending its session
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
  // "Typing" through the restart: a message every 50 ms, some queued while between workers,
  // until 20 have been typed after the client is back (a roll on a busy machine takes longer
  // than on an idle one), at least 60 and at most 300.
  const answers = [];
  let typedAfter = 0;
  for (let i = 0; i < 300 && (i < 60 || typedAfter < 20); i++) {
    answers.push(settled(client.publish('anonym.hook.roll', { tag, i })));
    if (reconnects.length > 0 && client.state === 'open') typedAfter++;
    await sleep(50);
  }
  const typed = answers.length;
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

  // Each message is sent in order once, and again (same id) only on a later socket: one
  // that went out before a 1012 and was not acknowledged yet.
  const sent = wire.filter((w) => w.message.data?.tag === tag);
  const firsts = sent.filter((w, at) => sent.findIndex((o) => o.message.id === w.message.id) === at);
  assert.deepEqual(firsts.map((w) => w.message.data.i), [...Array(typed).keys()], 'first sent once each, in order');
  for (const [at, w] of sent.entries()) {
    const earlier = sent.slice(0, at).filter((o) => o.message.id === w.message.id);
    assert.ok(earlier.every((o) => o.sock < w.sock), `message ${w.message.data.i} sent twice on one socket`);
  }
  assert.ok(sent.every((w) => w.readyState === 1), 'all sent on open sockets');
  assert.ok(new Set(sent.map((w) => w.sock)).size >= 2, 'some sent after the reconnect');
  await until('every typed message at the backend', () => new Set(hookedWith(tag)).size === typed, 15_000)
    .catch((e) => {
      const got = new Set(hookedWith(tag));
      const missing = [...Array(typed).keys()].filter((i) => !got.has(i));
      throw new Error(`${e.message}; missing ${JSON.stringify(missing)}; errors ${JSON.stringify(errors)}; closes ${JSON.stringify(closes)}`);
    });
  // (HTTP requests run concurrently, so the backend may see them in any order.)
  assert.deepEqual(deduped(tag).sort((a, b) => a - b), [...Array(typed).keys()], 'once each after dedupe by messageId');
  await until('every publish acknowledged', () => answers.every((a) => a.done));
  assert.deepEqual(answers.filter((a) => a.error).map((a) => a.error.code), [], 'no publish rejected');
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
  assert.deepEqual(wire.slice(1).map((w) => w.message), [{ bye: 1 }],
    'after the hello only the goodbye of close(), nothing after it');
  assert.equal(client.state, 'closed');
  assert.equal(closes.length, 1);
});

// ---------------------------------------------------------------------------------------------
// Delivery you can count on (issue 11): positions, recovery, acks, takeover
// ---------------------------------------------------------------------------------------------

/**
 * What is wrong with `got` as the numbers 0..n-1, each once and in order: an all-empty answer
 * (`{count: n, missing: [], repeated: [], outOfOrder: 0}`) means it is exactly that.
 */
function sequenceProblems(got, n) {
  const seen = new Set(got);
  return {
    count: got.length,
    missing: [...Array(n).keys()].filter((i) => !seen.has(i)),
    repeated: got.filter((i, at) => got.indexOf(i) !== at),
    outOfOrder: got.filter((i, at) => at > 0 && i < got[at - 1]).length,
  };
}

test('a reload resumes with the last pos as since and recovers what was published meanwhile, once each, in order', { timeout: TEST_TIMEOUT }, async (t) => {
  const storage = useStorage(t, memoryStorage());
  const tag = `pos-${Date.now()}`;
  const topic = `anonym.pos.${tag}`;
  const { client: page, welcome } = await opened();
  assert.equal(typeof welcome.pos, 'string', `the welcome carries pos: ${JSON.stringify(welcome)}`);
  assert.equal(page.pos, welcome.pos);
  const positions = [];
  page.on(topic, (data) => positions.push([data.i, page.pos]));
  const answered = [];
  for (let i = 0; i < 3; i++) answered.push((await api('/api/publish', { topic, data: { tag, i } })).pos);
  assert.ok(answered.every((pos) => typeof pos === 'string'), `/api/publish answers pos: ${answered}`);
  await until('three messages', () => positions.length === 3);
  assert.deepEqual(positions, answered.map((pos, i) => [i, pos]), 'each message carries the pos its publish was answered with');
  const resumeKey = `rohrpost.resume:${page.connectUrl}`;
  assert.equal(storage.getItem(`rohrpost.pos:${page.connectUrl}`), page.pos, 'the last pos is in sessionStorage');
  const since = page.pos;
  const token = storage.getItem(resumeKey);
  page.close({ resumable: true }); // the page goes away without ending its session

  for (let i = 3; i < 8; i++) await api('/api/publish', { topic, data: { tag, i } });
  const { RecordingSockJS, wire } = recordingSockJS();
  const reloaded = serverClient({ SockJS: RecordingSockJS });
  const { got } = counter(reloaded, topic);
  const { data: again } = await next(reloaded, 'open');
  assert.deepEqual(wire[0].message, { hello: 1, resume: token, since });
  assert.equal(again.resumed, true);
  assert.equal(again.recovered, true, 'recovered within the history');
  await api('/api/publish', { topic, data: { tag, i: 8 } }); // live, after the replay
  await until('the live message after the replay', () => got.includes(8));
  assert.deepEqual(got, [3, 4, 5, 6, 7, 8], 'the missed five replayed once each, in order, before the live one');
});

test('a staged restart costs nothing: every numbered message published throughout arrives once, in order, and each reconnect recovered', { timeout: 120_000 }, async (t) => {
  const tag = `seq-${Date.now()}`;
  const topic = `anonym.seq.${tag}`;
  const watched = [];
  for (let k = 0; k < 8; k++) {
    const { RecordingSockJS, wire } = recordingSockJS();
    const client = serverClient({ SockJS: RecordingSockJS });
    const w = { client, wire, ...counter(client, topic), reconnects: [], gaps: [], closes: [] };
    client.on('reconnect', (e) => w.reconnects.push(e));
    client.on('gap', (e) => w.gaps.push(e));
    client.on('close', (e) => w.closes.push(e.code));
    watched.push(w);
  }
  await Promise.all(watched.map((w) => next(w.client, 'open')));
  const generations = (await health()).workers.map((w) => w.generation);
  let n = 0;
  const publishOne = async () => {
    await api('/api/publish', { topic, data: { tag, i: n } });
    n += 1;
    await sleep(10);
  };
  for (let i = 0; i < 20; i++) await publishOne();
  await api('/api/restart', {});
  const deadline = Date.now() + 60_000;
  while (!((await rolled(generations)) && watched.every((w) => w.client.state === 'open'))) {
    if (Date.now() > deadline) throw new Error(`the restart did not finish within 60 s: ${JSON.stringify(await health())}`);
    await publishOne();
  }
  for (let i = 0; i < 20; i++) await publishOne();

  for (const [k, w] of watched.entries()) {
    await until(`client ${k} to get message ${n - 1}`, () => w.got.includes(n - 1), 20_000)
      .catch((e) => { throw new Error(`${e.message}: ${JSON.stringify(sequenceProblems(w.got, n))}`); });
    assert.deepEqual(sequenceProblems(w.got, n), { count: n, missing: [], repeated: [], outOfOrder: 0 }, `client ${k}`);
    assert.ok(w.closes.includes(1012), `client ${k} closes: ${w.closes}`);
    assert.ok(w.reconnects.length >= 1, `client ${k} reconnected`);
    assert.deepEqual(w.reconnects.map((r) => [r.resumed, r.recovered]), w.reconnects.map(() => [true, true]), `client ${k}`);
    assert.deepEqual(w.gaps, [], `client ${k}: no gap`);
    const hellos = w.wire.filter((m) => 'hello' in m.message).map((m) => m.message);
    assert.ok(hellos.slice(1).every((h) => typeof h.resume === 'string' && typeof h.since === 'string'),
      `client ${k} resumed with since: ${JSON.stringify(hellos)}`);
  }
  const moves = watched.reduce((sum, w) => sum + w.reconnects.length, 0);
  t.diagnostic(`${n} messages (${n - 40} during the restart) x ${watched.length} clients, ${moves} reconnects: each message once, in order`);
});

test('acks resolve publish promises; errors reject them, carrying the message\'s id', { timeout: TEST_TIMEOUT }, async () => {
  const { RecordingSockJS, wire } = recordingSockJS();
  const { client } = await opened({ SockJS: RecordingSockJS });
  const errors = [];
  client.on('error', (e) => errors.push(e));
  const tag = `ack-${Date.now()}`;
  const idOf = (topic) => wire.find((w) => w.message.topic === topic).message.id;

  const viaHttp = await answerOf(client.publish('anonym.hook.ack', { tag, i: 0 }), 'anonym.hook.ack');
  assert.deepEqual(viaHttp, { id: idOf('anonym.hook.ack'), topic: 'anonym.hook.ack' });
  assert.deepEqual(hookedIds(tag), [viaHttp.id], 'the HTTP backend got the id as messageId');
  const viaBroker = await answerOf(client.publish('anonym.plain', { tag, i: 1 }), 'anonym.plain');
  assert.deepEqual(viaBroker, { id: idOf('anonym.plain'), topic: 'anonym.plain' });

  const refused = await answerOf(client.publish('secret.stuff', 1), 'secret.stuff');
  assert.ok(refused instanceof Error, 'rejected');
  assert.deepEqual([refused.code, refused.id, refused.topic], ['not_whitelisted', idOf('secret.stuff'), 'secret.stuff']);
  const failed = await answerOf(client.publish('anonym.hook.fail', { tag, i: 2 }), 'anonym.hook.fail');
  assert.ok(failed instanceof Error, 'rejected');
  assert.deepEqual([failed.code, failed.id], ['backend_error', idOf('anonym.hook.fail')]);
  assert.deepEqual(errors.map((e) => [e.code, e.id]), [['not_whitelisted', refused.id], ['backend_error', failed.id]]);
  assert.equal(client.state, 'open');
});

test('unacknowledged messages are sent again after a reconnect with the same ids; deduped by messageId the backend gets each once', { timeout: TEST_TIMEOUT }, async (t) => {
  hold.on = true;
  t.after(() => {
    hold.on = false;
    for (const res of hold.waiting.splice(0)) res.destroy();
  });
  const { RecordingSockJS, wire } = recordingSockJS();
  const { client } = await opened({ SockJS: RecordingSockJS, maxBackoff: 100 });
  const tag = `held-${Date.now()}`;
  const answers = [0, 1, 2, 3, 4].map((i) => settled(client.publish('anonym.hook.held', { tag, i })));
  await until('all five at the backend', () => hookedIds(tag).length === 5);
  const ids = wire.filter((w) => w.message.data?.tag === tag).map((w) => w.message.id);
  assert.deepEqual([...hookedIds(tag)].sort(), [...ids].sort(), 'the backend got each id as messageId');
  await sleep(100); // nothing may answer a held message; give a wrong ack the chance to show
  assert.deepEqual(answers.map((a) => a.done), [false, false, false, false, false], 'unacknowledged while the backend holds them');

  const victim = (await health()).workers.find((w) => w.port === Number(new URL(client.url).port));
  hold.on = false; // the resent copies get answers
  const reconnected = next(client, 'reconnect');
  process.kill(victim.pid, 'SIGKILL');
  const { data: back } = await reconnected;
  assert.equal(back.resumed, true);
  await until('every publish acknowledged', () => answers.every((a) => a.done));
  assert.deepEqual(answers.map((a) => a.value?.id ?? a.error.code), ids, 'each resolved with its own id');
  const resent = wire.filter((w) => w.sock > 0 && w.message.data?.tag === tag);
  assert.deepEqual(resent.map((w) => [w.message.id, w.message.data.i]), ids.map((id, i) => [id, i]),
    'resent after the reconnect: same ids, publish order');
  const copies = hookedIds(tag);
  assert.ok(ids.every((id) => copies.filter((c) => c === id).length >= 2), `the resent copies reached the backend: ${copies}`);
  assert.deepEqual(deduped(tag).sort((a, b) => a - b), [0, 1, 2, 3, 4], 'once each after dedupe by messageId');
  await until('the killed worker to be back', async () => (await health())?.ready_workers === 2, 20_000);
});

test('a second connection resuming the session takes it over: the first gets 4001 and starts a fresh session', { timeout: TEST_TIMEOUT }, async (t) => {
  const tabStorage = useStorage(t, memoryStorage());
  const { RecordingSockJS, wire } = recordingSockJS();
  const { client: tabA } = await opened({ SockJS: RecordingSockJS });
  const original = tabA.session;
  const resumeKey = `rohrpost.resume:${tabA.connectUrl}`;
  const events = [];
  for (const name of ['close', 'takeover', 'reconnect']) tabA.on(name, (e) => events.push([name, e]));

  // A duplicated tab: a copy of the first one's sessionStorage, so it resumes the same session.
  const duplicate = tabStorage.copy();
  globalThis.sessionStorage = duplicate;
  const tabB = serverClient();
  const closesB = [];
  tabB.on('close', (e) => closesB.push(e));
  const { data: welcomeB } = await next(tabB, 'open');
  assert.equal(welcomeB.resumed, true);
  assert.equal(tabB.session, original, 'the duplicate took the session over');

  await until('tab A back with a session of its own', () => events.some(([name]) => name === 'reconnect'));
  assert.deepEqual(events.map(([name, e]) => (name === 'close' ? [name, e.code, e.reason]
    : name === 'takeover' ? [name, e.session, e.code] : [name, e.resumed, e.recovered])), [
    ['close', 4001, 'Session resumed elsewhere'],
    ['takeover', original, 4001],
    ['reconnect', false, false],
  ]);
  assert.match(tabA.session, /^[0-9a-f]{32}$/);
  assert.notEqual(tabA.session, original);
  const hellos = wire.filter((w) => 'hello' in w.message).map((w) => w.message);
  assert.equal(hellos.length, 2);
  assert.deepEqual(hellos[1], { hello: 1 }, 'the taken token is not resumed again');
  assert.notEqual(tabStorage.getItem(resumeKey), duplicate.getItem(resumeKey), 'each tab stores its own token');

  // Each tab owns its session now: direct messages reach only their own tab.
  const got = { a: [], b: [] };
  tabA.on('anonym.direct', (d) => got.a.push(d));
  tabB.on('anonym.direct', (d) => got.b.push(d));
  await api(`/api/sessions/${original}`, { topic: 'anonym.direct', data: 'for B' });
  await api(`/api/sessions/${tabA.session}`, { topic: 'anonym.direct', data: 'for A' });
  await until('both direct messages', () => got.a.length > 0 && got.b.length > 0);
  assert.deepEqual(got, { a: ['for A'], b: ['for B'] });
  assert.deepEqual(closesB, [], 'the duplicate is not closed in turn');
  assert.equal(tabB.state, 'open');
});
