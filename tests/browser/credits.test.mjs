// The KIE balance beside Generate (GET /credits), refreshed after a generation; the server's own refusals
// 402 insufficient_credits and 429 daily_limit_reached (with the reset time in the browser's local time).
// Servers (run.sh), each with its own task store and balance cache, all on the one kie-sim:
//   E2E_CREDITS_BASE  plain;  E2E_BROKE_BASE  for the 402;  E2E_DAILY_BASE  DAILY_GENERATION_LIMIT=1;
//   E2E_NOKEY_BASE  no KIE_API_KEY (balance unknown).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env, launch, newPage, makePng, simConfig, getJson, waitForResultImage } from './helpers.mjs';

const SIM = env('E2E_SIM_BASE');
const CREDITS = env('E2E_CREDITS_BASE');
const BROKE = env('E2E_BROKE_BASE');
const DAILY = env('E2E_DAILY_BASE');
const NOKEY = env('E2E_NOKEY_BASE');
const TZ = 'America/New_York';   // not UTC, so a reset time shown in UTC would not match
let browser;
before(async () => { browser = await launch({ timezoneId: TZ, locale: 'en-US' }); });
after(async () => { await browser?.close(); await simConfig(SIM, { reset: true }); });

async function ready(page, base) {
  await page.goto(base + '/');
  await page.waitForSelector('#server-state.ok');
  await page.setInputFiles('#file', { name: 'cup.png', mimeType: 'image/png', buffer: makePng(80, 60) });
  await page.waitForSelector('#upload-box.done');
}
const creditsText = (page) => page.locator('#credits').textContent();

test('the balance beside Generate: per resolution, and updated after a generation', { timeout: 120_000 }, async () => {
  await simConfig(SIM, { reset: true, step_ms: 200, initial_credits: 312, price_1k: 5, price_2k: 7 });
  const { page, unexpected } = await newPage(browser);
  await ready(page, CREDITS);
  await page.waitForSelector('#credits:not([hidden])');
  const c = (await getJson(CREDITS + '/credits')).body;
  assert.equal(c.balance, 312);
  const at = (res) => `312 credits ≈ ${c.images_left[res]} images at ${res}`;
  assert.equal(c.images_left['1K'], Math.floor(312 / c.price['1K']));
  assert.equal(await creditsText(page), at('1K'));
  assert.equal(await creditsText(page), '312 credits ≈ 62 images at 1K');
  await page.selectOption('#resolution', '2K');
  assert.equal(await creditsText(page), at('2K'));
  assert.equal(await creditsText(page), '312 credits ≈ 44 images at 2K');
  assert.match(await page.getAttribute('#credits', 'title'), /7 credits per 2K image/);
  await page.selectOption('#resolution', '1K');

  // a 1K generation takes 5 credits at the simulator: the page asks again once the task is done
  const asked = [];
  page.on('request', (r) => { if (new URL(r.url()).pathname === '/credits') asked.push(Date.now()); });
  await page.click('#generate:enabled');
  await waitForResultImage(page);
  const done = Date.now();
  // the server may hold KIE's balance for 30 s: the page asks again when its answer was older than the task
  await page.waitForFunction(() => document.querySelector('#credits').textContent.startsWith('307 credits'), null,
    { timeout: 45_000 });
  assert.ok(asked.some((t) => t >= done - 1000), 'GET /credits after the task finished');
  assert.match(await creditsText(page), /^307 credits ≈ 61 images at 1K$/);
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('no balance (no KIE key): nothing shown beside Generate, the reason as a tooltip', { timeout: 60_000 }, async () => {
  const c = (await getJson(NOKEY + '/credits')).body;
  assert.equal(c.balance, null);
  assert.ok(c.balance_error, 'the server says why');
  const { page, unexpected } = await newPage(browser);
  const answered = page.waitForResponse((r) => new URL(r.url()).pathname === '/credits');
  await page.goto(NOKEY + '/');
  await page.waitForSelector('#server-state.ok');
  assert.equal((await answered).status(), 200);
  await page.waitForFunction(() => document.querySelector('#gen-row').title !== '');
  assert.equal(await page.locator('#credits').isHidden(), true);
  assert.equal(await page.getAttribute('#gen-row', 'title'), 'KIE balance unknown: ' + c.balance_error);
  assert.doesNotMatch(await page.locator('#gen-form').innerText(), /credits/i);
  assert.deepEqual(unexpected(), []);
  await page.close();
});

test('402 insufficient_credits: the server\'s message, and the balance that caused it', { timeout: 90_000 }, async () => {
  await simConfig(SIM, { reset: true, step_ms: 200, initial_credits: 3, price_1k: 5, price_2k: 7 });
  const { page, unexpected } = await newPage(browser);
  await ready(page, BROKE);
  await page.waitForFunction(() => document.querySelector('#credits').textContent.startsWith('3 credits'));
  assert.equal(await creditsText(page), '3 credits ≈ 0 images at 1K');
  assert.equal(await page.getAttribute('#credits', 'class'), 'credits low');
  const resp = page.waitForResponse((r) => new URL(r.url()).pathname === '/generate');
  await page.click('#generate:enabled');
  const r = await resp;
  const body = await r.json();
  assert.equal(r.status(), 402);
  assert.equal(body.error.code, 'insufficient_credits', JSON.stringify(body));
  await page.waitForSelector('#gen-error:not([hidden])');
  const shown = await page.locator('#gen-error').innerText();
  assert.match(shown, /Not enough KIE credits/);
  assert.ok(shown.includes(body.error.message), `"${shown}" includes "${body.error.message}"`);
  assert.equal(await page.locator('#task').isHidden(), true, 'no task was started');
  assert.equal(await page.locator('#generate').isDisabled(), false, 'can try again');
  assert.deepEqual(unexpected([/status of 402/]), []);
  await page.close();
});

test('429 daily_limit_reached: the message and when the limit lifts, in local time', { timeout: 90_000 }, async () => {
  await simConfig(SIM, { reset: true, step_ms: 200 });
  const { page, unexpected } = await newPage(browser);
  assert.equal(await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone), TZ);
  await ready(page, DAILY);
  // the one generation of the day
  await page.click('#generate:enabled');
  await waitForResultImage(page);
  const resp = page.waitForResponse((r) => new URL(r.url()).pathname === '/generate');
  await page.click('#generate:enabled');
  const r = await resp;
  const body = await r.json();
  assert.equal(r.status(), 429);
  assert.equal(body.error.code, 'daily_limit_reached', JSON.stringify(body));
  assert.ok(Number(r.headers()['retry-after']) > 0, 'Retry-After');
  const reset = new Date(body.error.resets_at);
  assert.ok(reset > new Date(), 'resets_at is ahead: ' + body.error.resets_at);
  await page.waitForSelector('#gen-error:not([hidden])');
  const shown = await page.locator('#gen-error').innerText();
  assert.match(shown, /daily generation limit/);
  assert.ok(shown.includes(body.error.message), `"${shown}" includes "${body.error.message}"`);
  // midnight UTC is 7 PM (or 8 PM in summer) the day before in New York
  const local = reset.toLocaleTimeString('en-US', { timeZone: TZ, hour: '2-digit', minute: '2-digit' });
  const utc = reset.toLocaleTimeString('en-US', { timeZone: 'UTC', hour: '2-digit', minute: '2-digit' });
  assert.notEqual(local, utc);
  assert.ok(shown.includes(local), `"${shown}" shows the reset as ${local} (local)`);
  assert.match(shown, /E[SD]T/, 'with the time zone');
  assert.deepEqual(unexpected([/status of 429/]), []);
  await page.close();
});
