// First-run fixes against the flow server + kie-sim: one paid task per click burst, "New generation" while a
// task runs, aspect ratio "auto" by default, the before/after views of differently shaped images, touch-screen
// wording, and recent tasks that tell their tasks apart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  env, launch, newPage, makePng, simConfig, simRequests, simClearRequests, waitForResultImage, OUT_DIR,
} from './helpers.mjs';

const BASE = env('E2E_FLOW_BASE');
const SIM = env('E2E_SIM_BASE');
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** The page with no tasks left over from an earlier test (they share one profile): the stored tasks are
 * cleared before the page's script first runs in this tab (not on reloads). */
async function openPage() {
  const p = await newPage(browser);
  await p.page.addInitScript(() => {
    if (!sessionStorage.getItem('e2e.cleared')) { localStorage.clear(); sessionStorage.setItem('e2e.cleared', '1'); }
  });
  await p.page.goto(BASE + '/');
  await p.page.waitForSelector('#server-state.ok');
  return p;
}
async function upload(page, w = 120, h = 90) {
  await page.setInputFiles('#file', { name: 'p.png', mimeType: 'image/png', buffer: makePng(w, h) });
  await page.waitForSelector('#upload-box.done');
}
const createTasks = async () => (await simRequests(SIM)).filter((q) => q.method === 'POST' && q.path === '/api/v1/jobs/createTask');
const buttonText = (page) => page.locator('#generate').innerText();
/** The rectangle of an element, rounded to whole pixels. */
const rect = (page, sel) => page.locator(sel).evaluate((e) => {
  const r = e.getBoundingClientRect();
  return { x: Math.round(r.x), y: Math.round(r.y), w: Math.round(r.width), h: Math.round(r.height) };
});

test('a double click starts one task; while it runs the button offers "New generation"', { timeout: 90_000 }, async () => {
  await simConfig(SIM, { reset: true, latency_ms: 800, step_ms: 2000 });
  try {
    const { page, unexpected } = await openPage();
    await upload(page);
    await simClearRequests(SIM);
    const gens = [];
    page.on('request', (r) => { if (r.url() === BASE + '/generate') gens.push(r); });
    const first = page.waitForResponse((r) => r.url() === BASE + '/generate');
    await page.dblclick('#generate');
    // from the click until the task id arrives (the simulator takes 800 ms): off, saying so
    assert.equal(await page.locator('#generate').isDisabled(), true);
    assert.equal(await buttonText(page), 'Starting…');
    assert.equal((await first).status(), 200);
    await page.waitForFunction(() => document.querySelector('#generate').textContent === 'New generation');
    assert.equal(await page.locator('#generate').isDisabled(), false);
    assert.match(await page.textContent('#gen-note'), /still running/);
    // an impatient third click only turns the offer into the real button
    await page.click('#generate');
    assert.equal(await buttonText(page), 'Generate studio shot');
    assert.match(await page.textContent('#gen-note'), /another one, charged separately/);
    await page.waitForTimeout(1200);
    assert.equal(gens.length, 1, 'one POST /generate');
    assert.equal((await createTasks()).length, 1, 'the simulator saw exactly one createTask');
    // the next click really starts a second task
    const second = page.waitForResponse((r) => r.url() === BASE + '/generate');
    await page.click('#generate');
    assert.equal((await second).status(), 200);
    await page.waitForTimeout(1000);
    assert.equal((await createTasks()).length, 2);
    assert.equal(await buttonText(page), 'New generation');
    assert.deepEqual(unexpected(), []);
    await page.close();
  } finally {
    await simConfig(SIM, { reset: true });
  }
});

test('the aspect ratio defaults to "auto", the API\'s default', { timeout: 60_000 }, async () => {
  await simConfig(SIM, { reset: true, step_ms: 100 });
  const { page, unexpected } = await openPage();
  assert.equal(await page.inputValue('#aspect'), 'auto');
  await upload(page);
  const gen = page.waitForRequest((r) => r.url() === BASE + '/generate');
  await page.click('#generate:enabled');
  assert.equal(JSON.parse((await gen).postData()).aspect_ratio, 'auto');
  await waitForResultImage(page);
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('before/after of differently shaped images: one frame, both fitted, nothing showing through', { timeout: 60_000 }, async () => {
  await simConfig(SIM, { reset: true, step_ms: 100 });
  const { page, unexpected } = await openPage();
  await upload(page, 300, 420);   // portrait photo ...
  await page.selectOption('#aspect', '16:9');   // ... wide result
  await page.click('#generate:enabled');
  const res = await waitForResultImage(page);
  assert.ok(Math.abs(res.w / res.h - 16 / 9) < 0.02, 'the simulator made a 16:9 result: ' + res.w + 'x' + res.h);
  await page.waitForFunction(() => { const i = document.querySelector('#before-img'); return i.complete && i.naturalWidth > 0; });

  // slider: the frame has the result's shape; both images fill it and are fitted (contain) inside it
  const frame = await rect(page, '#compare');
  assert.ok(Math.abs(frame.w / frame.h - res.w / res.h) < 0.02, 'frame has the result\'s aspect ratio');
  assert.deepEqual(await rect(page, '#result-img'), frame);
  assert.deepEqual(await rect(page, '#before-img'), frame);
  for (const id of ['#result-img', '#before-img']) {
    assert.equal(await page.locator(id).evaluate((i) => getComputedStyle(i).objectFit), 'contain', id);
  }
  // the before layer is opaque: beside the narrow before image, the after image must not show through
  const bg = await page.locator('#cmp-before').evaluate((e) => getComputedStyle(e).backgroundImage);
  assert.notEqual(bg, 'none', 'the before layer has its own background');
  await page.locator('#compare').screenshot({ path: path.join(OUT_DIR, 'browser-compare.png') });

  // side by side: two frames of the same shape, no empty block under either image
  await page.click('#view-side');
  const [fb, fa] = [await rect(page, '#side figure:first-child .frame'), await rect(page, '#side figure:last-child .frame')];
  assert.deepEqual([fb.w, fb.h, fb.y], [fa.w, fa.h, fa.y], 'both frames alike');
  assert.ok(Math.abs(fa.w / fa.h - res.w / res.h) < 0.02, 'side frames have the result\'s aspect ratio');
  for (const fig of ['#side figure:first-child', '#side figure:last-child']) {
    const slack = await page.locator(fig).evaluate((f) => {
      const pad = parseFloat(getComputedStyle(f).paddingTop) + parseFloat(getComputedStyle(f).paddingBottom);
      return f.clientHeight - pad - f.querySelector('.frame').offsetHeight - f.querySelector('figcaption').offsetHeight;
    });
    assert.ok(slack <= 2, `${fig}: ${slack} px of empty space`);
  }
  assert.deepEqual(await rect(page, '#side-before'), fb);
  assert.deepEqual(await rect(page, '#side-after'), fa);
  await page.locator('#result').screenshot({ path: path.join(OUT_DIR, 'browser-side.png') });
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('touch screens are asked to choose a photo, not to drop one', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  const visible = () => page.locator('#drop').innerText();
  assert.match(await visible(), /Drop an image here/);
  const cdp = await browser.context.newCDPSession(page);
  await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 5 });
  await page.reload();
  await page.waitForSelector('#server-state.ok');
  assert.equal(await page.evaluate(() => matchMedia('(pointer: coarse)').matches), true);
  const text = await visible();
  assert.match(text, /Choose a photo/);
  assert.doesNotMatch(text, /drop|Enter or Space/i);
  await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: false });
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('recent tasks show each task\'s own result and what its prompt says', { timeout: 90_000 }, async () => {
  await simConfig(SIM, { reset: true, step_ms: 100 });
  const { page, unexpected } = await openPage();
  await upload(page);
  const ids = [];
  const defaultPrompt = await page.inputValue('#prompt');
  for (const prompt of [defaultPrompt, defaultPrompt + ' On a white marble table.']) {
    await page.fill('#prompt', prompt);
    const gen = page.waitForResponse((r) => r.url() === BASE + '/generate');
    await page.click('#generate:enabled');
    const id = (await (await gen).json()).data.taskId;
    ids.push(id);
    await page.waitForSelector(`#recent li[data-task="${id}"] .badge.s-success`, { timeout: 30_000 });
  }
  const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('ppa.tasks.v1')));
  const labels = [];
  for (const id of ids) {
    const t = stored.find((x) => x.id === id);
    const item = page.locator(`#recent li[data-task="${id}"]`);
    // the first thumbnail is this task's result (both tasks share the input photo)
    assert.equal(await item.locator('.thumbs img').first().getAttribute('src'), t.results[0]);
    const label = item.locator('.recent-prompt');
    labels.push(await label.innerText());
    assert.equal(await label.getAttribute('title'), t.prompt, 'the full prompt on hover');
    assert.ok(await label.evaluate((e) => e.scrollHeight <= e.clientHeight), 'label not cut off: ' + labels.at(-1));
    assert.equal(await item.locator('.badge').innerText(), 'Done');
  }
  assert.deepEqual(labels, ['Default prompt', 'Default prompt + “On a white marble table.”']);
  // on a phone only one thumbnail fits: it is the result
  await page.setViewportSize({ width: 390, height: 844 });
  for (const id of ids) {
    const shown = await page.locator(`#recent li[data-task="${id}"] .thumbs img`).evaluateAll(
      (imgs) => imgs.filter((i) => i.offsetWidth > 0).map((i) => i.dataset.thumb));
    assert.deepEqual(shown, ['result']);
    const label = page.locator(`#recent li[data-task="${id}"] .recent-prompt`);
    assert.ok(await label.evaluate((e) => e.scrollHeight <= e.clientHeight), 'label not cut off on a phone');
  }
  await page.locator('#recent').screenshot({ path: path.join(OUT_DIR, 'browser-recent-phone.png') });
  assert.deepEqual(unexpected(), []);
  await page.close();
});
