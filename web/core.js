/* Product Photo Studio, shared by the page's scripts: DOM and format helpers, the API client and its error
 * messages, the token, image type sniffing, POST /generate with one Idempotency-Key, task states.
 * Plain JS, no build step, CSP-safe (no inline code, no eval). Loaded first; the others read window.PPA. */
'use strict';
window.PPA = (function () {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'ppa.token';
  const PROMPT_MIN = 3;
  const PROMPT_MAX = 5000;
  /* what the server takes (GET /config accepted_types replaces the list); names and extensions for the picker */
  const TYPES = {
    'image/jpeg': ['JPEG', '.jpg,.jpeg'], 'image/png': ['PNG', '.png'], 'image/webp': ['WEBP', '.webp'],
    'image/heic': ['HEIC', '.heic'], 'image/heif': ['HEIF', '.heif'], 'image/avif': ['AVIF', '.avif'],
    'image/tiff': ['TIFF', '.tif,.tiff'],
  };
  const HEIF_BRANDS = ['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'hevm', 'hevs', 'mif1', 'msf1'];
  const GEN_NET_RETRIES = 2;     /* POST /generate sent again (same Idempotency-Key) after a network error */
  const GEN_BUSY_MAX_S = 60;     /* 409 request_in_progress waited out for this long in total */
  const FINAL = new Set(['success', 'fail', 'timeout']);
  /* the same words on the badge, the progress steps and the recent list */
  const STATE_LABEL = {
    waiting: 'Waiting', queuing: 'Queuing', generating: 'Generating',
    success: 'Done', fail: 'Failed', timeout: 'Timed out', unknown: 'Checking',
  };

  const cfg = {
    max_upload_bytes: 32 * 1024 * 1024, auth_required: false, public_url_ok: true,
    accepted_types: ['image/jpeg', 'image/png', 'image/webp', 'image/heic', 'image/avif', 'image/tiff'],
  };
  /* set by app.js: what a 401 answer does (ask for the token again) */
  const hooks = { onUnauthorized() {} };

  /* ---------- small helpers ---------- */
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids) if (kid !== null && kid !== undefined && kid !== false) el.append(kid);
    return el;
  }
  function fmtBytes(n) {
    if (!Number.isFinite(n)) return '?';
    if (n >= 1024 * 1024) return (n / 1048576).toFixed(n % 1048576 === 0 ? 0 : 1) + ' MiB';
    if (n >= 1024) return Math.round(n / 1024) + ' KiB';
    return n + ' bytes';
  }
  function fmtElapsed(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const m = Math.floor(s / 60);
    return m + ':' + String(s % 60).padStart(2, '0');
  }
  /* "at 7:00 PM EST" today, "on Wed, 7:00 PM EST" on another day: local time, with its zone */
  function fmtLocal(d) {
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', timeZoneName: 'short' });
    return d.toDateString() === new Date().toDateString() ? 'at ' + time
      : 'on ' + d.toLocaleDateString([], { weekday: 'short', month: 'short', day: 'numeric' }) + ', ' + time;
  }
  function fmtAge(ts) {
    const s = Math.max(0, Math.round((Date.now() - ts) / 1000));
    if (s < 60) return 'just now';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' d ago';
  }
  function fmtWhen(ts) {
    const d = new Date(ts);
    const sameDay = d.toDateString() === new Date().toDateString();
    return sameDay ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }
  /* Only http(s)/blob and same-origin relative URLs may reach src/href. */
  function safeUrl(u) {
    if (typeof u !== 'string' || !u) return '';
    try {
      const url = new URL(u, location.href);
      return ['http:', 'https:', 'blob:'].includes(url.protocol) ? url.href : '';
    } catch (e) { return ''; }
  }
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }
  function authHeaders() {
    const t = token();
    return t ? { Authorization: 'Bearer ' + t } : {};
  }
  /* 'HEIC' for image/heic; the accepted types as "JPEG, PNG, WEBP, HEIC, AVIF or TIFF" */
  function typeName(t) { return TYPES[t] ? TYPES[t][0] : String(t || '').replace(/^image\//, '').toUpperCase(); }
  function typeList() {
    const names = cfg.accepted_types.map(typeName);
    return names.length > 1 ? names.slice(0, -1).join(', ') + ' or ' + names[names.length - 1] : names.join('');
  }
  function setToken(t) {
    try { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* private mode */ }
  }

  /* ---------- API ---------- */
  class ApiError extends Error {
    constructor(status, code, message, requestId, retryAfter, resetsAt) {
      super(message || ('HTTP ' + status));
      this.status = status; this.code = code || ''; this.requestId = requestId || '';
      this.retryAfter = Number(retryAfter) > 0 ? Math.ceil(Number(retryAfter)) : 0;   /* seconds, 0 = not said */
      this.resetsAt = typeof resetsAt === 'string' ? resetsAt : '';   /* daily_limit_reached: when it lifts */
    }
  }
  function parseJson(text) { try { return text ? JSON.parse(text) : null; } catch (e) { return null; } }
  function errorFrom(status, body, text, retryHeader, quiet401) {
    const e = body && typeof body.error === 'object' && body.error ? body.error : null;
    const msg = (e && e.message) || (body && (body.msg || body.message)) ||
      (text && !body ? String(text).slice(0, 300) : '') || ('HTTP ' + status);
    if (status === 401 && !quiet401) hooks.onUnauthorized();
    return new ApiError(status, e && e.code, msg, e && e.request_id, (e && e.retry_after) || retryHeader, e && e.resets_at);
  }
  /* {body, headers} of a 2xx JSON answer; an ApiError otherwise (status 0: no answer). A background read
   * (opts.background: the task list, the balance) does not ask for the token again on a 401. */
  async function apiFull(path, opts) {
    const o = Object.assign({ cache: 'no-store' }, opts || {});
    const background = o.background === true;
    delete o.background;
    o.headers = Object.assign({}, o.headers || {}, authHeaders());
    let res;
    try { res = await fetch(path, o); } catch (e) {
      throw new ApiError(0, 'network', 'The server could not be reached.');
    }
    const text = await res.text().catch(() => '');
    const body = parseJson(text);
    if (!res.ok) throw errorFrom(res.status, body, text, res.headers.get('Retry-After'), background);
    return { body, headers: res.headers };
  }
  async function api(path, opts) { return (await apiFull(path, opts)).body; }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  /* Turns an ApiError into {lead, detail, rid}: a human sentence plus the server's own words. */
  function describe(err, what) {
    const s = err.status;
    let lead;
    switch (s) {
      case 0: lead = what === 'upload'
        ? 'The upload failed before the server answered: the file may be too large for the server or a proxy, or the network connection dropped.'
        : 'Network error: the server could not be reached. Check your connection and try again.'; break;
      case 400: lead = err.code === 'input_url_not_public'
        ? 'KIE cannot download the photo: the server has no public address for it (see the notice at the top).'
        : 'The request was rejected.'; break;
      case 401: lead = 'The API token is missing or was rejected. Enter it again above.'; break;
      case 402: lead = err.code === 'insufficient_credits'
        ? 'Not enough KIE credits for this image: the account\'s balance is below the price of one image.'
        : 'KIE reports insufficient credits on the account.'; break;
      case 404: lead = 'Not found.'; break;
      case 413: lead = err.code === 'too_many_pixels'
        ? 'The photo has too many pixels for the server' +
          (cfg.image_max_pixels > 0 ? ' (limit ' + Math.round(cfg.image_max_pixels / 1e6) + ' megapixels)' : '') + '.'
        : 'The file is too large for the server (limit ' + fmtBytes(cfg.max_upload_bytes) + ').'; break;
      case 415: lead = 'This file cannot be used: the server accepts ' + typeList() + ' photos.'; break;
      case 422: lead = 'The photo could not be read.'; break;
      case 429: lead = err.code === 'daily_limit_reached' ? dailyLimitLead(err)
        : 'Too many requests: please wait ' + (err.retryAfter ? err.retryAfter + ' s' : 'a moment') + ' and try again.'; break;
      case 503: lead = err.code === 'server_busy'
        ? 'The server is busy processing other photos. Try again in ' + (err.retryAfter ? err.retryAfter + ' s' : 'a little while') + '.'
        : err.code === 'kie_not_configured' ? 'Generation is not set up on this server (no KIE_API_KEY).'
          : 'The service is temporarily unavailable. Try again in a little while.'; break;
      case 507: lead = 'The server has run out of storage space for uploads.'; break;
      default: lead = s >= 500 ? 'Server error (HTTP ' + s + ').' : 'The request failed (HTTP ' + s + ').';
    }
    const detail = s !== 0 && err.message && err.message !== lead ? err.message : '';
    return { lead, detail, rid: err.requestId };
  }
  /* "… It resets at 7:00 PM EST (your time)." from resets_at, else from Retry-After. */
  function dailyLimitLead(err) {
    let at = err.resetsAt ? new Date(err.resetsAt) : null;
    if ((!at || isNaN(at)) && err.retryAfter) at = new Date(Date.now() + err.retryAfter * 1000);
    const when = at && !isNaN(at) ? ' It resets ' + fmtLocal(at) + ' (your time).' : '';
    return 'This server\'s daily generation limit is reached.' + when;
  }
  function showError(id, info) {
    const el = $(id);
    el.replaceChildren(h('strong', { text: info.lead }));
    if (info.detail) el.append(' ', h('span', { class: 'detail', text: info.detail }));
    if (info.rid) el.append(' ', h('span', { class: 'rid', text: '(request ' + info.rid + ')' }));
    el.hidden = false;
  }
  function clearError(id) { const el = $(id); el.hidden = true; el.replaceChildren(); }

  /* ---------- image types ---------- */
  /* The image type from the file's first bytes, as the server detects it ('' when it is none it accepts). */
  async function sniffType(file) {
    let b;
    try { b = new Uint8Array(await file.slice(0, 16).arrayBuffer()); } catch (e) { return ''; }
    const at = (off, sig) => b.length >= off + sig.length &&
      Array.from(sig, (c) => (typeof c === 'number' ? c : c.charCodeAt(0))).every((v, i) => b[off + i] === v);
    const str = (off, n) => String.fromCharCode(...b.subarray(off, off + n));
    if (at(0, [0xff, 0xd8, 0xff])) return 'image/jpeg';
    if (at(0, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'image/png';
    if (at(0, 'RIFF') && at(8, 'WEBP')) return 'image/webp';
    if (at(4, 'ftyp') && b.length >= 12) {        /* ISO-BMFF: the major brand decides */
      const brand = str(8, 4);
      if (brand === 'avif' || brand === 'avis') return 'image/avif';
      return HEIF_BRANDS.includes(brand) ? 'image/heic' : '';
    }
    /* TIFF, but not Canon CR2 RAW, which shares its header */
    if (b.length >= 10 && ((at(0, 'II*\0') && !at(8, 'CR')) || at(0, 'MM\0*'))) return 'image/tiff';
    return '';
  }
  /* "4032×3024 HEIC → 1536×2048 JPEG" from an upload answer (just the stored image when nothing changed). */
  function sizeNote(a) {
    const one = (w, hgt, t) => [w > 0 && hgt > 0 ? w + '×' + hgt : '', typeName(t)].filter(Boolean).join(' ');
    const stored = one(a.width, a.height, a.content_type);
    const o = a.original && typeof a.original === 'object' ? a.original : null;
    const orig = o ? one(o.width, o.height, o.content_type) : '';
    return orig && orig !== stored ? orig + ' → ' + stored : stored;
  }

  /* ---------- generate ---------- */
  /* A fresh Idempotency-Key (one per click of Generate). crypto.randomUUID needs a secure context
   * (https or localhost); a page opened over plain http on a LAN address builds the same from getRandomValues. */
  function newIdempotencyKey() {
    if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
    const b = window.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
    return [x.slice(0, 8), x.slice(8, 12), x.slice(12, 16), x.slice(16, 20), x.slice(20)].join('-');
  }
  /* POST /generate for one click: the same body and Idempotency-Key on every attempt, so a retry after a lost
   * answer gets the server's first answer again (Idempotent-Replayed) instead of a second, paid task. A server
   * without a task store (TASK_STORE=off: 503 task_store_off) cannot honour the key: the click is sent once
   * more without it, and then never again on its own. onNote(text) is told what the page is waiting for. */
  async function postGenerate(body, key, onNote) {
    const headers = { 'Content-Type': 'application/json', 'Idempotency-Key': key };
    let busyWaited = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await apiFull('/generate', { method: 'POST', headers, body });
        return { body: r.body, replayed: /^true$/i.test(r.headers.get('Idempotent-Replayed') || '') };
      } catch (e) {
        if (e.status === 503 && e.code === 'task_store_off' && headers['Idempotency-Key']) {
          delete headers['Idempotency-Key'];
          continue;
        }
        if (e.status === 0 && attempt < GEN_NET_RETRIES && headers['Idempotency-Key']) {
          onNote('The connection dropped; sending the same request again (it is not charged twice)…');
          await sleep(1000 * (attempt + 1));
          continue;
        }
        if (e.status === 409 && e.code === 'request_in_progress' && busyWaited < GEN_BUSY_MAX_S) {
          const secs = Math.min(10, Math.max(1, e.retryAfter || 1));
          busyWaited += secs;
          onNote('The server is still creating this task; waiting for its answer…');
          await sleep(secs * 1000);
          continue;
        }
        throw e;
      }
    }
  }

  /* The photo's file name for POST /generate photo_name (it names the result in /results.zip): 1-255 bytes of
   * UTF-8 without control characters, '/' or '\\'; '' when the name is not one the server takes. */
  function photoName(name) {
    const n = String(name || '');
    if (!n || /[\u0000-\u001f\u007f/\\]/.test(n) || new TextEncoder().encode(n).length > 255) return '';
    return n;
  }

  /* ---------- task states ---------- */
  function normState(s) {
    const v = String(s || '').toLowerCase();
    if (v === 'failed' || v === 'failure' || v === 'error') return 'fail';
    return ['waiting', 'queuing', 'generating', 'success', 'fail'].includes(v) ? v : 'unknown';
  }
  function resultUrls(d) {
    let list = Array.isArray(d.resultUrls) ? d.resultUrls : null;
    if (!list && d.resultJson) {
      try {
        const r = typeof d.resultJson === 'string' ? JSON.parse(d.resultJson) : d.resultJson;
        if (r && Array.isArray(r.resultUrls)) list = r.resultUrls;
      } catch (e) { /* ignore */ }
    }
    return (list || []).map(safeUrl).filter(Boolean);
  }

  return {
    $, h, fmtBytes, fmtElapsed, fmtAge, fmtWhen, safeUrl, token, setToken, authHeaders, typeName, typeList,
    ApiError, parseJson, errorFrom, apiFull, api, sleep, describe, showError, clearError, sniffType, sizeNote,
    newIdempotencyKey, postGenerate, photoName, normState, resultUrls,
    TYPES, FINAL, STATE_LABEL, PROMPT_MIN, PROMPT_MAX, cfg, hooks,
  };
}());
