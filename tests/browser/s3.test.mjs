// S3 mode (direct upload): the page asks POST /upload-url, PUTs the raw file to the presigned URL on the bucket
// (s3rver on 127.0.0.1, which checks SigV4), then POSTs /upload-complete, where the server converts the object
// like /upload does; the presigned GET of the stored copy is the preview, before image and input_url.
// run.sh starts s3rver and the server in S3 mode.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  env, launch, newPage, makePng, makeJpeg, makeHeic, makeTiff, simConfig, getJson, waitForResultImage, recordProgress,
  OUT_DIR, throttleUploads, assertProgressCompleted, pickOversizedFile,
} from './helpers.mjs';

const BASE = env('E2E_S3_BASE');
const S3 = env('E2E_S3_ORIGIN');
const BUCKET = env('E2E_S3_BUCKET');
const SIM = env('E2E_SIM_BASE');
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** Records every request the page makes (method, URL, request headers, body for the API calls). */
function recordRequests(page) {
  const seen = [];
  page.on('request', (r) => {
    seen.push({ method: r.method(), url: r.url(), headers: r.headers(), body: r.url().startsWith(BASE) ? r.postData() : null });
  });
  return seen;
}
const isUploadUrl = (q) => q.method === 'POST' && q.url === BASE + '/upload-url';
const isS3Put = (q) => q.method === 'PUT' && q.url.startsWith(`${S3}/${BUCKET}/`);
const isComplete = (q) => q.method === 'POST' && q.url === BASE + '/upload-complete';
const isLocalUpload = (q) => q.url === BASE + '/upload';
const touchesStorage = (q) => q.url.startsWith(S3 + '/');

async function openPage() {
  const p = await newPage(browser);
  await p.page.goto(BASE + '/');
  await p.page.waitForSelector('#server-state.ok');
  return p;
}
async function pick(page, file) {
  await page.setInputFiles('#file', file);
  await page.waitForSelector('#upload-box.done, #upload-box.failed');
}
function s3Xml(text) {
  const tag = (t) => (text.match(new RegExp(`<${t}>([^<]*)</${t}>`)) || [])[1] || '';
  return { code: tag('Code'), message: tag('Message') };
}

test('S3 mode: direct PUT to the bucket with progress, /upload-complete, generate from the presigned URL', { timeout: 120_000 }, async () => {
  await simConfig(SIM, { reset: true, step_ms: 300 });
  const cfg = (await getJson(BASE + '/config')).body;
  assert.equal(cfg.storage, 's3');
  assert.equal(cfg.direct_upload, true);
  const { page, unexpected } = await openPage();
  assert.match(await page.textContent('#server-state'), /S3/);
  const seen = recordRequests(page);

  const unthrottle = await throttleUploads(browser.context, page, 512 * 1024);
  await recordProgress(page);
  const png = makePng(420, 300, { noise: true });           // ~380 KB, incompressible
  const ticketResp = page.waitForResponse((r) => r.url() === BASE + '/upload-url');
  const putResp = page.waitForResponse((r) => r.request().method() === 'PUT' && r.url().startsWith(S3 + '/'));
  const doneResp = page.waitForResponse((r) => r.url() === BASE + '/upload-complete');
  await pick(page, { name: 'product.png', mimeType: 'image/png', buffer: png });
  await unthrottle();
  assert.equal(await page.locator('#upload-box').getAttribute('class'), 'upload done', await page.locator('#upload-error').innerText());

  // 1) the server presigned, 2) the browser PUT the bytes to the bucket, 3) it POSTed /upload-complete,
  // 4) no POST /upload through the API
  assert.equal((await ticketResp).status(), 200);
  const ticket = await (await ticketResp).json();
  console.log('# /upload-url -> ' + JSON.stringify({ ...ticket, upload_url: ticket.upload_url.slice(0, 80) + '…' }));
  assert.equal(ticket.method, 'PUT');
  assert.match(ticket.upload_id, /^[0-9a-f-]{36}$/);
  assert.deepEqual(ticket.complete, { method: 'POST', url: '/upload-complete', body: { upload_id: ticket.upload_id } });
  assert.equal(ticket.url, undefined, 'no file URL before the upload is complete');
  assert.equal((await putResp).status(), 200);
  const asked = seen.filter(isUploadUrl);
  assert.equal(asked.length, 1, 'one POST /upload-url');
  assert.deepEqual(JSON.parse(asked[0].body), { content_type: 'image/png', size: png.length });
  const puts = seen.filter(isS3Put);
  assert.equal(puts.length, 1, 'one PUT to the bucket: ' + JSON.stringify(seen.map((q) => q.method + ' ' + q.url)));
  assert.equal(puts[0].url, ticket.upload_url, 'PUT went to the presigned upload_url');
  assert.equal(puts[0].headers['content-type'], ticket.headers['Content-Type']);
  assert.equal(ticket.headers['Content-Type'], 'image/png');
  const completes = seen.filter(isComplete);
  assert.equal(completes.length, 1, 'one POST /upload-complete');
  assert.deepEqual(JSON.parse(completes[0].body), { upload_id: ticket.upload_id });
  assert.equal(completes[0].headers['content-type'], 'application/json');
  assert.ok(seen.indexOf(asked[0]) < seen.indexOf(puts[0]), '/upload-url came before the PUT');
  assert.ok(seen.indexOf(puts[0]) < seen.indexOf(completes[0]), 'the PUT came before /upload-complete');
  assert.deepEqual(seen.filter(isLocalUpload), [], 'no POST /upload to the API');
  assert.equal((await doneResp).status(), 200);
  const up = await (await doneResp).json();
  assert.deepEqual(up.original, { content_type: 'image/png', width: 420, height: 300, size: png.length });
  assert.deepEqual([up.content_type, up.width, up.height], ['image/jpeg', 420, 300]);

  await assertProgressCompleted(page);
  assert.match(await page.textContent('#upload-status'), /S3 .*420×300 PNG → 420×300 JPEG/);

  // the server's copy is in the bucket, readable through the presigned GET
  assert.ok(up.url.startsWith(`${S3}/${BUCKET}/`), 'presigned GET on the bucket: ' + up.url);
  const stored = await fetch(up.url);
  assert.equal(stored.status, 200);
  assert.equal(stored.headers.get('content-type'), 'image/jpeg');
  assert.equal((await stored.arrayBuffer()).byteLength, up.size, 'the bucket holds the stored copy');
  // the preview is the stored copy
  await page.waitForFunction((u) => document.querySelector('#preview').src === u, up.url);
  assert.equal(await page.locator('#preview').evaluate((i) => i.complete && i.naturalWidth), 420);

  // generate: input_url is the presigned GET; "auto" makes the simulator's result take the input's aspect,
  // which it only knows after downloading the image from the bucket
  await page.selectOption('#aspect', 'auto');
  const genReq = page.waitForRequest((r) => r.url() === BASE + '/generate');
  await page.click('#generate:enabled');
  const sent = JSON.parse((await genReq).postData());
  assert.equal(sent.input_url, up.url);
  const img = await waitForResultImage(page);
  console.log(`# result ${img.w}x${img.h}: ${img.src}`);
  // the simulator fits the input fetched from S3 into a 1K (~1 MP) frame of the input's aspect (auto)
  assert.ok(Math.abs(img.w / img.h - 420 / 300) < 0.01 && img.w * img.h > 0.9e6 && img.w * img.h < 1.1e6,
    `result ${img.w}x${img.h} has the aspect of the 420x300 input fetched from S3, at about one megapixel`);
  assert.equal(await page.textContent('#task-state'), 'Done');
  const simTasks = (await getJson(SIM + '/sim/tasks')).body.tasks;
  const simTask = simTasks.find((t) => img.src.includes(t.taskId));
  assert.ok(simTask, 'the simulator knows the task');
  assert.deepEqual(simTask.inputUrls, [up.url]);
  assert.equal(await page.locator('#before-img').evaluate((i) => i.complete && i.naturalWidth), 420);
  assert.equal(await page.locator('#before-img').getAttribute('src'), up.url);
  const saved = await page.evaluate(() => JSON.parse(localStorage.getItem('ppa.tasks.v1'))[0]);
  assert.equal(saved.input, up.url);
  assert.deepEqual(seen.filter(isLocalUpload), [], 'still no POST /upload');
  await page.screenshot({ path: path.join(OUT_DIR, 'browser-s3.png'), fullPage: true });
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('S3 mode: a JPEG without a usable browser type is sniffed and signed as image/jpeg', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  const seen = recordRequests(page);
  const jpeg = await makeJpeg(page, 200, 150);
  await pick(page, { name: 'photo.bin', mimeType: 'application/octet-stream', buffer: jpeg });
  assert.equal(await page.locator('#upload-box').getAttribute('class'), 'upload done', await page.locator('#upload-error').innerText());
  assert.deepEqual(JSON.parse(seen.find(isUploadUrl).body), { content_type: 'image/jpeg', size: jpeg.length });
  const put = seen.find(isS3Put);
  assert.equal(put.headers['content-type'], 'image/jpeg');
  assert.ok(seen.find(isComplete), 'finished with /upload-complete');
  await page.waitForFunction(() => /\.jpe?g\?/.test(document.querySelector('#preview').src), null, { timeout: 5000 });
  assert.equal(await page.locator('#generate').isDisabled(), false);
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('S3 mode: HEIC and TIFF without a browser type are sniffed, signed with their type and converted', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  const seen = recordRequests(page);
  const files = [
    { name: 'IMG_0007.HEIC', buffer: makeHeic(640, 480), type: 'image/heic', w: 640, h: 480 },
    { name: 'scan.tif', buffer: makeTiff(300, 200), type: 'image/tiff', w: 300, h: 200 },
  ];
  for (const f of files) {
    seen.length = 0;
    const doneResp = page.waitForResponse((r) => r.url() === BASE + '/upload-complete');
    await page.setInputFiles('#file', { name: f.name, mimeType: '', buffer: f.buffer });
    await doneResp;   // (the box still says "done" for the previous file until this upload begins)
    await page.waitForSelector('#upload-box.done, #upload-box.failed');
    assert.equal(await page.locator('#upload-box').getAttribute('class'), 'upload done', await page.locator('#upload-error').innerText());
    assert.deepEqual(JSON.parse(seen.find(isUploadUrl).body), { content_type: f.type, size: f.buffer.length });
    assert.equal(seen.find(isS3Put).headers['content-type'], f.type);
    const up = await (await doneResp).json();
    assert.deepEqual(up.original, { content_type: f.type, width: f.w, height: f.h, size: f.buffer.length });
    assert.equal(up.content_type, 'image/jpeg');
    await page.waitForFunction((u) => { const i = document.querySelector('#preview'); return i.src === u && i.complete && i.naturalWidth > 0; }, up.url);
    assert.match(await page.textContent('#upload-status'), new RegExp(`${f.w}×${f.h} ${f.type === 'image/heic' ? 'HEIC' : 'TIFF'} → ${f.w}×${f.h} JPEG`));
  }
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('S3 mode: /upload-complete answering 503 server_busy is retried once after Retry-After', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  const calls = [];
  await page.route(BASE + '/upload-complete', (route) => {
    calls.push({ at: Date.now(), body: route.request().postData() });
    if (calls.length > 1) return route.continue();
    return route.fulfill({
      status: 503, headers: { 'Retry-After': '1' }, contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'server_busy', message: 'The server is busy processing other images; try again in 1 s.', request_id: 't', retry_after: 1 } }),
    });
  });
  const seen = recordRequests(page);
  await page.setInputFiles('#file', { name: 'p.png', mimeType: 'image/png', buffer: makePng(100, 80) });
  await page.waitForFunction(() => /trying again in 1 s/.test(document.querySelector('#upload-status').textContent));
  await page.waitForSelector('#upload-box.done');
  assert.equal(calls.length, 2);
  assert.equal(calls[0].body, calls[1].body, 'the same upload_id both times');
  assert.ok(calls[1].at - calls[0].at >= 900, 'waited about Retry-After');
  assert.equal(seen.filter(isS3Put).length, 1, 'the file was PUT once only');
  assert.deepEqual(unexpected([/status of 503/]), []);
  await page.close();
});

test('S3 mode: an oversized file is refused before any request', { timeout: 60_000 }, async () => {
  const max = (await getJson(BASE + '/config')).body.max_direct_upload_bytes; // the page PUTs to the bucket
  assert.ok(Number.isInteger(max) && max > 0);
  const { page, unexpected } = await openPage();
  const seen = recordRequests(page);
  await pickOversizedFile(page, max);
  assert.deepEqual(seen.map((q) => q.method + ' ' + q.url), [], 'no request at all (no /upload-url, no PUT)');
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('S3 mode: a text file named .png is refused by its bytes before any request', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  const seen = recordRequests(page);
  await page.setInputFiles('#file', { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not an image\n'.repeat(50)) });
  await page.waitForSelector('#upload-error:not([hidden])');
  assert.match(await page.locator('#upload-error').innerText(), /notes\.png.*not a JPEG, PNG, WEBP, HEIC, AVIF or TIFF image/);
  await page.waitForTimeout(500);
  assert.deepEqual(seen.map((q) => q.method + ' ' + q.url), [], 'no request at all');
  assert.equal(await page.locator('#preview').isHidden(), true);
  assert.equal(await page.locator('#generate').isDisabled(), true);
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('S3 mode: the bucket\'s XML error (Code and Message) is shown', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  // the PUT reaches s3rver with a Content-Type other than the signed one: a real SignatureDoesNotMatch
  await page.route((u) => u.href.startsWith(S3 + '/'), (route) => {
    const r = route.request();
    if (r.method() !== 'PUT') return route.continue();
    return route.continue({ headers: { ...r.headers(), 'content-type': 'image/jpeg' } });
  });
  const putResp = page.waitForResponse((r) => r.request().method() === 'PUT' && r.url().startsWith(S3 + '/'));
  await pick(page, { name: 'tampered.png', mimeType: 'image/png', buffer: makePng(64, 64) });
  const r = await putResp;
  assert.equal(r.status(), 403);
  const xml = s3Xml(await r.text());
  console.log(`# S3 answered ${r.status()} ${xml.code}: ${xml.message}`);
  assert.equal(xml.code, 'SignatureDoesNotMatch');
  assert.ok(xml.message.length > 10);
  const shown = await page.locator('#upload-error').innerText();
  assert.ok(shown.includes(xml.code) && shown.includes(xml.message), `"${shown}" shows Code and Message`);
  assert.match(shown, /storage bucket refused the upload \(HTTP 403\)/);
  assert.equal(await page.locator('#generate').isDisabled(), true);
  assert.equal(await page.locator('#preview').isHidden(), true);
  assert.deepEqual(unexpected([/status of 403/]), []);
  await page.close();
});

test('S3 mode: a PUT that never gets an answer (CORS or connection) is explained', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await openPage();
  await page.route((u) => u.href.startsWith(S3 + '/'), (route) =>
    route.request().method() === 'PUT' ? route.abort('connectionrefused') : route.continue());
  await pick(page, { name: 'p.png', mimeType: 'image/png', buffer: makePng(64, 64) });
  const shown = await page.locator('#upload-error').innerText();
  assert.match(shown, /upload to the storage bucket failed before it answered/);
  assert.match(shown, /CORS/);
  assert.ok(shown.includes(S3), 'names the bucket origin: ' + shown);
  assert.equal(await page.locator('#generate').isDisabled(), true);
  assert.deepEqual(unexpected([/ERR_CONNECTION_REFUSED|ERR_FAILED/]), []);
  await page.close();
});
