// Against a server started WITHOUT PUBLIC_BASE_URL (local storage): the page must explain the localhost problem.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env, launch, newPage, makePng, getJson } from './helpers.mjs';

const BASE = env('E2E_NOPUBLIC_BASE');
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('missing PUBLIC_BASE_URL: the page warns up front and explains the fix', { timeout: 60_000 }, async () => {
  const cfg = await getJson(BASE + '/config');
  assert.equal(cfg.status, 200);
  assert.equal(cfg.body.public_url_ok, false, '/config reports public_url_ok=false');
  const { page, unexpected } = await newPage(browser);
  await page.goto(BASE + '/');
  const warn = page.locator('.notice.warn');
  await warn.waitFor();
  const text = await warn.innerText();
  assert.match(text, /KIE cannot download/);
  assert.match(text, /localhost/);
  assert.match(text, /docker compose --profile tunnel up/);
  assert.match(text, /PUBLIC_BASE_URL/);
  assert.match(text, /S3/);
  // CSP from the server is strict; the page must still work under it (no violations reported as console errors)
  const resp = await page.request.get(BASE + '/');
  assert.match(resp.headers()['content-security-policy'] || '', /script-src 'self'/);
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('page basics: prefilled prompt, exact select options, labels', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await newPage(browser);
  await page.goto(BASE + '/');
  await page.waitForSelector('#server-state.ok');
  const prompt = await page.inputValue('#prompt');
  assert.ok(prompt.length >= 3 && prompt.length <= 5000 && /product/i.test(prompt), 'prompt prefilled');
  const opts = (sel) => page.$$eval(sel + ' option', (os) => os.map((o) => o.value));
  assert.deepEqual(await opts('#aspect'), ['1:1', '4:3', '3:4', '16:9', '9:16', '3:2', '2:3', 'auto']);
  assert.deepEqual(await opts('#resolution'), ['1K', '2K']);
  for (const id of ['prompt', 'aspect', 'resolution']) {
    assert.equal(await page.locator(`label[for="${id}"]`).count(), 1, 'label for #' + id);
  }
  assert.equal(await page.getAttribute('#drop', 'type'), 'button');
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('generate without a public URL shows the server\'s input_url_not_public explanation', { timeout: 60_000 }, async () => {
  const { page, unexpected } = await newPage(browser);
  await page.goto(BASE + '/');
  await page.waitForSelector('#server-state.ok');
  await page.setInputFiles('#file', { name: 'p.png', mimeType: 'image/png', buffer: makePng(48, 48) });
  await page.waitForSelector('#upload-box.done');
  const resp = page.waitForResponse((r) => r.url().endsWith('/generate'));
  await page.click('#generate:enabled');
  const r = await resp;
  assert.equal(r.status(), 400);
  const body = await r.json();
  assert.equal(body.error.code, 'input_url_not_public');
  await page.waitForSelector('#gen-error:not([hidden])');
  const shown = await page.locator('#gen-error').innerText();
  assert.ok(shown.includes(body.error.message), `"${shown}" includes "${body.error.message}"`);
  assert.match(shown, /no public address/);
  assert.equal(await page.locator('#task').isHidden(), true, 'no task created');
  assert.deepEqual(unexpected([/Failed to load resource: the server responded with a status of 400/]), []);
  await page.close();
});
