// Recent tasks from GET /tasks (any browser, not just the one that started them) with localStorage as the
// fallback, and one Idempotency-Key per click of Generate (reused by the page's own retries of that click).
// Against the history server (run.sh): product-photo-api with a task store of its own + kie-sim.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env, launch, newPage, makePng, simConfig, simRequests, simClearRequests, getJson, waitForResultImage } from './helpers.mjs';

const BASE = env('E2E_HISTORY_BASE');
const SIM = env('E2E_SIM_BASE');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function uploadPhoto(page, name, w = 96, h = 72) {
  await page.setInputFiles('#file', { name, mimeType: 'image/png', buffer: makePng(w, h) });
  await page.waitForSelector('#upload-box.done');
}
/** Waits until the task shown is `id` and it is done. */
async function waitDone(page, id) {
  await page.waitForFunction((tid) => document.querySelector('#task-info').textContent.includes(tid) &&
    document.querySelector('#task-state').classList.contains('s-success'), id, { timeout: 60_000 });
}
const creates = async () => (await simRequests(SIM)).filter((q) => q.path === '/api/v1/jobs/createTask');
/** Every POST /generate the page sends, with its Idempotency-Key, in order. */
function recordGenerates(page) {
  const seen = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/generate') {
      seen.push({ key: r.headers()['idempotency-key'], body: r.postData(), at: Date.now() });
    }
  });
  return seen;
}

test('recent tasks come from the server: a fresh browser profile lists them, and clicking one shows it', { timeout: 120_000 }, async () => {
  await simConfig(SIM, { reset: true, step_ms: 200 });
  const prompt = 'History check: the teapot on slate, window light ' + Date.now();
  let taskId;
  {
    const { page, unexpected } = await newPage(browser);
    await page.goto(BASE + '/');
    await page.waitForSelector('#server-state.ok');
    await uploadPhoto(page, 'teapot.png');
    await page.fill('#prompt', prompt);
    const resp = page.waitForResponse((r) => new URL(r.url()).pathname === '/generate');
    await page.click('#generate:enabled');
    taskId = (await (await resp).json()).data.taskId;
    await waitForResultImage(page);
    assert.deepEqual(unexpected(), []);
    await page.close();
  }
  // the server's own record, for comparison
  const rec = (await getJson(BASE + '/tasks/' + encodeURIComponent(taskId))).body;
  assert.equal(rec.id, taskId);
  assert.equal(rec.prompt, prompt);

  // another browser: a new profile (empty localStorage), so whatever it lists came from GET /tasks
  const other = await launch();
  try {
    const { page, unexpected } = await newPage(other);
    const lists = [];
    page.on('request', (r) => { if (new URL(r.url()).pathname === '/tasks') lists.push(r.url()); });
    await page.goto(BASE + '/');
    const item = page.locator(`#recent li[data-task="${taskId}"]`);
    await item.waitFor();
    assert.ok(lists.length >= 1, 'GET /tasks was asked');
    assert.equal(await page.getAttribute('#recent-source', 'data-source'), 'server');
    assert.equal(await item.locator('.badge').textContent(), 'Done');
    assert.equal(await item.locator('.recent-prompt').getAttribute('title'), prompt);
    const meta = await item.locator('.recent-meta').textContent();
    assert.match(meta, /^(just now|\d+ min ago)/, 'age: ' + meta);
    if (Number.isFinite(rec.credits)) assert.match(meta, new RegExp(`· ${rec.credits} credits?$`), 'credits: ' + meta);
    // thumbnails: the result (our stable copy or KIE's URL) and the input photo (thumbnail_url), both decoded
    const thumbs = await item.locator('img[data-thumb]').evaluateAll((imgs) => imgs.map((i) => [i.dataset.thumb, i.src]));
    const want = [['result', new URL(rec.stable_url || rec.result_urls[0], BASE).href]];
    want.push(['input', new URL(rec.thumbnail_url || rec.input_urls[0], BASE).href]);
    assert.deepEqual(thumbs, want);
    await page.waitForFunction((id) => [...document.querySelectorAll(`#recent li[data-task="${id}"] img`)]
      .every((i) => i.complete && i.naturalWidth > 0), taskId);
    // clicking it shows it like a task of this browser: state, prompt, result image, download link
    await item.locator('button').click();
    assert.equal(await page.getAttribute(`#recent li[data-task="${taskId}"] button`, 'aria-current'), 'true');
    const img = await waitForResultImage(page);
    assert.ok(img.w > 0);
    assert.equal(await page.textContent('#task-state'), 'Done');
    assert.equal(await page.textContent('#task-prompt'), prompt);
    assert.match(await page.textContent('#task-info'), new RegExp(taskId));
    // named after the photo in that browser too: the page sent photo_name, the record keeps it
    assert.equal(rec.photo_name, 'teapot.png');
    assert.equal(await page.locator('#result-actions a', { hasText: 'Download result' }).getAttribute('href'),
      `/results/${taskId}?download=1&name=teapot.png`);
    // the server's list was kept as this browser's copy (the fallback below)
    const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('ppa.tasks.v1') || '[]'));
    assert.ok(stored.some((t) => t.id === taskId), 'the list is cached in localStorage');
    assert.deepEqual(unexpected(), []);
    await page.close();
  } finally {
    await other.close();
  }
});

test('localStorage is only the fallback: used when GET /tasks fails, ignored when it answers', { timeout: 90_000 }, async () => {
  const ghost = {
    id: 'task_local_only_1', input: '', photo: 'ghost.png', prompt: 'A task only this browser remembers',
    aspect: '1:1', resolution: '1K', state: 'success', created: Date.now() - 60_000, updated: Date.now() - 50_000,
    results: [], failMsg: '', note: '',
  };
  const fresh = await launch();
  try {
    await fresh.context.addInitScript((t) => {
      if (!sessionStorage.getItem('seeded')) {
        localStorage.setItem('ppa.tasks.v1', JSON.stringify([t]));
        sessionStorage.setItem('seeded', '1');
      }
    }, ghost);
    const { page, unexpected } = await newPage(fresh);
    // an older server (or a failing one): /tasks is 404
    let failTasks = true;
    await page.route((u) => u.pathname === '/tasks', (route) => (failTasks
      ? route.fulfill({ status: 404, contentType: 'application/json',
        body: JSON.stringify({ error: { code: 'not_found', message: 'No such path.', request_id: 'x' } }) })
      : route.continue()));
    await page.goto(BASE + '/');
    await page.waitForSelector(`#recent li[data-task="${ghost.id}"]`);
    await page.waitForSelector('#recent-source[data-source="local"]');
    assert.match(await page.textContent('#recent-source'), /this browser only/);
    // the server answers again: its list replaces the local one
    failTasks = false;
    await page.reload();
    await page.waitForSelector('#recent-source[data-source="server"]');
    await page.waitForSelector('#recent li');
    assert.equal(await page.locator(`#recent li[data-task="${ghost.id}"]`).count(), 0,
      'a task the server does not list is not shown');
    const ids = await page.locator('#recent li').evaluateAll((lis) => lis.map((li) => li.dataset.task));
    const server = (await getJson(BASE + '/tasks?limit=20')).body.tasks.map((t) => t.id);
    assert.deepEqual(ids, server.slice(0, ids.length), 'the server\'s order, newest first');
    // "Clear list" still works with a server list: hidden in this browser, also after a reload
    await page.click('#clear-history');
    assert.equal(await page.locator('#recent li').count(), 0);
    await page.reload();
    await page.waitForSelector('#recent-source[data-source="server"]');
    assert.equal(await page.locator('#recent li').count(), 0, 'cleared tasks stay hidden after a reload');
    assert.equal(await page.locator('#recent-empty').isVisible(), true);
    assert.deepEqual(unexpected([/status of 404/]), []);
    await page.close();
  } finally {
    await fresh.close();
  }
});

test('one Idempotency-Key per click: a retry after a lost answer reuses it (one KIE task), the next click gets a new one', { timeout: 120_000 }, async () => {
  await simConfig(SIM, { reset: true, step_ms: 200 });
  const { page, unexpected } = await newPage(browser);
  const seen = recordGenerates(page);
  const answers = [];
  page.on('response', (r) => {
    if (new URL(r.url()).pathname === '/generate') answers.push({ status: r.status(), replayed: r.headers()['idempotent-replayed'] });
  });
  await page.goto(BASE + '/');
  await page.waitForSelector('#server-state.ok');
  await uploadPhoto(page, 'kettle.png');
  await simClearRequests(SIM);

  // click 1: the request reaches the server (which creates the KIE task), but the answer is lost on the way back
  let lost = 0;
  await page.route((u) => u.pathname === '/generate', async (route) => {
    if (lost === 0) {
      lost++;
      const r = await route.fetch();          // the real server answers...
      assert.equal(r.status(), 200);
      await route.abort('connectionreset');   // ...the page sees a dropped connection
      return;
    }
    await route.continue();
  });
  const replay = page.waitForResponse((r) => new URL(r.url()).pathname === '/generate');
  await page.click('#generate:enabled');
  const first = (await (await replay).json()).data.taskId;
  await waitDone(page, first);
  assert.equal(seen.length, 2, 'the page sent the click\'s request again: ' + JSON.stringify(seen));
  assert.match(seen[0].key, UUID);
  assert.equal(seen[1].key, seen[0].key, 'the retry carries the same Idempotency-Key');
  assert.equal(seen[1].body, seen[0].body, 'and the same body');
  assert.deepEqual(answers, [{ status: 200, replayed: 'true' }], 'the server replayed its first answer');
  assert.equal((await creates()).length, 1, 'one KIE task for the click');
  assert.match(await page.textContent('#gen-note'), /already received this request/);
  await page.unrouteAll();

  // click 2 (after the first task finished): the server is "still creating" the first attempt: 409 with Retry-After
  let busy = 0;
  await page.route((u) => u.pathname === '/generate', (route) => (busy++ === 0
    ? route.fulfill({ status: 409, headers: { 'Retry-After': '1' }, contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'request_in_progress', message: 'The same request is being created.', request_id: 'r' } }) })
    : route.continue()));
  const second = page.waitForResponse((r) => new URL(r.url()).pathname === '/generate' && r.status() === 200);
  await page.click('#generate:enabled');
  const next = (await (await second).json()).data.taskId;
  assert.notEqual(next, first);
  assert.equal(seen.length, 4, JSON.stringify(seen));
  assert.match(seen[2].key, UUID);
  assert.notEqual(seen[2].key, seen[0].key, 'a new click, a new key');
  assert.equal(seen[3].key, seen[2].key, 'the 409 retry carries the click\'s key');
  assert.ok(seen[3].at - seen[2].at >= 900, 'Retry-After: 1 was waited for: ' + (seen[3].at - seen[2].at) + ' ms');
  assert.equal((await creates()).length, 2, 'one more KIE task');
  await waitDone(page, next);

  // click 3, with nothing in the way: one request, another new key
  await page.unrouteAll();
  const third = page.waitForResponse((r) => new URL(r.url()).pathname === '/generate');
  await page.click('#generate:enabled');
  assert.equal((await third).status(), 200);
  assert.equal(seen.length, 5);
  assert.ok(![seen[0].key, seen[2].key].includes(seen[4].key), 'every click its own key');
  assert.deepEqual(unexpected([/status of 409/, /ERR_CONNECTION_RESET/]), []);
  await page.close();
});

test('a server without a task store (TASK_STORE=off): Generate still works, the list is this browser\'s', { timeout: 90_000 }, async () => {
  const NOSTORE = env('E2E_NOSTORE_BASE');
  await simConfig(SIM, { reset: true, step_ms: 200 });
  const { page, unexpected } = await newPage(browser);
  const seen = recordGenerates(page);
  await page.goto(NOSTORE + '/');
  await page.waitForSelector('#recent-source[data-source="local"]');
  await uploadPhoto(page, 'lamp.png');
  const ok = page.waitForResponse((r) => new URL(r.url()).pathname === '/generate' && r.status() === 200);
  await page.click('#generate:enabled');
  const id = (await (await ok).json()).data.taskId;
  await waitDone(page, id);
  // the key is refused there (503 task_store_off), so the click is sent once more without it
  assert.equal(seen.length, 2, JSON.stringify(seen));
  assert.match(seen[0].key, UUID);
  assert.equal(seen[1].key, undefined);
  assert.equal(seen[1].body, seen[0].body);
  assert.equal(await page.locator(`#recent li[data-task="${id}"]`).count(), 1);
  assert.equal(await page.locator('#gen-error').isHidden(), true);
  assert.deepEqual(unexpected([/status of 503/]), []);
  await page.close();
});
