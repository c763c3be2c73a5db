// Against a server started with API_TOKEN: the page asks for the token, sends it as a Bearer header,
// and asks again (then retries the upload) after a 401.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { env, launch, newPage, makePng, getJson } from './helpers.mjs';

const BASE = env('E2E_AUTH_BASE');
const TOKEN = env('E2E_AUTH_TOKEN');
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('auth_required: token form, Bearer header, 401 clears the token and asks again', { timeout: 60_000 }, async () => {
  const cfg = await getJson(BASE + '/config');
  assert.equal(cfg.body.auth_required, true);
  const { page, unexpected } = await newPage(browser);
  const auths = [];
  page.on('request', (r) => {
    if (/\/(upload|generate|status)/.test(r.url())) auths.push([new URL(r.url()).pathname, r.headers().authorization || '']);
  });
  await page.goto(BASE + '/');
  await page.waitForSelector('#auth-form:not([hidden])');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'auth-token', 'token field focused');
  // no public URL, but KIE_UPLOAD=auto gets photos to KIE: no "KIE cannot download" warning, and the page says how
  await page.waitForSelector('#server-state.ok');
  assert.equal(await page.locator('.notice.warn').count(), 0, 'no warning: KIE gets photos through its file upload');
  assert.match(await page.textContent('#server-state'), /file upload/);

  // a wrong token: the upload gets 401, the token is cleared and the form comes back
  await page.fill('#auth-token', 'wrong-token');
  await page.press('#auth-token', 'Enter');
  assert.equal(await page.locator('#auth-form').isHidden(), true);
  const png = makePng(64, 64);
  const r401 = page.waitForResponse((r) => r.url().endsWith('/upload'));
  await page.setInputFiles('#file', { name: 'a.png', mimeType: 'image/png', buffer: png });
  assert.equal((await r401).status(), 401);
  await page.waitForSelector('#auth-form:not([hidden])');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ppa.token')), null, 'token cleared after 401');
  assert.match(await page.locator('#upload-error').innerText(), /token/i);

  // the right token: the pending upload is retried automatically and succeeds
  const r200 = page.waitForResponse((r) => r.url().endsWith('/upload'));
  await page.fill('#auth-token', TOKEN);
  await page.click('#auth-form button[type=submit]');
  assert.equal((await r200).status(), 200);
  await page.waitForSelector('#upload-box.done');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ppa.token')), TOKEN);

  // /generate carries the header too (this server has no public URL: it pushes the photo to KIE's file
  // upload, the simulator's here, and answers 200, not 401)
  const gen = page.waitForResponse((r) => r.url().endsWith('/generate'));
  await page.click('#generate:enabled');
  assert.equal((await gen).status(), 200);
  assert.deepEqual(auths, [
    ['/upload', 'Bearer wrong-token'], ['/upload', 'Bearer ' + TOKEN], ['/generate', 'Bearer ' + TOKEN],
  ]);
  assert.deepEqual(unexpected([/status of 401/, /status of 400/]), []);
  await page.close();
});

test('auth_required: "Download result" works although /results needs the token', { timeout: 90_000 }, async () => {
  const { page, unexpected } = await newPage(browser);
  await page.goto(BASE + '/');
  await page.waitForSelector('#auth-form:not([hidden])');
  await page.fill('#auth-token', TOKEN);
  await page.press('#auth-token', 'Enter');
  await page.setInputFiles('#file', { name: 'cup.png', mimeType: 'image/png', buffer: makePng(64, 64) });
  await page.waitForSelector('#upload-box.done');
  const gen = page.waitForResponse((r) => r.url().endsWith('/generate'));
  await page.click('#generate:enabled');
  const taskId = (await (await gen).json()).data.taskId;
  await page.waitForFunction(() => {
    const i = document.querySelector('#result-img');
    return i && !document.querySelector('#result').hidden && i.complete && i.naturalWidth > 0;
  }, null, { timeout: 60_000 });
  // a plain link to /results is refused without the token...
  const plain = await fetch(`${BASE}/results/${taskId}?download=1&name=cup.png`);
  assert.equal(plain.status, 401);
  // ...yet the button saves the result, named after the photo
  const link = page.locator('#result-actions a', { hasText: 'Download result' });
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  assert.equal(download.suggestedFilename(), 'cup-studio.png');
  const got = fs.readFileSync(await download.path());
  const kie = Buffer.from(await (await fetch(await page.locator('#result-img').getAttribute('src'))).arrayBuffer());
  assert.ok(got.length > 1000 && got.equals(kie), 'the download is the result, byte for byte');
  assert.equal(await page.locator('#task-error').isHidden(), true);
  assert.deepEqual(unexpected(), []);
  await page.close();
});
