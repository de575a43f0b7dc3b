// The demo chat end to end: the real supervisor with the embedded broker, the demo backend,
// the page served by the main port, and three Chromium browser contexts — one of them forced to
// the xhr-polling transport — plus a duplicated tab (a context started with a copy of one
// page's sessionStorage). Then issue 11's counting tests: two more pages in a room of their own
// count numbered messages typed across a staged restart and across a worker killed with
// SIGKILL — every number exactly once, in order, and no "messages may be missing".
// Screenshots go to a folder printed at the start, for humans; the supervisor's and the demo
// backend's logs go to files named there too, and a failing count quotes them.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  copyFileSync, cpSync, existsSync, mkdtempSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { launchChromium, recordPageEvents } from './lib/browser.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '../..');
const BIN = process.env.ROHRPOST_BIN || join(repo, 'target/release/rohrpost');
const WAIT = 15_000;
const shots = mkdtempSync(join(tmpdir(), 'rohrpost-chat-screenshots-'));

let supervisor;
let backend;
let mainPort;
let apiKey;
let browser;
const pages = {};
/** Where the supervisor (with its workers) and the demo backend write their logs. */
const logs = {};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A main port with two free ports after it. */
async function freeBlock() {
  for (let i = 0; i < 50; i++) {
    const base = await freePort();
    if (base > 60000) continue;
    const ok = await Promise.all([1, 2].map((d) => new Promise((resolve) => {
      const s = net.createServer().once('error', () => resolve(false))
        .listen(base + d, '127.0.0.1', () => s.close(() => resolve(true)));
    })));
    if (ok.every(Boolean)) return base;
  }
  throw new Error('no free block of ports');
}

async function health() {
  try {
    return await (await fetch(`http://127.0.0.1:${mainPort}/health`)).json();
  } catch {
    return null;
  }
}

async function until(what, check, within = WAIT) {
  const deadline = Date.now() + within;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function shot(name, page) {
  await page.screenshot({ path: join(shots, `${name}.png`) });
}

/** Opens the chat in a fresh browser context and logs in as `nick`. */
async function enter(nick, query = '') {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${mainPort}/${query}`);
  await page.fill('#nick', nick);
  await page.click('#login-form button');
  await page.waitForSelector('#chat:not(.hidden)', { timeout: WAIT });
  pages[nick] = page;
  return page;
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#say-form button');
}

/** The texts of the messages shown in the current room. */
async function messages(page) {
  return page.$$eval('#messages .msg', (els) => els.map((e) => e.textContent));
}

async function waitForText(page, text) {
  await page.waitForSelector(`#messages .msg:has-text(${JSON.stringify(text)})`, { timeout: WAIT });
}

/**
 * The main port's static files: the repository's `static/` plus sockjs-client from
 * node_modules, laid out in `dir` (as `.ci/run` and the container do), so that the page loads
 * whether or not a `static/js/sockjs.min.js` was copied into the tree.
 */
function staticDir(dir) {
  const target = join(dir, 'static');
  cpSync(join(repo, 'static'), target, { recursive: true });
  const sockjs = join(target, 'js/sockjs.min.js');
  if (!existsSync(sockjs)) copyFileSync(join(here, 'node_modules/sockjs-client/dist/sockjs.min.js'), sockjs);
  return target;
}

/** How far each log has been written: give it to `logsSince` to quote what came after. */
function logMark() {
  return Object.fromEntries(Object.entries(logs).map(([name, path]) => [name, statSync(path).size]));
}

/**
 * The lines of each log written since `mark` that tell what happened to workers and sessions
 * (warnings and errors, worker lifecycle, restarts, drains, takeovers, recovery, dropped repeats),
 * at most `max` per log, the last ones.
 */
function logsSince(mark, max = 60) {
  const telling = /WARN|ERROR|worker (starting|ready|exited|drain)|restart|roll|crash|recover|gap|takeover|resum|repeated|lost|missing/i;
  return Object.entries(logs).map(([name, path]) => {
    const lines = readFileSync(path).subarray(mark[name] ?? 0).toString('utf8').split('\n').filter((l) => telling.test(l));
    return `--- ${name} log (${path}), ${lines.length} telling lines since the test began${lines.length > max ? `, the last ${max}` : ''} ---\n`
      + lines.slice(-max).join('\n');
  }).join('\n');
}

before(async () => {
  console.log(`screenshots: ${shots}`);
  mkdirSync(shots, { recursive: true });
  mainPort = await freeBlock();
  const backendPort = await freePort();
  const key = `chat-test-${Date.now()}`;
  apiKey = key;
  const dir = mkdtempSync(join(tmpdir(), 'rohrpost-chat-'));
  logs.supervisor = join(dir, 'supervisor.log');
  logs.backend = join(dir, 'demo-backend.log');
  console.log(`logs: ${logs.supervisor} ${logs.backend}`);
  writeFileSync(join(dir, 'r.toml'), `
[http]
host = "127.0.0.1"
main_port = ${mainPort}
worker_base_port = ${mainPort + 1}
static_dir = "${staticDir(dir)}"
[workers]
count = 2
drain_timeout = "5s"
[sessions]
default_whitelist = ["chat.login"]
[api]
key = "${key}"
[[http_topics]]
pattern = "chat.*"
url = "http://127.0.0.1:${backendPort}/rohrpost"
`);
  const env = { ...process.env, ROHRPOST__API__KEY: key };
  delete env.ROHRPOST_CONFIG;
  backend = spawn(BIN, ['demo-backend', '--listen', `127.0.0.1:${backendPort}`,
    '--api', `http://127.0.0.1:${mainPort}`], { cwd: dir, env, stdio: ['ignore', 'ignore', openSync(logs.backend, 'w')] });
  supervisor = spawn(BIN, ['--config', 'r.toml'], { cwd: dir, env, stdio: ['ignore', 'ignore', openSync(logs.supervisor, 'w')] });
  await until('both workers ready', async () => (await health())?.ready_workers === 2, 20_000);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close().catch(() => {});
  for (const child of [supervisor, backend]) {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(8000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }
});

test('two users chat in a room; a third on xhr-polling joins; all see every message in order', async () => {
  const alice = await enter('alice');
  const bob = await enter('bob');
  for (const page of [alice, bob]) {
    await page.fill('#join-room', 'rust');
    await page.click('#join-form button');
    await page.waitForSelector('#room-title:has-text("#rust")', { timeout: WAIT });
  }
  await say(alice, 'one');
  await waitForText(bob, 'one');
  await say(bob, 'two');
  await waitForText(alice, 'two');

  const carol = await enter('carol', '?transports=xhr-polling');
  assert.match(await carol.textContent('#status'), /xhr-polling/);
  await carol.fill('#join-room', 'rust');
  await carol.click('#join-form button');
  await carol.waitForSelector('#room-title:has-text("#rust")', { timeout: WAIT });
  await carol.waitForSelector('#users li:has-text("alice")', { timeout: WAIT });

  const script = ['three', 'four', 'five', 'six'];
  for (const [i, text] of script.entries()) await say([alice, bob, carol][i % 3], text);
  for (const page of [alice, bob, carol]) {
    await waitForText(page, 'six');
    const seen = (await messages(page)).filter((m) => script.some((s) => m.endsWith(s)));
    assert.deepEqual(seen.map((m) => script.find((s) => m.endsWith(s))), script, 'every message, in order');
  }
  await shot('1-room-alice', alice);
  await shot('1-room-carol-xhr-polling', carol);
});

test('a direct message reaches only its addressee', async () => {
  const { alice, bob, carol } = pages;
  await say(bob, '@alice only for you');
  await waitForText(alice, 'only for you');
  await waitForText(bob, 'only for you'); // the sender sees its own direct message
  await sleep(500);
  assert.ok(!(await messages(carol)).some((m) => m.includes('only for you')), 'carol saw the DM');
  await shot('2-direct-message-alice', alice);
});

test('a staged restart: pages reconnect, keep rooms and nickname, typed messages arrive after it', async () => {
  const { alice, bob, carol } = pages;
  const before = await health();
  supervisor.kill('SIGHUP');
  // Type during the restart.
  for (let i = 0; i < 6; i++) {
    await say(alice, `during ${i}`);
    await sleep(300);
  }
  await until('the roll', async () => {
    const h = await health();
    return h && h.ready_workers === 2
      && h.workers.every((w, i) => w.generation > before.workers[i].generation);
  }, 40_000);
  for (const page of [alice, bob, carol]) {
    await waitForText(page, 'during 5');
    const seen = (await messages(page)).filter((m) => m.includes('during '));
    assert.deepEqual(seen.map((m) => m.slice(m.indexOf('during '))),
      [0, 1, 2, 3, 4, 5].map((i) => `during ${i}`), 'typed during the restart, in order');
    assert.match(await page.textContent('#status'), /[1-9]\d* reconnects?/);
    assert.equal(await page.textContent('#room-title'), '#rust');
  }
  assert.match(await alice.textContent('#status'), /alice/);
  await say(bob, 'after the restart');
  await waitForText(carol, 'after the restart');
  await shot('3-after-restart-bob', bob);
});

test('a page reload resumes the session: same nickname, same rooms', async () => {
  const { alice, bob } = pages;
  await alice.reload();
  await alice.waitForSelector('#chat:not(.hidden)', { timeout: WAIT });
  assert.match(await alice.textContent('#status'), /alice/);
  const rooms = await alice.$$eval('#rooms li', (els) => els.map((e) => e.dataset.room));
  assert.ok(rooms.includes('rust'), `rooms after reload: ${rooms}`);
  await alice.click('#rooms li[data-room="rust"]');
  await say(bob, 'welcome back');
  await waitForText(alice, 'welcome back');
  await shot('4-after-reload-alice', alice);
});

test('a duplicated tab takes the session over; the original is told, starts over and chats under a nickname of its own', async () => {
  const { alice, bob } = pages;
  // What a browser's "duplicate tab" does: a new page that starts with a copy of sessionStorage.
  const stored = await alice.evaluate(() => JSON.stringify(Object.entries(sessionStorage)));
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  await context.addInitScript((entries) => {
    if (sessionStorage.length === 0) for (const [k, v] of JSON.parse(entries)) sessionStorage.setItem(k, v);
  }, stored);
  const duplicate = await context.newPage();
  await duplicate.goto(alice.url());
  await duplicate.waitForSelector('#chat:not(.hidden)', { timeout: WAIT });
  assert.match(await duplicate.textContent('#status'), /alice/, 'the duplicate continues as alice');

  await alice.waitForSelector('#login:not(.hidden)', { timeout: WAIT });
  assert.match(await alice.textContent('#login-error'), /another tab/);
  await alice.fill('#nick', 'dora');
  await alice.click('#login-form button');
  await alice.waitForSelector('#chat:not(.hidden)', { timeout: WAIT });
  assert.match(await alice.textContent('#status'), /dora/);
  // Its new session is a reconnect that recovered nothing: the page says so.
  await waitForText(alice, 'some messages may be missing');
  await shot('5-original-after-takeover', alice);

  await duplicate.click('#rooms li[data-room="rust"]');
  await say(duplicate, 'from the duplicate');
  await waitForText(bob, 'from the duplicate');
  await say(alice, 'dora in the lobby');
  await waitForText(alice, 'dora in the lobby');
  await shot('6-duplicate-tab', duplicate);
  await context.close();
});

// Issue 11's counting tests. One page types numbered messages ("m1", "m2", …) into a room of
// their own while the other only reads; afterwards both pages' logs of that room must hold every
// number exactly once and in order, and neither may have said that messages may be missing.

/** At least this many numbered messages are typed per test. */
const NUMBERED = 40;
/** The pause between two typed messages, in ms (typing itself takes a few ms more). */
const TYPING_PAUSE = 60;
/** How long the last number may take to reach a page after it was typed. */
const ARRIVAL = 30_000;

/** What each counting page did (console, errors, network), for failure messages. */
const pageEvents = new Map();

/** Two pages logged in as `typist` and `reader`, both in `room` and showing it. */
async function pairInRoom(typist, reader, room) {
  const pair = [];
  for (const nick of [typist, reader]) {
    const page = await enter(nick);
    pageEvents.set(page, recordPageEvents(page));
    await page.fill('#join-room', room);
    await page.click('#join-form button');
    await page.waitForSelector(`#room-title:has-text("#${room}")`, { timeout: WAIT });
    pair.push(page);
  }
  await pair[0].waitForSelector(`#users li:has-text("${reader}")`, { timeout: WAIT });
  return pair;
}

/** The numbers of the "m<number>" chat messages shown in `page`'s current room, in DOM order. */
async function numbersShown(page) {
  const texts = await page.$$eval('#messages .msg:not(.note)', (els) => els.map((e) => e.lastChild?.textContent ?? ''));
  return texts.map((t) => /^m(\d+)$/.exec(t)).filter(Boolean).map((m) => Number(m[1]));
}

/** The page's own notes (reconnects, gaps, errors) in its current room. */
async function notesShown(page) {
  return page.$$eval('#messages .msg.note', (els) => els.map((e) => e.textContent));
}

/** What the client library in `page` says about its connection. */
async function clientState(page) {
  return page.evaluate(() => ({ session: rp.session, url: rp.url, reconnects: rp.reconnects, state: rp.state }));
}

/** The worker port of the client's current connection. */
function portOf(state) {
  return Number(new URL(state.url).port);
}

/** Missing, repeated and out-of-order numbers of `seen` against 1..n. */
function countProblems(seen, n) {
  const times = new Map();
  for (const x of seen) times.set(x, (times.get(x) ?? 0) + 1);
  const missing = [];
  const repeated = [];
  for (let i = 1; i <= n; i++) {
    if (!times.has(i)) missing.push(i);
    else if (times.get(i) > 1) repeated.push(`m${i}×${times.get(i)}`);
  }
  const unexpected = seen.filter((x) => x < 1 || x > n);
  const backwards = seen.filter((x, i) => i > 0 && x < seen[i - 1]).map((x) => `m${x}`);
  return { missing: missing.map((i) => `m${i}`), repeated, unexpected, backwards };
}

/**
 * Waits (bounded) for m`n` on every page, then for a closing line the reader types (a barrier:
 * whatever the room's log held before it has been delivered), and asserts that each page shows
 * m1..m`n` exactly once and in order and no note saying messages may be missing or an error.
 */
async function assertEveryNumber(pagesByNick, n, mark, what) {
  const closing = `end of ${what}`;
  for (const [nick, page] of Object.entries(pagesByNick)) {
    // A timeout here is reported by the count below, which says what is missing.
    await until(`m${n} on ${nick}'s page`, async () => (await numbersShown(page)).includes(n), ARRIVAL).catch(() => {});
  }
  const [, reader] = Object.values(pagesByNick);
  await say(reader, closing);
  for (const page of Object.values(pagesByNick)) await waitForText(page, closing).catch(() => {});
  for (const [nick, page] of Object.entries(pagesByNick)) {
    const seen = await numbersShown(page);
    const notes = await notesShown(page);
    const state = await clientState(page);
    const problems = countProblems(seen, n);
    const detail = () => `${nick}'s page ${JSON.stringify(state)}\n`
      + `problems: ${JSON.stringify(problems)}\nshown: ${seen.join(' ')}\nnotes: ${JSON.stringify(notes)}\n`
      + `--- ${nick}'s page events (last 40) ---\n${pageEvents.get(page)().split('\n').slice(-40).join('\n')}\n`
      + logsSince(mark);
    assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i + 1),
      `every number typed, exactly once and in order, on ${nick}'s page\n${detail()}`);
    assert.ok(!notes.some((t) => /may be missing|error:/.test(t)), `no gap or error shown on ${nick}'s page\n${detail()}`);
    assert.ok(await page.isVisible(`#messages .msg:has-text(${JSON.stringify(closing)})`),
      `the closing line reached ${nick}'s page\n${detail()}`);
  }
}

/** `POST /api/restart` with the API key: a staged restart (as SIGHUP starts one). */
async function apiRestart() {
  const res = await fetch(`http://127.0.0.1:${mainPort}/api/restart`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${apiKey}` },
  });
  assert.equal(res.status, 202, `POST /api/restart answered ${res.status}`);
  assert.deepEqual(await res.json(), { started: true }, 'a staged restart started (none was rolling)');
}

test('the chat keeps every message across a staged restart', { timeout: 120_000 }, async () => {
  const mark = logMark();
  const [erin, frank] = await pairInRoom('erin', 'frank', 'restart');
  const before = await Promise.all([erin, frank].map(clientState));
  const workersBefore = (await health()).workers;

  // Type; after m5 the restart starts, and typing goes on until the roll is over (at least 5
  // more after it, at least NUMBERED in all), so that messages are typed through all of it.
  let typed = 0;
  let typedWhenRolled = null;
  let roll = null;
  let rollSettled = false;
  const MOST = 400; // at ~100 ms per message, longer than the roll may take (below)
  for (let i = 1; i <= MOST; i++) {
    await say(erin, `m${i}`);
    typed = i;
    if (i === 5) {
      await apiRestart();
      roll = until('the staged restart to replace every worker', async () => {
        const h = await health();
        return h && !h.rolling && h.ready_workers === 2
          && h.workers.every((w, k) => w.generation > workersBefore[k].generation);
      }, 25_000).then(() => { typedWhenRolled = typed; }).finally(() => { rollSettled = true; });
      roll.catch(() => {}); // awaited below
    }
    if (rollSettled && typedWhenRolled === null) break; // the roll timed out: `await roll` says so
    if (i >= NUMBERED && typedWhenRolled !== null && i >= typedWhenRolled + 5) break;
    await sleep(TYPING_PAUSE);
  }
  await roll;
  console.log(`staged restart: typed m1..m${typed}; the roll was over after m${typedWhenRolled}`);

  await assertEveryNumber({ erin, frank }, typed, mark, 'the restart count');
  const after = await Promise.all([erin, frank].map(clientState));
  for (const [k, nick] of ['erin', 'frank'].entries()) {
    assert.ok(after[k].reconnects > before[k].reconnects, `${nick}'s page reconnected during the roll: ${JSON.stringify(after[k])}`);
    assert.equal(after[k].session, before[k].session, `${nick}'s page resumed its session`);
  }
  await shot('7-restart-count-frank', frank);
  await Promise.all([erin, frank].map((p) => p.context().close()));
});

test('the chat keeps every message across a killed worker', { timeout: 120_000 }, async () => {
  const mark = logMark();
  const [gina, hugo] = await pairInRoom('gina', 'hugo', 'crash');
  const before = await Promise.all([gina, hugo].map(clientState));
  const port = portOf(before[0]);
  const victim = (await health()).workers.find((w) => w.port === port);
  assert.ok(victim?.pid, `the worker on port ${port} (gina's) is listed with its pid`);
  const sharing = portOf(before[1]) === port;
  console.log(`killed worker: gina on port ${port} (pid ${victim.pid}); hugo on ${portOf(before[1])}`
    + (sharing ? ' (the same worker)' : ' (the other worker)'));

  // Type m1..mNUMBERED; with m10, gina's worker is killed (no drain, no 1012) while m10 is in
  // flight: the demo backend is stopped (SIGSTOP) before m10 is typed, so the worker has passed
  // m10 on but has no answer to acknowledge it with when it dies; the backend, continued right
  // after the kill, publishes m10, and the page resends it (no ack) with the same id, which the
  // backend must drop as a repeat.
  for (let i = 1; i <= NUMBERED; i++) {
    if (i === 10) {
      backend.kill('SIGSTOP');
      try {
        await say(gina, `m${i}`);
        await sleep(300); // for the worker to pass m10 on to the stopped backend
        process.kill(victim.pid, 'SIGKILL');
      } finally {
        backend.kill('SIGCONT');
      }
    } else {
      await say(gina, `m${i}`);
    }
    await sleep(TYPING_PAUSE);
  }
  await until('the killed worker to be replaced', async () => {
    const w = (await health())?.workers.find((x) => x.index === victim.index);
    return w && w.state === 'ready' && w.generation > victim.generation && w.pid !== victim.pid;
  }, 20_000);

  await assertEveryNumber({ gina, hugo }, NUMBERED, mark, 'the crash count');
  const repeats = readFileSync(logs.backend).subarray(mark.backend).toString('utf8').match(/repeated message dropped/g);
  console.log(`killed worker: the demo backend dropped ${repeats?.length ?? 0} repeated message id(s)`);
  const after = await Promise.all([gina, hugo].map(clientState));
  assert.ok(after[0].reconnects > before[0].reconnects, `gina's page reconnected after the kill: ${JSON.stringify(after[0])}`);
  assert.equal(after[0].session, before[0].session, "gina's page resumed its session");
  if (sharing) assert.ok(after[1].reconnects > before[1].reconnects, "hugo's page (same worker) reconnected too");
  await shot('8-crash-count-hugo', hugo);
  await Promise.all([gina, hugo].map((p) => p.context().close()));
});
