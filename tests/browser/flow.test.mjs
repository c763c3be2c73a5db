// Full flow against product-photo-api + kie-sim, with PUBLIC_BASE_URL set (run.sh starts both).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  env, launch, newPage, makePng, makeJpeg, simConfig, getJson, waitForResultImage, recordProgress, OUT_DIR,
  throttleUploads, assertProgressCompleted, pickOversizedFile,
} from './helpers.mjs';

const BASE = env('E2E_FLOW_BASE');
const SIM = env('E2E_SIM_BASE');
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const FAILED_RESOURCE = (code) => new RegExp(`Failed to load resource: the server responded with a status of ${code}`);

async function uploadViaInput(page, file) {
  await page.setInputFiles('#file', file);
  await page.waitForSelector('#upload-box.done, #upload-box.failed');
}

test('upload with progress, generate, poll, result image, download link, history', { timeout: 120_000 }, async () => {
  await simConfig(SIM, { reset: true, step_ms: 300 });
  const { page, unexpected } = await newPage(browser);
  await page.goto(BASE + '/');
  console.log('# ' + await page.evaluate(() => navigator.userAgent));
  await page.waitForSelector('#server-state.ok');
  // PUBLIC_BASE_URL is a 127.0.0.1 URL here: the server may still call it not public (KIE could not reach it);
  // the page must then name the configured URL rather than say it is unset.
  const cfg = (await getJson(BASE + '/config')).body;
  assert.equal(cfg.public_base_url, BASE);
  if (cfg.public_url_ok) assert.equal(await page.locator('.notice.warn').count(), 0, 'no warning when the URL is public');
  else assert.ok((await page.locator('.notice.warn').innerText()).includes('PUBLIC_BASE_URL is ' + BASE));
  // the simulator is KIE here (make sim): the page says results are simulated, and how photos reach KIE
  assert.equal(cfg.kie_simulated, true);
  assert.match(await page.locator('.notice').filter({ hasText: 'Results are simulated' }).innerText(), /SIMULATED/);
  assert.match(await page.textContent('#server-state'), /KIE fetches photos from this server/);

  // throttle the upload so the progress bar moves through intermediate values
  const unthrottle = await throttleUploads(browser.context, page, 512 * 1024);
  await recordProgress(page);
  const png = makePng(420, 300, { noise: true });           // ~380 KB, incompressible
  const uploadResp = page.waitForResponse((r) => r.url().endsWith('/upload') && r.request().method() === 'POST');
  await uploadViaInput(page, { name: 'product.png', mimeType: 'image/png', buffer: png });
  const up = await (await uploadResp).json();
  await unthrottle();
  assert.equal((await uploadResp).status(), 200);
  assert.match(up.url, /\/files\//);
  // the server stores its own re-encoded copy (an opaque PNG becomes a JPEG) and reports both
  assert.deepEqual(up.original, { content_type: 'image/png', width: 420, height: 300, size: png.length });
  assert.deepEqual([up.content_type, up.width, up.height], ['image/jpeg', 420, 300]);
  assert.equal(await page.locator('#upload-box').getAttribute('class'), 'upload done');
  await assertProgressCompleted(page);
  assert.match(await page.textContent('#upload-status'), /420×300 PNG → 420×300 JPEG/);
  // the preview is that stored copy
  await page.waitForFunction((u) => document.querySelector('#preview').src === u, new URL(up.url, BASE).href);
  assert.equal(await page.locator('#preview').evaluate((i) => i.complete && i.naturalWidth), 420);

  // the stored copy is served back as announced
  const served = await fetch(new URL(up.url, BASE));
  assert.equal(served.status, 200);
  assert.equal(served.headers.get('content-type'), 'image/jpeg');
  assert.equal((await served.arrayBuffer()).byteLength, up.size, 'GET ' + up.url + ' returns the stored image');

  await page.selectOption('#aspect', '4:3');
  await page.selectOption('#resolution', '2K');
  const genReq = page.waitForRequest((r) => r.url().endsWith('/generate'));
  await page.click('#generate:enabled');
  const sent = JSON.parse((await genReq).postData());
  assert.equal(sent.input_url, up.public_url || up.url);
  assert.equal(sent.input_url, BASE + '/files/' + up.filename, 'public URL built from PUBLIC_BASE_URL');
  assert.equal(sent.aspect_ratio, '4:3');
  assert.equal(sent.resolution, '2K');
  assert.ok(sent.prompt.length >= 3 && /studio/i.test(sent.prompt), 'default prompt sent');

  const t0 = Date.now();
  const img = await waitForResultImage(page);
  console.log(`# result ${img.w}x${img.h} after ${Date.now() - t0} ms: ${img.src}`);
  assert.ok(img.w > 0 && img.h > 0);
  assert.equal(await page.textContent('#task-state'), 'Done');
  assert.match(await page.textContent('#task-elapsed'), /^took \d+:\d\d$/);
  // "Download result" downloads our stable copy, named after the photo, from this origin
  const dl = page.locator('#result-actions a', { hasText: 'Download result' }).first();
  const taskId = img.src.match(/(task_[^/.]+)/)[1];
  assert.equal(await dl.getAttribute('href'), `/results/${taskId}?download=1&name=product.png`);
  const [download] = await Promise.all([page.waitForEvent('download'), dl.click()]);
  assert.equal(download.suggestedFilename(), 'product-studio.png');
  const got = fs.readFileSync(await download.path());
  const kie = Buffer.from(await (await fetch(img.src)).arrayBuffer());
  assert.ok(got.length > 1000 && got.equals(kie), 'the download is the result, byte for byte');
  // before/after view shows the uploaded photo
  assert.equal(await page.locator('#before-img').evaluate((i) => i.complete && i.naturalWidth), 420);
  await page.click('#view-side');
  assert.equal(await page.locator('#side').isVisible(), true);
  assert.equal(await page.locator('#side-after').evaluate((i) => i.naturalWidth > 0), true);
  await page.click('#view-slider');
  await page.locator('#cmp-range').fill('30');
  assert.equal(await page.locator('#compare').evaluate((c) => c.style.getPropertyValue('--pos')), '30%');

  const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('ppa.tasks.v1')));
  assert.equal(stored[0].state, 'success');
  assert.equal(stored[0].input, up.url);
  assert.equal(stored[0].prompt, sent.prompt);
  assert.equal(await page.locator('#recent li').count() >= 1, true);

  await page.screenshot({ path: path.join(OUT_DIR, 'browser-result.png'), fullPage: true });
  // phone width: no horizontal scrolling, result still visible
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'no horizontal overflow on a phone');
  assert.equal(await page.locator('#result-img').isVisible(), true);
  await page.screenshot({ path: path.join(OUT_DIR, 'browser-result-phone.png'), fullPage: true });

  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('a text file named .png gets the server\'s 415 message', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await newPage(browser);
  await page.goto(BASE + '/');
  await page.waitForSelector('#server-state.ok');
  const resp = page.waitForResponse((r) => r.url().endsWith('/upload'));
  await uploadViaInput(page, { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('just some text, not an image\n'.repeat(20)) });
  const r = await resp;
  assert.equal(r.status(), 415);
  const body = await r.json();
  assert.ok(body.error && body.error.message, 'error body has a message');
  const shown = await page.locator('#upload-error').innerText();
  assert.ok(shown.includes(body.error.message), `shown "${shown}" includes server message "${body.error.message}"`);
  assert.match(shown, /accepts JPEG, PNG, WEBP, HEIC, AVIF or TIFF/);
  assert.equal(await page.locator('#preview').isHidden(), true, 'no broken preview after a refused file');
  assert.equal(await page.locator('#generate').isDisabled(), true);
  assert.deepEqual(unexpected([FAILED_RESOURCE(415)]), []);
  await page.close();
});

test('an oversized file is refused before any upload request', { timeout: 60_000 }, async () => {
  const cfg = await getJson(BASE + '/config');
  const max = cfg.body.max_upload_bytes;
  assert.ok(Number.isInteger(max) && max > 0, 'config has max_upload_bytes');
  const { page, unexpected } = await newPage(browser);
  const uploads = [];
  page.on('request', (r) => { if (r.url().includes('/upload')) uploads.push(r.url()); });
  await page.goto(BASE + '/');
  await page.waitForSelector('#server-state.ok');
  await pickOversizedFile(page, max);
  assert.deepEqual(uploads, [], 'no /upload request was sent');
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('reload mid-task resumes polling and reaches success', { timeout: 150_000 }, async () => {
  await simConfig(SIM, { step_ms: 4000 });
  try {
    const { page, unexpected } = await newPage(browser);
    await page.goto(BASE + '/');
    await page.waitForSelector('#server-state.ok');
    const jpeg = await makeJpeg(page, 320, 240);
    assert.deepEqual([...jpeg.subarray(0, 3)], [0xff, 0xd8, 0xff], 'canvas produced a JPEG');
    await uploadViaInput(page, { name: 'mug.jpg', mimeType: 'image/jpeg', buffer: jpeg });
    assert.equal(await page.locator('#upload-box').getAttribute('class'), 'upload done');
    await page.fill('#prompt', 'Place the mug on a white marble table, soft daylight, e-commerce photo');
    const genResp = page.waitForResponse((r) => r.url().endsWith('/generate'));
    await page.click('#generate:enabled');
    const taskId = (await (await genResp).json()).data.taskId;
    await page.waitForFunction((id) => (JSON.parse(localStorage.getItem('ppa.tasks.v1') || '[]')[0] || {}).id === id, taskId);
    const before = await page.evaluate(() => JSON.parse(localStorage.getItem('ppa.tasks.v1'))[0]);
    assert.equal(before.id, taskId);
    assert.ok(!['success', 'fail'].includes(before.state), 'task still running before reload: ' + before.state);

    const statusCalls = [];
    page.on('request', (r) => { if (r.url().includes('/status?task_id=')) statusCalls.push(r.url()); });
    await page.reload();
    // right after the reload the task is shown from localStorage, not yet finished
    await page.waitForSelector('#task:not([hidden])');
    const shownState = await page.textContent('#task-state');
    console.log('# state right after reload: ' + shownState);
    assert.notEqual(shownState, 'Done');
    assert.ok(await page.locator(`#recent li[data-task="${before.id}"]`).count() === 1);
    const img = await waitForResultImage(page, 120_000);
    assert.ok(img.w > 0);
    assert.ok(statusCalls.length >= 1 && statusCalls.every((u) => u.endsWith(encodeURIComponent(before.id))),
      'polled /status for the task after reload: ' + statusCalls.length);
    const after = await page.evaluate(() => JSON.parse(localStorage.getItem('ppa.tasks.v1'))[0]);
    assert.equal(after.id, before.id);
    assert.equal(after.state, 'success');
    assert.ok(after.results.length >= 1);
    assert.match(await page.textContent('#task-info'), /Place the mug|Task/);

    // a second reload shows the finished task without polling again
    statusCalls.length = 0;
    await page.reload();
    await waitForResultImage(page);
    await page.waitForTimeout(2500);
    assert.equal(statusCalls.length, 0, 'finished tasks are not polled again');
    assert.deepEqual(unexpected(), []);
    await page.close();
  } finally {
    await simConfig(SIM, { reset: true });
  }
});

test('keyboard: the drop zone opens the file picker with Enter and Space; drag and drop works', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await newPage(browser);
  const choosers = [];
  page.on('filechooser', (fc) => choosers.push(fc));   // interception on before anything is pressed
  await page.goto(BASE + '/');
  await page.waitForSelector('#server-state.ok');
  // Tab from the start of the page reaches the drop zone (skip link, then the drop zone)
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'drop');
  for (const key of ['Enter', 'Space']) {
    const n = choosers.length;
    await page.keyboard.press(key);
    for (let i = 0; i < 50 && choosers.length === n; i++) await page.waitForTimeout(100);
    assert.equal(choosers.length, n + 1, key + ' opened the file chooser');
    const fc = choosers[n];
    assert.equal(await fc.element().evaluate((e) => e.id), 'file');
    // settle each chooser before opening the next one: Enter's is cancelled, Space's gets a file
    if (key === 'Space') await fc.setFiles({ name: 'kb.png', mimeType: 'image/png', buffer: makePng(64, 48) });
    else await fc.setFiles([]);
  }
  await page.waitForSelector('#upload-box.done');
  // drag and drop a real File onto the zone
  const dt = await page.evaluateHandle(({ b64 }) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const d = new DataTransfer();
    d.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
    return d;
  }, { b64: makePng(32, 32).toString('base64') });
  const resp = page.waitForResponse((r) => r.url().endsWith('/upload'));
  for (const type of ['dragenter', 'dragover', 'drop']) await page.dispatchEvent('#drop', type, { dataTransfer: dt });
  assert.equal((await resp).status(), 200);
  await page.waitForSelector('#upload-box.done');
  assert.match(await page.textContent('#file-name'), /dropped\.png/);
  // prompt limits are enforced
  await page.fill('#prompt', 'ab');
  assert.equal(await page.locator('#generate').isDisabled(), true);
  assert.equal(await page.getAttribute('#prompt', 'aria-invalid'), 'true');
  await page.fill('#prompt', 'x'.repeat(5000));
  assert.equal(await page.locator('#generate').isDisabled(), false);
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('a task that fails at KIE shows KIE\'s failMsg', { timeout: 60_000 }, async () => {
  const failMsg = 'Simulated: the image violates the content policy';
  await simConfig(SIM, { reset: true, step_ms: 200, outcome: 'fail', fail_code: '501', fail_msg: failMsg });
  try {
    const { page, unexpected } = await newPage(browser);
    await page.goto(BASE + '/');
    await page.waitForSelector('#server-state.ok');
    await uploadViaInput(page, { name: 'f.png', mimeType: 'image/png', buffer: makePng(80, 60) });
    const genResp = page.waitForResponse((r) => r.url().endsWith('/generate'));
    await page.click('#generate:enabled');
    const taskId = (await (await genResp).json()).data.taskId;
    await page.waitForSelector('#task-state.s-fail', { timeout: 30_000 });
    const shown = await page.locator('#task-error').innerText();
    assert.ok(shown.includes(failMsg), `"${shown}" includes the failMsg`);
    assert.match(shown, /501/);
    assert.equal(await page.locator('#result').isHidden(), true);
    // one word for the state everywhere: badge, last progress step, recent list
    assert.equal(await page.textContent('#task-state'), 'Failed');
    assert.equal(await page.textContent('#task-steps li:last-child'), 'Failed');
    assert.equal(await page.locator(`#recent li[data-task="${taskId}"] .badge`).textContent(), 'Failed');
    const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('ppa.tasks.v1'))[0]);
    assert.deepEqual([stored.id, stored.state, stored.failMsg], [taskId, 'fail', failMsg]);
    assert.deepEqual(unexpected(), []);
    await page.close();
  } finally {
    await simConfig(SIM, { reset: true });
  }
});

test('KIE refusing the task (402 insufficient credits) is explained', { timeout: 60_000 }, async () => {
  await simConfig(SIM, { reset: true, create_mode: 'code402', create_mode_times: 1 });
  try {
    const { page, unexpected } = await newPage(browser);
    await page.goto(BASE + '/');
    await page.waitForSelector('#server-state.ok');
    await uploadViaInput(page, { name: 'c.png', mimeType: 'image/png', buffer: makePng(80, 60) });
    const genResp = page.waitForResponse((r) => r.url().endsWith('/generate'));
    await page.click('#generate:enabled');
    const r = await genResp;
    const body = await r.json().catch(() => null);
    console.log(`# /generate with KIE code 402 -> HTTP ${r.status()} ${JSON.stringify(body)}`);
    assert.notEqual(r.status(), 200, 'a KIE refusal is not reported as success');
    await page.waitForSelector('#gen-error:not([hidden])');
    const shown = await page.locator('#gen-error').innerText();
    assert.match(shown, /credits/i);
    if (body && body.error) assert.ok(shown.includes(body.error.message));
    assert.equal(await page.locator('#generate').isDisabled(), false, 'can try again');
    assert.deepEqual(unexpected([/status of 402/]), []);
    await page.close();
  } finally {
    await simConfig(SIM, { reset: true });
  }
});
