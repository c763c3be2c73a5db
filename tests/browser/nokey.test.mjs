// Against a server started without KIE_API_KEY: one clear notice, uploads still work, Generate switched off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env, launch, newPage, makePng, getJson } from './helpers.mjs';

const BASE = env('E2E_NOKEY_BASE');
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('no KIE_API_KEY: one notice says so, Generate is off (not "temporarily unavailable")', { timeout: 60_000 }, async () => {
  const cfg = (await getJson(BASE + '/config')).body;
  assert.equal(cfg.kie_configured, false);
  assert.ok(cfg.warnings.some((w) => /KIE_API_KEY/.test(w)), 'the server warns about the key too');
  const { page, unexpected } = await newPage(browser);
  const generates = [];
  page.on('request', (r) => { if (r.url() === BASE + '/generate') generates.push(r.url()); });
  await page.goto(BASE + '/');
  await page.waitForSelector('#server-state.ok');
  const about = await page.locator('.notice').filter({ hasText: /KIE_API_KEY|KIE API key/ }).allInnerTexts();
  assert.equal(about.length, 1, 'one notice about the key: ' + JSON.stringify(about));
  assert.match(about[0], /KIE_API_KEY/);
  assert.match(about[0], /restart/);
  // uploads work; Generate stays off and says why
  await page.setInputFiles('#file', { name: 'p.png', mimeType: 'image/png', buffer: makePng(64, 48) });
  await page.waitForSelector('#upload-box.done');
  assert.equal(await page.locator('#generate').isDisabled(), true);
  const words = (await page.locator('#generate').innerText()) + ' ' + (await page.locator('#gen-note').innerText());
  assert.match(words, /switched off/);
  assert.match(words, /KIE API key/);
  assert.doesNotMatch(await page.locator('body').innerText(), /temporarily unavailable/i);
  // not even Enter in the form sends the request
  await page.locator('#gen-form').evaluate((f) => f.requestSubmit());
  await page.waitForTimeout(300);
  assert.deepEqual(generates, [], 'no POST /generate');
  assert.deepEqual(unexpected(), []);
  await page.close();
});
