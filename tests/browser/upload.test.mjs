// Real phone photos against the flow server (local storage): HEIC and the other accepted types, the limit
// from /config, the server-made preview and sizes, and the page's words for 413/415/422/503.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { env, launch, newPage, makePng, makeJpeg, makeHeic, makeTiff, getJson, OUT_DIR } from './helpers.mjs';

const BASE = env('E2E_FLOW_BASE');
let browser;
let heic;   // 2400x1800, made once (heif-enc takes a couple of seconds)
before(async () => { browser = await launch(); heic = makeHeic(2400, 1800); });
after(async () => { await browser?.close(); });

const FAILED_RESOURCE = (code) => new RegExp(`Failed to load resource: the server responded with a status of ${code}`);

async function openPage() {
  const p = await newPage(browser);
  await p.page.goto(BASE + '/');
  await p.page.waitForSelector('#server-state.ok');
  return p;
}
/** Picks a file and waits for the answer to its POST /upload (a "done" box may still be the previous file's). */
async function pick(page, file) {
  const answered = page.waitForResponse((r) => r.url() === BASE + '/upload');
  await page.setInputFiles('#file', file);
  await answered;
  await page.waitForSelector('#upload-box.done, #upload-box.failed');
}
/** Waits until the drop zone shows the server's copy; returns its src and natural size. */
async function storedPreview(page) {
  await page.waitForFunction(() => {
    const i = document.querySelector('#preview');
    return !i.hidden && /\/files\//.test(i.src) && i.complete && i.naturalWidth > 0;
  });
  return page.locator('#preview').evaluate((i) => ({ src: i.src, w: i.naturalWidth, h: i.naturalHeight }));
}

test('the picker accepts the phone formats and the hint states the real limit from /config', { timeout: 60_000 }, async () => {
  const cfg = (await getJson(BASE + '/config')).body;
  assert.ok(cfg.max_upload_bytes > 10 * 1024 * 1024, 'the server allows more than the old 10 MB: ' + cfg.max_upload_bytes);
  const { page, unexpected } = await openPage();
  const accept = (await page.getAttribute('#file', 'accept')).split(',');
  for (const t of [...cfg.accepted_types, 'image/heif', '.heic', '.heif', '.avif', '.tif', '.tiff', '.jpg', '.png', '.webp']) {
    assert.ok(accept.includes(t), `accept= lists ${t}: ${accept.join(',')}`);
  }
  const hint = await page.textContent('#file-hint');
  const mib = cfg.max_upload_bytes / 1048576;
  assert.ok(hint.includes(`up to ${mib} MiB`), `hint "${hint}" states ${mib} MiB`);
  assert.match(hint, /HEIC/);
  assert.match(hint, /TIFF/);
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('a HEIC without a browser type: the preview is the server\'s JPEG, with both sizes shown', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  const resp = page.waitForResponse((r) => r.url() === BASE + '/upload');
  await pick(page, { name: 'IMG_0042.HEIC', mimeType: '', buffer: heic });
  const r = await resp;
  assert.equal(r.status(), 200);
  const up = await r.json();
  assert.deepEqual(up.original, { content_type: 'image/heic', width: 2400, height: 1800, size: heic.length });
  assert.deepEqual([up.content_type, up.width, up.height], ['image/jpeg', 2048, 1536]);
  // Chromium cannot show HEIC itself: the preview must be the stored JPEG, not an object URL of the file
  const pv = await storedPreview(page);
  assert.equal(pv.src, new URL(up.url, BASE).href);
  assert.deepEqual([pv.w, pv.h], [2048, 1536]);
  assert.match(await page.textContent('#upload-status'), /2400×1800 HEIC → 2048×1536 JPEG/);
  assert.equal(await page.locator('#generate').isDisabled(), false);
  await page.locator('.grid').screenshot({ path: path.join(OUT_DIR, 'browser-heic.png') });
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('TIFF and a browser-readable JPEG also end with the stored copy as preview', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  await pick(page, { name: 'scan.tiff', mimeType: 'image/tiff', buffer: makeTiff(320, 200) });
  let pv = await storedPreview(page);
  assert.deepEqual([pv.w, pv.h], [320, 200]);
  assert.match(await page.textContent('#upload-status'), /320×200 TIFF → 320×200 JPEG/);
  // a JPEG the browser could show itself: the preview still ends on the server's copy
  await pick(page, { name: 'mug.jpg', mimeType: 'image/jpeg', buffer: await makeJpeg(page, 240, 180) });
  pv = await storedPreview(page);
  assert.match(pv.src, /\/files\/[0-9a-f-]+\.jpg$/);
  assert.deepEqual([pv.w, pv.h], [240, 180]);
  assert.match(await page.textContent('#upload-status'), /240×180 JPEG\. Ready/, 'one size when nothing changed');
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('a PDF gets the server\'s 415 with what to do', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  const resp = page.waitForResponse((r) => r.url() === BASE + '/upload');
  const pdf = Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n');
  await pick(page, { name: 'catalogue.pdf', mimeType: 'application/pdf', buffer: pdf });
  const r = await resp;
  assert.equal(r.status(), 415);
  const body = await r.json();
  assert.equal(body.error.code, 'unsupported_media_type');
  assert.match(body.error.message, /PDF/);
  const shown = await page.locator('#upload-error').innerText();
  assert.ok(shown.includes(body.error.message), `"${shown}" includes "${body.error.message}"`);
  assert.match(shown, /accepts JPEG, PNG, WEBP, HEIC, AVIF or TIFF/);
  assert.equal(await page.locator('#preview').isHidden(), true);
  assert.equal(await page.locator('#generate').isDisabled(), true);
  assert.deepEqual(unexpected([FAILED_RESOURCE(415)]), []);
  await page.close();
});

test('a damaged JPEG gets the server\'s 422 explanation', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  const jpeg = await makeJpeg(page, 400, 300);
  const resp = page.waitForResponse((r) => r.url() === BASE + '/upload');
  await pick(page, { name: 'cut.jpg', mimeType: 'image/jpeg', buffer: jpeg.subarray(0, Math.floor(jpeg.length / 3)) });
  const r = await resp;
  assert.equal(r.status(), 422);
  const body = await r.json();
  assert.equal(body.error.code, 'unreadable_image');
  const shown = await page.locator('#upload-error').innerText();
  assert.match(shown, /could not be read/);
  assert.ok(shown.includes(body.error.message), `"${shown}" includes "${body.error.message}"`);
  assert.deepEqual(unexpected([FAILED_RESOURCE(422)]), []);
  await page.close();
});

// The server answers 503 server_busy (with Retry-After) when every image worker is taken; a real one is hard
// to time, so the first answers are replaced by the server's exact 503 body.
function busyRoute(page, times) {
  let n = 0;
  const seen = [];
  return page.route(BASE + '/upload', async (route) => {
    seen.push(Date.now());
    if (n++ >= times) return route.continue();
    return route.fulfill({
      status: 503, headers: { 'Retry-After': '1', 'Cache-Control': 'no-store' }, contentType: 'application/json',
      body: JSON.stringify({ error: {
        code: 'server_busy', message: 'The server is busy processing other images; try again in 1 s.',
        request_id: 'test-busy', retry_after: 1 } }),
    });
  }).then(() => seen);
}

test('503 server_busy: the page waits Retry-After and retries once by itself', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  const seen = await busyRoute(page, 1);
  await page.setInputFiles('#file', { name: 'p.png', mimeType: 'image/png', buffer: makePng(120, 90) });
  await page.waitForFunction(() => /busy.*trying again in 1 s/.test(document.querySelector('#upload-status').textContent));
  await page.waitForSelector('#upload-box.done');
  assert.equal(seen.length, 2, 'one retry');
  assert.ok(seen[1] - seen[0] >= 900, 'waited about Retry-After: ' + (seen[1] - seen[0]) + ' ms');
  assert.equal(await page.locator('#upload-error').isHidden(), true);
  await storedPreview(page);
  assert.deepEqual(unexpected([FAILED_RESOURCE(503)]), []);
  await page.close();
});

test('503 server_busy twice: the page stops and says when to try again', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  const seen = await busyRoute(page, 2);
  await pick(page, { name: 'p.png', mimeType: 'image/png', buffer: makePng(120, 90) });
  await page.waitForSelector('#upload-box.failed');
  const shown = await page.locator('#upload-error').innerText();
  assert.match(shown, /busy.*Try again in 1 s/);
  await page.waitForTimeout(1500);
  assert.equal(seen.length, 2, 'retried once only');
  assert.deepEqual(unexpected([FAILED_RESOURCE(503)]), []);
  await page.close();
});

test('413 from the server is explained with the limit (too many pixels)', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  await page.route(BASE + '/upload', (route) => route.fulfill({
    status: 413, contentType: 'application/json',
    body: JSON.stringify({ error: { code: 'too_many_pixels', message: 'The image has 200000000 pixels; the limit is 100000000.', request_id: 't' } }),
  }));
  await pick(page, { name: 'pano.png', mimeType: 'image/png', buffer: makePng(64, 64) });
  const shown = await page.locator('#upload-error').innerText();
  assert.match(shown, /too many pixels for the server \(limit 100 megapixels\)/);
  assert.match(shown, /200000000 pixels/);
  assert.deepEqual(unexpected([FAILED_RESOURCE(413)]), []);
  await page.close();
});
