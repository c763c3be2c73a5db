// Shared helpers for the browser tests: Chromium launch (loopback-only), PNG encoder, page with error capture.
// The servers are started by run.sh, which exports their base URLs (see env() below).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // Keeps every DNS look-up off the network: only 127.0.0.1/localhost resolve.
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost',
];

export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests through tests/browser/run.sh`);
  return v;
}
export const OUT_DIR = process.env.E2E_OUT_DIR || path.resolve(import.meta.dirname ?? '.', '../../build');

/** Launches Debian's Chromium with a throw-away profile whose prefs disable DNS-error-page probes.
 *  `options` go to the browser context (e.g. { timezoneId, locale }). Every call is a fresh profile: an empty
 *  localStorage, as in another browser. */
export async function launch(options = {}) {
  const userDataDir = mkdtempSync(path.join(tmpdir(), 'ppa-e2e-profile-'));
  mkdirSync(path.join(userDataDir, 'Default'), { recursive: true });
  writeFileSync(path.join(userDataDir, 'Default', 'Preferences'),
    JSON.stringify({ alternate_error_pages: { enabled: false } }));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS,
    viewport: { width: 1200, height: 900 }, timeout: 30_000, ...options,
  });
  return {
    context,
    async close() { await context.close(); rmSync(userDataDir, { recursive: true, force: true }); },
  };
}

/** New page that records page errors and console errors; `allow` lists regexps of expected console errors. */
export async function newPage(browser) {
  const page = await browser.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push('pageerror: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push('console: ' + m.text()); });
  page.setDefaultTimeout(20_000);
  return {
    page,
    errors,
    unexpected(allow = []) { return errors.filter((e) => !allow.some((re) => re.test(e))); },
  };
}

// ---- minimal PNG encoder (RGB, 8 bit), enough to make real decodable images of a given size ----
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
/** PNG of w x h; `noise` makes it incompressible (for upload-progress tests). */
export function makePng(w, h, { noise = false } = {}) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  let seed = 12345;
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1);
    raw[row] = 0;
    for (let x = 0; x < w; x++) {
      const i = row + 1 + x * 3;
      if (noise) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        raw[i] = seed >>> 24; raw[i + 1] = (seed >>> 16) & 255; raw[i + 2] = (seed >>> 8) & 255;
      } else {
        raw[i] = Math.round(255 * x / w); raw[i + 1] = Math.round(255 * y / h); raw[i + 2] = 160;
      }
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: noise ? 0 : 6 })), chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A real JPEG drawn by the browser's canvas encoder (so the test does not need a JPEG encoder). */
export async function makeJpeg(page, w, h) {
  const b64 = await page.evaluate(async ({ w, h }) => {
    const c = document.createElement('canvas');
    c.width = w; c.height = h;
    const g = c.getContext('2d');
    const grad = g.createLinearGradient(0, 0, w, h);
    grad.addColorStop(0, '#c0392b'); grad.addColorStop(1, '#2980b9');
    g.fillStyle = grad; g.fillRect(0, 0, w, h);
    g.fillStyle = '#fff'; g.fillRect(w / 4, h / 4, w / 2, h / 2);
    const blob = await new Promise((r) => c.toBlob(r, 'image/jpeg', 0.9));
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s);
  }, { w, h });
  return Buffer.from(b64, 'base64');
}

// ---- phone-camera formats, made with the machine's tools (Pillow, libheif-examples' heif-enc) ----
const PYTHON = '/usr/bin/python3';
/** Runs fn(dir) in a fresh temporary directory that is removed afterwards. */
function inTmp(fn) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ppa-img-'));
  try { return fn(dir); } finally { rmSync(dir, { recursive: true, force: true }); }
}
/** Writes a w x h gradient photo with Pillow in the given format (JPEG, TIFF, ...) to file. */
function pillowImage(file, w, h, format) {
  execFileSync(PYTHON, ['-c', `
import sys
from PIL import Image
w, h = int(sys.argv[1]), int(sys.argv[2])
im = Image.linear_gradient("L").resize((w, h)).convert("RGB")
im.paste((200, 60, 40), (w // 4, h // 4, w // 2, h // 2))
im.save(sys.argv[3], sys.argv[4])`, String(w), String(h), file, format]);
}
/** A real HEIC (HEVC in ISO-BMFF, brand "heic") of w x h, as iPhones write them. */
export function makeHeic(w, h) {
  return inTmp((dir) => {
    pillowImage(path.join(dir, 'in.jpg'), w, h, 'JPEG');
    execFileSync('heif-enc', ['-q', '50', '-o', path.join(dir, 'out.heic'), path.join(dir, 'in.jpg')], { stdio: 'ignore' });
    return readFileSync(path.join(dir, 'out.heic'));
  });
}
/** A real TIFF of w x h. */
export function makeTiff(w, h) {
  return inTmp((dir) => { pillowImage(path.join(dir, 'out.tif'), w, h, 'TIFF'); return readFileSync(path.join(dir, 'out.tif')); });
}

/** POST /sim/config on the KIE simulator (loopback). */
export async function simConfig(simBase, cfg) {
  const r = await fetch(simBase + '/sim/config', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(cfg),
  });
  if (!r.ok) throw new Error(`POST /sim/config -> ${r.status} ${await r.text()}`);
}

/** The KIE simulator's log of API requests (method, path, body...), oldest first. */
export async function simRequests(simBase) {
  const r = await fetch(simBase + '/sim/requests');
  if (!r.ok) throw new Error(`GET /sim/requests -> ${r.status}`);
  const body = await r.json();
  return Array.isArray(body) ? body : body.requests;
}
export async function simClearRequests(simBase) {
  const r = await fetch(simBase + '/sim/requests', { method: 'DELETE' });
  if (!r.ok) throw new Error(`DELETE /sim/requests -> ${r.status}`);
}

export async function getJson(url) {
  const r = await fetch(url);
  return { status: r.status, body: await r.json().catch(() => null) };
}

/** Waits until the result image has really decoded; returns its natural size. */
export async function waitForResultImage(page, timeout = 60_000) {
  await page.waitForFunction(() => {
    const i = document.querySelector('#result-img');
    return i && !document.querySelector('#result').hidden && i.complete && i.naturalWidth > 0;
  }, null, { timeout });
  return page.locator('#result-img').evaluate((i) => ({ w: i.naturalWidth, h: i.naturalHeight, src: i.src }));
}

/** Records every value the upload progress bar takes (attribute mutations) into window.__progress. */
// Slow the page's uploads to `bytesPerSecond`, so a progress bar passes through
// intermediate values. Returns a function that lifts the limit.
export async function throttleUploads(context, page, bytesPerSecond) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const set = (up) => cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: up,
  });
  await set(bytesPerSecond);
  return () => set(-1);
}

// Pick a PNG one byte over `max` (the server's MAX_UPLOAD_BYTES): the page must refuse it by itself, saying
// it is too large, with no upload box and Generate still off. Waits 500 ms first, so that a request the page
// should not have sent has time to show up in the caller's record.
export async function pickOversizedFile(page, max) {
  const big = Buffer.alloc(max + 1, 0);
  makePng(8, 8).copy(big);
  await page.setInputFiles('#file', { name: 'huge.png', mimeType: 'image/png', buffer: big });
  await page.waitForSelector('#upload-error:not([hidden])');
  assert.match(await page.locator('#upload-error').innerText(), /too large/i);
  await page.waitForTimeout(500);
  assert.equal(await page.locator('#upload-box').isHidden(), true);
  assert.equal(await page.locator('#generate').isDisabled(), true);
}

// After an upload recorded with recordProgress: the bar reached 100 % through
// intermediate values, never going backwards.
export async function assertProgressCompleted(page) {
  const progress = await page.evaluate(() => window.__progress);
  console.log('# progress values: ' + progress.join(','));
  assert.equal(await page.locator('#upload-progress').evaluate((b) => b.value), 100);
  assert.equal(progress.at(-1), 100);
  assert.ok(progress.some((v) => v > 0 && v < 100), 'saw intermediate progress: ' + progress.join(','));
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i] >= progress[i - 1], 'progress is monotonic');
}

export async function recordProgress(page) {
  await page.evaluate(() => {
    const bar = document.querySelector('#upload-progress');
    window.__progress = [];
    new MutationObserver(() => window.__progress.push(Number(bar.value)))
      .observe(bar, { attributes: true, attributeFilter: ['value'] });
  });
}
