// The Rohrpost client library (static/js/rohrpost.js) under Node, against the real supervisor
// with its embedded broker: handshake, publish and receive, patterns, errors, queueing, and a
// staged restart the client rides out by itself. The backend speaks through the server API.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
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
const KEY = 'client-test-key';
const WAIT = 10_000;

let server;
let mainPort;
/** What the HTTP backend received on `anonym.hook.*`: the `data` of each client message. */
const hooked = [];
let hook;

/** A main port with two free ports after it, on 127.0.0.1. */
async function freeBlock() {
  for (let i = 0; i < 50; i++) {
    const base = await new Promise((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    });
    if (base > 60000) continue;
    const free = await Promise.all([1, 2].map((d) => new Promise((resolve) => {
      const s = net.createServer().once('error', () => resolve(false))
        .listen(base + d, '127.0.0.1', () => s.close(() => resolve(true)));
    })));
    if (free.every(Boolean)) return base;
  }
  throw new Error('no free block of ports');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check, within = WAIT) {
  const deadline = Date.now() + within;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function health() {
  try {
    return await (await fetch(`http://127.0.0.1:${mainPort}/health`)).json();
  } catch {
    return null;
  }
}

/** Publishes through the server API (the backend's side). */
async function apiPublish(body, path = '/api/publish') {
  const res = await fetch(`http://127.0.0.1:${mainPort}${path}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 202, await res.text());
}

/** Resolves with the next `(data, topic)` of `pattern` on `client`. */
function next(client, pattern) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nothing on ${pattern}`)), WAIT);
    client.once(pattern, (data, topic) => {
      clearTimeout(timer);
      resolve({ data, topic });
    });
  });
}

function newClient() {
  return new Rohrpost({
    connectUrl: `http://127.0.0.1:${mainPort}/connect`,
    SockJS,
    transports: ['websocket'],
  });
}

/** Waits until a publish on `topic` reaches the client (its subscription is live). */
async function settle(client, topic) {
  let got = false;
  const handler = () => { got = true; };
  client.on(topic, handler);
  await until(`a probe on ${topic}`, async () => {
    await apiPublish({ topic, data: { probe: true } });
    await sleep(30);
    return got;
  });
  client.off(topic, handler);
  await sleep(100);
}

before(async () => {
  // The HTTP backend of the `anonym.hook.*` topics: records and answers 204.
  hook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      try { hooked.push(JSON.parse(body).data); } catch { /* recorded as missing */ }
      res.writeHead(204).end();
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
default_whitelist = ["anonym.*", "odd?name"]
[api]
key = "${KEY}"
[[http_topics]]
pattern = "anonym.hook.*"
url = "http://127.0.0.1:${hook.address().port}/hook"
`);
  server = spawn(BIN, ['--config', 'r.toml'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  await until('both workers ready', async () => (await health())?.ready_workers === 2, 20_000);
});

after(async () => {
  hook?.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await Promise.race([new Promise((r) => server.once('exit', r)), sleep(8000)]);
    if (server.exitCode === null) server.kill('SIGKILL');
  }
});

test('pattern matching follows the server: * is any run, everything else literal', () => {
  assert.ok(patternMatches('anonym.*', 'anonym.a.b'));
  assert.ok(patternMatches('a*b*c', 'a.x.b.y.c'));
  assert.ok(patternMatches('a?b', 'a?b'));
  assert.ok(!patternMatches('a?b', 'axb'));
  assert.ok(!patternMatches('anonym.*', 'anonym'));
  assert.ok(patternMatches('*', 'x'));
});

test('connects through /connect, says hello and receives backend messages by pattern', async () => {
  const client = newClient();
  const states = [];
  client.on('state', (s) => states.push(s));
  const opened = await next(client, 'open');
  assert.equal(client.state, 'open');
  assert.match(client.session, /^[0-9a-f]{32}$/);
  assert.equal(opened.data.resumed, false);
  assert.equal(client.transport, 'websocket');
  assert.deepEqual(states, ['open']);

  await settle(client, 'anonym.news');
  const got = next(client, 'anonym.*');
  await apiPublish({ topic: 'anonym.news', data: { headline: 'hello' } });
  const { data, topic } = await got;
  assert.equal(topic, 'anonym.news');
  assert.deepEqual(data, { headline: 'hello' });
  client.close();
  assert.equal(client.state, 'closed');
});

test('once fires once, off removes, literal ? in patterns', async () => {
  const client = newClient();
  await next(client, 'open');
  await settle(client, 'odd?name');
  let once = 0;
  let removed = 0;
  const handler = () => { removed += 1; };
  client.once('odd?name', () => { once += 1; });
  client.on('odd?name', handler);
  client.off('odd?name', handler);
  const seen = [];
  client.on('odd?name', (d) => seen.push(d));
  await apiPublish({ topic: 'odd?name', data: 1 });
  await apiPublish({ topic: 'odd?name', data: 2 });
  await until('two messages', () => seen.length === 2);
  assert.equal(once, 1);
  assert.equal(removed, 0);
  assert.deepEqual(seen, [1, 2]);
  client.close();
});

test('server errors arrive as error events', async () => {
  const client = newClient();
  await next(client, 'open');
  const error = next(client, 'error');
  client.publish('secret.stuff', 1);
  const { data } = await error;
  assert.equal(data.code, 'not_whitelisted');
  assert.equal(data.topic, 'secret.stuff');
  client.close();
});

test('messages published before the session is open are all sent once it is', async () => {
  const client = newClient();
  const tag = `queue-${Date.now()}`;
  for (let i = 0; i < 5; i++) client.publish('anonym.hook.queue', { tag, i });
  assert.notEqual(client.state, 'open');
  await next(client, 'open');
  const mine = () => hooked.filter((d) => d && d.tag === tag).map((d) => d.i);
  await until('the queued messages at the backend', () => mine().length === 5);
  assert.deepEqual(mine().sort(), [0, 1, 2, 3, 4]);
  client.close();
});

test('a staged restart is ridden out: reconnect at once, same session, nothing typed is lost', async () => {
  const client = newClient();
  await next(client, 'open');
  const session = client.session;
  const reconnected = next(client, 'reconnect');
  const before = await health();
  const tag = `roll-${Date.now()}`;
  process.kill(server.pid, 'SIGHUP');
  // "Typing" through the restart: every message must reach the backend, queued while the
  // client was between workers.
  for (let i = 0; i < 60; i++) {
    client.publish('anonym.hook.roll', { tag, i });
    await sleep(50);
  }
  const { data } = await reconnected;
  assert.equal(data.resumed, true);
  assert.ok(data.gap >= 0 && data.gap < 5000, `gap ${data.gap} ms`);
  assert.equal(client.session, session, 'same session after the restart');
  assert.ok(client.reconnects >= 1);
  await until('the roll to finish', async () => {
    const h = await health();
    return h && h.ready_workers === 2
      && h.workers.every((w, i) => w.generation > before.workers[i].generation);
  }, 30_000);
  const mine = () => hooked.filter((d) => d && d.tag === tag).map((d) => d.i);
  await until('every typed message at the backend', () => new Set(mine()).size === 60, 15_000);
  client.close();
});

test('the ES module entry exports the same client', async () => {
  const mod = await import('../../static/js/rohrpost.mjs');
  assert.equal(mod.Rohrpost, Rohrpost);
  assert.equal(mod.default, Rohrpost);
  assert.equal(mod.patternMatches('a.*', 'a.b'), true);
});

test('a killed worker: the client backs off, goes through /connect again and resumes', async () => {
  const client = newClient();
  await next(client, 'open');
  const session = client.session;
  const port = Number(new URL(client.url).port);
  const h = await health();
  const victim = h.workers.find((w) => w.port === port);
  const reconnected = next(client, 'reconnect');
  const states = [];
  client.on('state', (s) => states.push(s));
  process.kill(victim.pid, 'SIGKILL');
  const { data } = await reconnected;
  assert.equal(data.resumed, true);
  assert.equal(client.session, session);
  assert.ok(states.includes('reconnecting'), `states: ${states}`);
  assert.equal(client.state, 'open');
  client.close();
  await until('the killed worker to be back', async () => (await health())?.ready_workers === 2, 20_000);
});
