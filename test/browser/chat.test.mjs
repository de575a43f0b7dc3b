// The demo chat end to end: the real supervisor with the embedded broker, the demo backend,
// the page served by the main port, and three Chromium browser contexts — one of them forced to
// the xhr-polling transport. Screenshots go to a folder printed at the start, for humans.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { launchChromium } from './lib/browser.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '../..');
const BIN = process.env.ROHRPOST_BIN || join(repo, 'target/release/rohrpost');
const WAIT = 15_000;
const shots = mkdtempSync(join(tmpdir(), 'rohrpost-chat-screenshots-'));

let supervisor;
let backend;
let mainPort;
let browser;
const pages = {};

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

before(async () => {
  console.log(`screenshots: ${shots}`);
  mkdirSync(shots, { recursive: true });
  mainPort = await freeBlock();
  const backendPort = await freePort();
  const key = `chat-test-${Date.now()}`;
  const dir = mkdtempSync(join(tmpdir(), 'rohrpost-chat-'));
  writeFileSync(join(dir, 'r.toml'), `
[http]
host = "127.0.0.1"
main_port = ${mainPort}
worker_base_port = ${mainPort + 1}
static_dir = "${join(repo, 'static')}"
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
    '--api', `http://127.0.0.1:${mainPort}`], { cwd: dir, env, stdio: ['ignore', 'ignore', 'inherit'] });
  supervisor = spawn(BIN, ['--config', 'r.toml'], { cwd: dir, env, stdio: ['ignore', 'ignore', 'inherit'] });
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
