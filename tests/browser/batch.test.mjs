// The queue: many photos at once (issue 14, the page). Six photos made with Pillow here, at most 4 in flight,
// every row done, the running total, one row KIE's createTask fails (the simulator's create_mode for exactly one
// request) retried from its button with the same Idempotency-Key, the estimate before "Generate all", 429 waited
// out (Retry-After) with each row's key kept, "Download all" (GET /results.zip, with the token when one is set,
// checked by unzipping it), and S3 mode (each row's presigned PUT; no ZIP there).
// Servers (run.sh): batch (its own store and rate-limit buckets, RATE_LIMIT_GENERATE=30), auth, and kie-sim.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { env, launch, newPage, simConfig, simRequests, simClearRequests, getJson } from './helpers.mjs';

const BASE = env('E2E_BATCH_BASE');
const AUTH = env('E2E_AUTH_BASE');
const TOKEN = env('E2E_AUTH_TOKEN');
const SIM = env('E2E_SIM_BASE');
const PYTHON = '/usr/bin/python3';
const ACTIVE = ['uploading', 'creating', 'waiting', 'queuing', 'generating'];
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** n product photos as JPEG files (Pillow), each its own size and colour: [{name, mimeType, buffer}]. */
function photos(n, stem) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ppa-batch-'));
  try {
    execFileSync(PYTHON, ['-c', `
import sys
from PIL import Image, ImageDraw
d, n, stem = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    w, h = 120 + 16 * i, 90 + 8 * i
    im = Image.new("RGB", (w, h), (30 + 35 * i, 200 - 25 * i, 90 + 20 * i))
    ImageDraw.Draw(im).ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=(250, 250, 245))
    im.save(f"{d}/{stem}-{i + 1}.jpg", "JPEG", quality=90)`, dir, String(n), stem]);
    return Array.from({ length: n }, (_, i) => {
      const name = `${stem}-${i + 1}.jpg`;
      return { name, mimeType: 'image/jpeg', buffer: readFileSync(path.join(dir, name)) };
    });
  } finally { rmSync(dir, { recursive: true, force: true }); }
}
/** The entries of a ZIP file: [{name, size}], and whether every CRC matches (Python's zipfile). */
function zipEntries(file) {
  const out = execFileSync(PYTHON, ['-c', `
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
print(json.dumps({"bad": z.testzip(), "entries": [{"name": i.filename, "size": i.file_size, "method": i.compress_type} for i in z.infolist()]}))`, file]);
  return JSON.parse(out);
}
/** GET /results.zip exists: an empty tasks= list is 400 invalid_tasks. */
async function assertResultsZip(base, token) {
  const r = await fetch(base + '/results.zip?tasks=', { headers: token ? { Authorization: 'Bearer ' + token } : {} });
  const body = await r.json().catch(() => null);
  assert.equal(r.status, 400, 'an empty tasks= list: 400');
  assert.equal(body?.error?.code, 'invalid_tasks');
}
/** Every POST /generate and its answer: [{key, body, status, retryAfter, taskId, at, answeredAt}]. */
function recordGenerates(page) {
  const seen = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/generate') {
      seen.push({ req: r, key: r.headers()['idempotency-key'], body: r.postData(), at: Date.now() });
    }
  });
  page.on('response', async (res) => {
    const e = seen.find((s) => s.req === res.request());
    if (!e) return;
    e.status = res.status();
    e.retryAfter = Number(res.headers()['retry-after'] || 0);
    e.answeredAt = Date.now();
    const b = await res.json().catch(() => null);
    e.taskId = b?.data?.taskId;
  });
  return seen;
}
/** Records the largest number of rows in flight at once into window.__maxActive. */
async function watchInFlight(page) {
  await page.evaluate((active) => {
    window.__maxActive = 0;
    const count = () => [...document.querySelectorAll('#queue li')].filter((li) => active.includes(li.dataset.state)).length;
    new MutationObserver(() => { window.__maxActive = Math.max(window.__maxActive, count()); })
      .observe(document.querySelector('#queue'), { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'] });
  }, ACTIVE);
}
const rowStates = (page) => page.locator('#queue li').evaluateAll((lis) => lis.map((li) => li.dataset.state));
async function waitAllFinal(page, n, timeout = 90_000) {
  await page.waitForFunction((k) => {
    const lis = [...document.querySelectorAll('#queue li')];
    return lis.length === k && lis.every((li) => li.dataset.state === 'done' || li.dataset.state === 'failed');
  }, n, { timeout });
}
const creates = async () => (await simRequests(SIM)).filter((q) => q.path.startsWith('/api/v1/jobs/createTask'));

/** Clicks "Download all" and returns {request: {url, auth}, file, name}: the ZIP as saved. */
async function downloadAll(page) {
  const asked = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/results.zip') asked.push({ url: r.url(), auth: r.headers().authorization || '' });
  });
  const download = page.waitForEvent('download');
  await page.click('#download-all:enabled');
  const d = await download;
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'ppa-dl-')), 'dl.zip');
  await d.saveAs(file);
  assert.equal(asked.length, 1, 'one GET /results.zip');
  return { request: asked[0], file, name: d.suggestedFilename() };
}

test('a queue of six photos: estimate, at most 4 in flight, a failed row retried, totals, Download all', { timeout: 180_000 }, async () => {
  // the first createTask of the batch fails at KIE (HTTP 200, code 500): exactly one row, whichever goes first
  await simConfig(SIM, { reset: true, step_ms: 400, create_mode: 'code500', create_mode_times: 1 });
  await simClearRequests(SIM);
  await assertResultsZip(BASE);
  const price = (await getJson(BASE + '/credits')).body.price['1K'];
  assert.ok(price > 0, 'GET /credits names a price per 1K image');

  const { page, unexpected } = await newPage(browser);
  const generates = recordGenerates(page);
  const uploads = [];
  page.on('request', (r) => { if (new URL(r.url()).pathname === '/upload') uploads.push(Date.now()); });
  await page.goto(BASE + '/');
  await page.waitForSelector('#server-state.ok');
  await watchInFlight(page);
  const files = photos(6, 'mug');
  await page.setInputFiles('#file', files);

  // a row per photo, labelled by its name; nothing sent before "Generate all"; the estimate from /credits
  await page.waitForSelector('#batch:not([hidden])');
  assert.deepEqual(await rowStates(page), Array(6).fill('queued'));
  const labels = await page.locator('#queue li').evaluateAll((lis) => lis.map((li) => document.getElementById(li.getAttribute('aria-labelledby')).textContent));
  assert.deepEqual(labels, files.map((f) => f.name));
  assert.equal(await page.locator('#queue').evaluate((q) => q.tagName + ' ' + q.getAttribute('aria-label')), 'UL Photos in the queue');
  assert.equal(await page.getAttribute('#queue-total', 'role'), 'status');
  await page.waitForSelector('#queue-estimate[data-estimate]:not([data-estimate=""])');
  assert.equal(await page.getAttribute('#queue-estimate', 'data-estimate'), String(6 * price));
  assert.match(await page.textContent('#queue-estimate'), new RegExp(`6 × ${price} credits \\(1K\\) = ${6 * price} credits`));
  assert.equal(await page.locator('#generate-all').isEnabled(), true);
  assert.equal(await page.locator('#download-all').isDisabled(), true);
  await page.waitForFunction(() => [...document.querySelectorAll('#queue .q-thumb:not(.q-result)')].every((i) => !i.hidden && i.naturalWidth > 0));
  assert.deepEqual(uploads, [], 'no upload before Generate all');
  // one row with its own resolution before it starts: the estimate follows
  const last = page.locator('#queue li').nth(5);
  await last.locator('summary').click();
  await last.locator('select[id$="-res"]').selectOption('2K');
  const price2k = (await getJson(BASE + '/credits')).body.price['2K'];
  assert.equal(await page.getAttribute('#queue-estimate', 'data-estimate'), String(5 * price + price2k));
  await last.locator('select[id$="-res"]').selectOption('1K');
  await page.screenshot({ path: path.join(process.env.E2E_OUT_DIR, 'browser-queue.png'), fullPage: true });

  await page.click('#generate-all');
  await waitAllFinal(page, 6);
  const states = await rowStates(page);
  assert.equal(states.filter((s) => s === 'done').length, 5, 'states: ' + states);
  assert.equal(states.filter((s) => s === 'failed').length, 1, 'states: ' + states);
  assert.equal(await page.evaluate(() => window.__maxActive), 4, 'four photos in flight at once, never more');

  // the failed row: KIE's message, a Retry button reached by keyboard, the same Idempotency-Key again
  const failed = page.locator('#queue li[data-state=failed]');
  assert.match(await failed.locator('.q-error').innerText(), /HTTP 500|Server error/);
  const firstTry = generates.find((g) => g.status === 500);
  assert.ok(firstTry, 'one POST /generate answered 500: ' + generates.map((g) => g.status));
  await failed.locator('button', { hasText: 'Retry' }).focus();
  await page.keyboard.press('Enter');
  await waitAllFinal(page, 6);
  await page.waitForFunction(() => [...document.querySelectorAll('#queue li')].every((li) => li.dataset.state === 'done'));

  assert.equal(generates.length, 7, 'six photos and one retry');
  assert.equal(new Set(generates.map((g) => g.key)).size, 6, 'one Idempotency-Key per row');
  const again = generates.filter((g) => g.key === firstTry.key);
  assert.equal(again.length, 2, 'the retry sent the same key');
  assert.equal(again[1].body, again[0].body, '... and the same body');
  assert.equal(again[1].status, 200);
  assert.equal((await creates()).length, 7, 'seven createTask calls reached KIE');
  const taskIds = generates.filter((g) => g.status === 200).map((g) => g.taskId);
  assert.equal(new Set(taskIds).size, 6);

  // the running total: 6 done, credits spent as KIE reported them (the price per 1K image)
  await page.waitForFunction((n) => document.querySelector('#queue-total').dataset.spent === String(n), 6 * price);
  const total = await page.textContent('#queue-total');
  assert.match(total, /^6 photos: 6 done · 0 failed · 0 queued · /);
  assert.match(total, new RegExp(`${6 * price} credits spent$`));
  assert.equal(await page.locator('#queue .q-result').evaluateAll((imgs) => imgs.filter((i) => !i.hidden).length), 6);
  await page.waitForFunction(() => [...document.querySelectorAll('#queue .q-result')].every((i) => i.complete && i.naturalWidth > 0));
  await page.locator('#batch').screenshot({ path: path.join(process.env.E2E_OUT_DIR, 'browser-queue-done.png') });
  // the queue's tasks are in Recent tasks too, and a row's View shows its result
  for (const id of taskIds) await page.locator(`#recent li[data-task="${id}"]`).waitFor();
  await page.locator('#queue li').first().locator('button', { hasText: 'View' }).click();
  await page.waitForSelector('#result:not([hidden])');

  // Download all: one GET /results.zip?tasks=<the six ids, in the queue's order>
  const rowTasks = await page.locator('#queue li').evaluateAll((lis) => lis.map((li) => li.dataset.task));
  assert.deepEqual([...rowTasks].sort(), [...taskIds].sort());
  const dl = await downloadAll(page);
  const u = new URL(dl.request.url);
  assert.equal(u.search, '?tasks=' + rowTasks.join(','));
  assert.equal(dl.request.auth, '', 'no token on this server');
  assert.equal(dl.name, 'studio-results.zip');
  const zip = zipEntries(dl.file);
  assert.equal(zip.bad, null, 'every CRC matches');
  // one entry per photo, named after it (the page sent photo_name), stored (the images are compressed already),
  // no MISSING.txt (every task asked for is done)
  const names = zip.entries.map((e) => e.name);
  assert.equal(names.length, 6, 'six entries: ' + names);
  assert.deepEqual(names.map((n) => n.replace(/\.[^.]+$/, '')).sort(), files.map((f) => f.name.replace(/\.jpg$/, '')).sort());
  assert.ok(zip.entries.every((e) => e.method === 0 && e.size > 0), JSON.stringify(zip.entries));
  for (const g of generates.filter((x) => x.status === 200)) {
    assert.ok(files.some((f) => JSON.parse(g.body).photo_name === f.name), 'photo_name sent: ' + g.body);
  }
  rmSync(path.dirname(dl.file), { recursive: true, force: true });
  assert.deepEqual(unexpected([/status of 500/]), [], 'only the failed createTask');
  await page.close();
});

test('429: each row waits Retry-After and sends the same request with its own key again', { timeout: 120_000 }, async () => {
  // empty this server's generate bucket for 127.0.0.1 (30, one more every 2 s), so that every row is refused at
  // first: only valid requests bound for KIE count, so these are, and KIE refuses them (code 422, no task)
  await simConfig(SIM, { reset: true, create_mode: 'code422' });
  let limited = null;
  for (let i = 0; i < 80 && !limited; i++) {
    const r = await fetch(BASE + '/generate', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ input_url: SIM + '/results/none.png', prompt: 'drain the bucket' }),
    });
    if (r.status === 429) limited = r;
    else assert.equal(r.status, 422, 'KIE refused it');
  }
  assert.ok(limited, 'the bucket ran empty');
  assert.equal((await limited.json()).error.code, 'rate_limited');
  assert.ok(Number(limited.headers.get('retry-after')) > 0);
  await simConfig(SIM, { reset: true, step_ms: 100 });

  const { page, unexpected } = await newPage(browser);
  const generates = recordGenerates(page);
  await page.goto(BASE + '/');
  await page.waitForSelector('#server-state.ok');
  const files = photos(3, 'vase');
  await page.setInputFiles('#file', files.slice(0, 2));
  await page.waitForSelector('#batch:not([hidden])');
  // one more photo while the queue has rows joins the queue (one photo alone is the single flow)
  await page.setInputFiles('#file', files[2]);
  await page.waitForFunction(() => document.querySelectorAll('#queue li').length === 3);
  assert.equal(await page.locator('#upload-box').isHidden(), true);
  await page.click('#generate-all');
  await page.waitForFunction(() => [...document.querySelectorAll('#queue .q-note')].some((p) => /^Rate limited: trying again in \d+ s/.test(p.textContent)));
  await waitAllFinal(page, 3);
  assert.deepEqual(await rowStates(page), ['done', 'done', 'done']);

  const keys = [...new Set(generates.map((g) => g.key))];
  assert.equal(keys.length, 3, 'one key per row');
  assert.ok(generates.some((g) => g.status === 429), 'some were refused: ' + generates.map((g) => g.status));
  for (const k of keys) {
    const tries = generates.filter((g) => g.key === k);
    assert.equal(tries.at(-1).status, 200, 'each row ends created');
    assert.equal(new Set(tries.map((g) => g.body)).size, 1, 'the same body on every try');
    for (let i = 1; i < tries.length; i++) {
      const prev = tries[i - 1];
      assert.equal(prev.status, 429);
      assert.ok(tries[i].at - prev.answeredAt >= prev.retryAfter * 1000 - 50,
        `waited ${tries[i].at - prev.answeredAt} ms after Retry-After: ${prev.retryAfter}`);
    }
  }
  assert.match(await page.textContent('#queue-total'), /^3 photos: 3 done · 0 failed · 0 queued · /);
  assert.deepEqual(unexpected([/status of 429/]), [], 'only the 429s');
  await page.close();
});

test('with an API token: the queue sends it, and Download all asks for the ZIP with it', { timeout: 120_000 }, async () => {
  await simConfig(SIM, { reset: true, step_ms: 100 });
  await assertResultsZip(AUTH, TOKEN);
  const { page, unexpected } = await newPage(browser);
  const generates = recordGenerates(page);
  await page.goto(AUTH + '/');
  await page.waitForSelector('#auth-form:not([hidden])');
  await page.fill('#auth-token', TOKEN);
  await page.click('#auth-form button[type=submit]');
  const files = photos(2, 'lamp');
  // local mode: the server detects the type, so a text file named .jpg is sent, refused (415) and not offered again
  const notes = { name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not a photo at all, just text\n') };
  await page.setInputFiles('#file', [...files, notes]);
  await page.click('#generate-all:enabled');
  await page.waitForFunction(() => [...document.querySelectorAll('#queue li')].map((li) => li.dataset.state).join() === 'done,done,rejected');
  const refused = page.locator('#queue li').nth(2);
  assert.match(await refused.locator('.q-error').innerText(), /cannot be used: the server accepts JPEG/);
  assert.equal(await refused.locator('button', { hasText: 'Retry' }).isHidden(), true);
  assert.equal(generates.length, 2);
  const rowTasks = await page.locator('#queue li[data-state=done]').evaluateAll((lis) => lis.map((li) => li.dataset.task));
  const dl = await downloadAll(page);
  assert.equal(dl.request.auth, 'Bearer ' + TOKEN);
  assert.equal(new URL(dl.request.url).search, '?tasks=' + rowTasks.join(','));
  assert.deepEqual(zipEntries(dl.file).entries.map((e) => e.name).sort(), ['lamp-1.png', 'lamp-2.png']);
  rmSync(path.dirname(dl.file), { recursive: true, force: true });
  assert.deepEqual(unexpected([/status of 415/]), []);
  await page.close();
});

test('S3 mode: each row uploads like one photo (presigned PUT, /upload-complete); too large or not an image is not sent', { timeout: 120_000 }, async () => {
  const S3BASE = env('E2E_S3_BASE');
  const S3 = env('E2E_S3_ORIGIN');
  await simConfig(SIM, { reset: true, step_ms: 100 });
  const cfg = (await getJson(S3BASE + '/config')).body;
  assert.equal(cfg.direct_upload, true);
  const max = cfg.max_direct_upload_bytes;
  const { page, unexpected } = await newPage(browser);
  const seen = [];
  page.on('request', (r) => seen.push({ method: r.method(), url: r.url() }));
  await page.goto(S3BASE + '/');
  await page.waitForSelector('#server-state.ok');
  const files = photos(2, 'chair');
  const big = Buffer.alloc(max + 1, 0);
  files[0].buffer.copy(big);
  files.push({ name: 'huge.jpg', mimeType: 'image/jpeg', buffer: big });
  files.push({ name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not a photo at all, just text\n') });
  await page.setInputFiles('#file', files);
  await page.waitForFunction(() => document.querySelectorAll('#queue li').length === 4 &&
    document.querySelectorAll('#queue li[data-state=rejected]').length === 2);
  const huge = page.locator('#queue li').nth(2);
  assert.match(await huge.locator('.q-error').innerText(), /Too large: .* the limit is/);
  assert.match(await page.locator('#queue li').nth(3).locator('.q-error').innerText(), /Not a JPEG, PNG/);
  assert.equal(await huge.locator('button', { hasText: 'Retry' }).isHidden(), true, 'nothing to retry');
  const price = (await getJson(S3BASE + '/credits')).body.price['1K'];
  await page.waitForSelector('#queue-estimate[data-estimate]:not([data-estimate=""])');
  assert.equal(await page.getAttribute('#queue-estimate', 'data-estimate'), String(2 * price), 'only the photos that can be sent');
  await page.click('#generate-all');
  await page.waitForFunction(() => [...document.querySelectorAll('#queue li')].filter((li) => li.dataset.state === 'done').length === 2);
  assert.deepEqual(await rowStates(page), ['done', 'done', 'rejected', 'rejected']);
  const count = (pred) => seen.filter(pred).length;
  assert.equal(count((q) => q.method === 'POST' && q.url === S3BASE + '/upload-url'), 2, 'two presigned PUTs asked');
  assert.equal(count((q) => q.method === 'PUT' && q.url.startsWith(S3 + '/')), 2, 'two PUTs straight to the bucket');
  assert.equal(count((q) => q.method === 'POST' && q.url === S3BASE + '/upload-complete'), 2);
  assert.equal(count((q) => q.url === S3BASE + '/upload'), 0, 'no POST /upload through the server');
  assert.match(await page.textContent('#queue-total'), /^4 photos: 2 done · 2 failed · 0 queued · /);
  // no ZIP in S3 mode (501): the page says what to do instead
  await page.click('#download-all:enabled');
  await page.waitForSelector('#queue-error:not([hidden])');
  assert.match(await page.textContent('#queue-error'), /cannot make a ZIP .*S3 storage.*View/);
  assert.deepEqual(unexpected([/status of 501/]), []);
  await page.close();
});
