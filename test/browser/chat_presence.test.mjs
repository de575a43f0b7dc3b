// The demo chat's user lists follow Rohrpost's session events: the real supervisor (embedded
// broker, two workers, a short sessions.resume_grace) POSTs session.opened/closed to the demo
// backend's /events (hooks.events_url), and Chromium pages show what the backend broadcasts.
// A closed tab leaves every list within resume_grace plus a second and its name is free again;
// a direct message to it says it has left; a page that calls close() leaves at once; a staged
// restart changes no list. The supervisor's and the demo backend's logs go to files named at
// the start.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  copyFileSync, cpSync, existsSync, mkdtempSync, openSync, readFileSync, statSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { launchChromium } from './lib/browser.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '../..');
const BIN = process.env.ROHRPOST_BIN || join(repo, 'target/release/rohrpost');
const WAIT = 15_000;
/** The test's sessions.resume_grace, in ms. */
const GRACE = 2_000;
/** How long after its tab closed a user may still be listed. */
const LEAVES_WITHIN = GRACE + 1_000;
const ROOM = 'presence';

let supervisor;
let backend;
let mainPort;
let apiKey;
let browser;
/** The logged-in pages, by nickname. */
const pages = {};
/** Where the supervisor (with its workers) and the demo backend write their logs. */
const logs = {};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A loopback port the OS says is free. */
async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A free port with two free ports after it: the main port and the two workers'. */
async function freeBlock() {
  for (let i = 0; i < 50; i++) {
    const base = await freePort();
    if (base > 60000) continue;
    const free = await Promise.all([1, 2].map((d) => new Promise((resolve) => {
      const s = net.createServer().once('error', () => resolve(false))
        .listen(base + d, '127.0.0.1', () => s.close(() => resolve(true)));
    })));
    if (free.every(Boolean)) return base;
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
    await sleep(50);
  }
}

/** The repository's `static/`, with sockjs-client from node_modules if it was not copied in. */
function staticDir(dir) {
  const target = join(dir, 'static');
  cpSync(join(repo, 'static'), target, { recursive: true });
  const sockjs = join(target, 'js/sockjs.min.js');
  if (!existsSync(sockjs)) copyFileSync(join(here, 'node_modules/sockjs-client/dist/sockjs.min.js'), sockjs);
  return target;
}

/** The demo backend's log lines since byte `mark`. */
function backendLogSince(mark) {
  return readFileSync(logs.backend).subarray(mark).toString('utf8').split('\n').filter(Boolean);
}

/** The chat page in a fresh browser context, at its login form. */
async function openChat() {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${mainPort}/`);
  return page;
}

async function login(page, nick) {
  await page.fill('#nick', nick);
  await page.click('#login-form button');
}

/** Opens the chat as `nick` and joins ROOM. */
async function enter(nick) {
  const page = await openChat();
  await login(page, nick);
  await page.waitForSelector('#chat:not(.hidden)', { timeout: WAIT });
  await page.fill('#join-room', ROOM);
  await page.click('#join-form button');
  await page.waitForSelector(`#room-title:has-text("#${ROOM}")`, { timeout: WAIT });
  pages[nick] = page;
  return page;
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#say-form button');
}

/** The user list of every room the page knows, as the page keeps it: {room: [names]}. */
async function lists(page) {
  return page.evaluate(() => Object.fromEntries([...rooms].map(([name, r]) => [name, [...r.users]])));
}

/** The names in the user list the page shows (its current room). */
async function shownUsers(page) {
  return page.$$eval('#users li', (els) => els.map((e) => e.textContent.replace(/ \(you\)$/, '')));
}

/** Waits until every one of `watchers` lists exactly `names` (any order) in each of `rooms`. */
async function untilListed(watchers, rooms, names, within = WAIT) {
  const want = JSON.stringify([...names].sort());
  for (const page of watchers) {
    await until(`${want} listed in ${rooms}`, async () => {
      const l = await lists(page);
      return rooms.every((room) => JSON.stringify(l[room]) === want);
    }, within);
  }
}

/** Rohrpost's server API with the test's key. */
async function api(method, path) {
  return fetch(`http://127.0.0.1:${mainPort}${path}`, {
    method,
    headers: { Authorization: `Bearer ${apiKey}` },
  });
}

before(async () => {
  mainPort = await freeBlock();
  const backendPort = await freePort();
  apiKey = `presence-test-${Date.now()}`;
  const dir = mkdtempSync(join(tmpdir(), 'rohrpost-chat-presence-'));
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
resume_grace = "${GRACE / 1000}s"
[api]
key = "${apiKey}"
[hooks]
events_url = "http://127.0.0.1:${backendPort}/events"
[[http_topics]]
pattern = "chat.*"
url = "http://127.0.0.1:${backendPort}/rohrpost"
`);
  const env = { ...process.env, ROHRPOST__API__KEY: apiKey };
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

test('a closed tab leaves every list within resume_grace + 1 s; its name is free again; a DM to it says it left', async () => {
  const ann = await enter('ann');
  const ben = await enter('ben');
  const cid = await enter('cid');
  await untilListed([ann, ben, cid], ['lobby', ROOM], ['ann', 'ben', 'cid']);

  // While cid is online its name is taken.
  const late = await openChat();
  await login(late, 'cid');
  await late.waitForSelector('#login-error:has-text("taken")', { timeout: WAIT });

  const closedAt = Date.now();
  await cid.close();
  await untilListed([ann, ben], ['lobby', ROOM], ['ann', 'ben'], LEAVES_WITHIN + WAIT);
  const took = Date.now() - closedAt;
  console.log(`cid left every list ${took} ms after its tab closed (resume_grace ${GRACE} ms)`);
  assert.ok(took <= LEAVES_WITHIN, `cid left the lists ${took} ms after its tab closed (at most ${LEAVES_WITHIN})`);
  for (const page of [ann, ben]) assert.deepEqual(await shownUsers(page), ['ann', 'ben'], 'the list shown');

  await say(ben, '@cid are you there?');
  await ben.waitForSelector('#messages .msg.note:has-text("cid")', { timeout: WAIT });
  const notes = await ben.$$eval('#messages .msg.note', (els) => els.map((e) => e.textContent));
  assert.ok(notes.some((n) => /cid (is not online|has left)/.test(n)), `ben is told cid has gone: ${JSON.stringify(notes)}`);
  assert.ok(!(await ben.isVisible('#messages .msg.dm:has-text("are you there")')), 'the DM did not go out');

  // The freed name: the page that was refused logs in as cid now.
  await login(late, 'cid');
  await late.waitForSelector('#chat:not(.hidden)', { timeout: WAIT });
  assert.match(await late.textContent('#status'), /cid/);
  await until('the new cid in ann\'s lobby list', async () => (await lists(ann)).lobby.includes('cid'));
  await say(ann, '@cid welcome');
  await late.waitForSelector('#messages .msg.dm:has-text("welcome")', { timeout: WAIT });
  pages.cid = late;
});

test('a page that calls close() leaves every list at once, without waiting for resume_grace', async () => {
  const { ann, ben } = pages;
  const dee = await enter('dee');
  delete pages.dee; // it leaves in this test
  await untilListed([ann, ben], [ROOM], ['ann', 'ben', 'dee']);
  await untilListed([ann, ben], ['lobby'], ['ann', 'ben', 'cid', 'dee']);
  const closedAt = Date.now();
  await dee.evaluate(() => rp.close());
  await until('dee to leave ann\'s lists', async () => {
    const l = await lists(ann);
    return !l.lobby.includes('dee') && !l[ROOM].includes('dee');
  });
  const took = Date.now() - closedAt;
  console.log(`dee left ann's lists ${took} ms after close()`);
  assert.ok(took < GRACE, `dee left ${took} ms after close() (a bye ends the session at once, before ${GRACE} ms)`);
  await untilListed([ann, ben], [ROOM], ['ann', 'ben']);
  await untilListed([ann, ben], ['lobby'], ['ann', 'ben', 'cid']);
  await dee.context().close();
});

test('a staged restart changes no user list', { timeout: 90_000 }, async () => {
  const watchers = Object.values(pages);
  // Every user list any page receives from here on, by room.
  for (const page of watchers) {
    await page.evaluate(() => {
      window.listsSeen = [];
      rp.on('chat.room.*', (d) => { if (d.type === 'users') window.listsSeen.push([d.room, d.users]); });
    });
  }
  const listsBefore = await Promise.all(watchers.map(lists));
  const sessionsBefore = await Promise.all(watchers.map((p) => p.evaluate(() => ({ session: rp.session, reconnects: rp.reconnects }))));
  const workersBefore = (await health()).workers;
  const logMark = statSync(logs.backend).size;

  const res = await api('POST', '/api/restart');
  assert.equal(res.status, 202, `POST /api/restart answered ${res.status}`);
  await until('the staged restart to replace every worker', async () => {
    const h = await health();
    return h && !h.rolling && h.ready_workers === 2
      && h.workers.every((w, k) => w.generation > workersBefore[k].generation);
  }, 40_000);
  await until('every page to be open again', async () => {
    const states = await Promise.all(watchers.map((p) => p.evaluate(() => rp.state)));
    return states.every((s) => s === 'open');
  });
  // A session that did not come back would leave its lists after resume_grace: wait that out.
  await sleep(LEAVES_WITHIN);

  for (const [k, page] of watchers.entries()) {
    const now = await page.evaluate(() => ({ session: rp.session, reconnects: rp.reconnects }));
    assert.ok(now.reconnects > sessionsBefore[k].reconnects, `page ${k} reconnected during the roll`);
    assert.equal(now.session, sessionsBefore[k].session, `page ${k} resumed its session`);
    assert.deepEqual(await lists(page), listsBefore[k], `page ${k}'s user lists are as before the restart`);
    const seen = await page.evaluate(() => window.listsSeen);
    for (const [room, users] of seen) {
      assert.deepEqual(users, listsBefore[k][room], `page ${k} was sent a changed list of ${room} during the restart`);
    }
  }
  const closes = backendLogSince(logMark).filter((l) => /session closed/.test(l));
  assert.deepEqual(closes, [], 'the demo backend got no session.closed during the restart');
});
