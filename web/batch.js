/* Product Photo Studio: the queue, for a catalogue of photos at once. A row per photo (thumbnail, upload
 * progress, state, elapsed, retry), the shared prompt and settings of the form (or a row's own, set before that
 * row starts), at most MAX_IN_FLIGHT photos uploading/generating at a time, the estimated credits before
 * "Generate all", a running total, and "Download all" (GET /results.zip). Each row has its own Idempotency-Key,
 * kept while it sends the same request again (429, a dropped connection, Retry); only a new request (a task KIE
 * failed, or other settings) gets a new key. Plain JS, CSP-safe; loaded after core.js and send.js. */
'use strict';
(function (PPA) {
  const {
    $, h, fmtBytes, fmtElapsed, safeUrl, token, authHeaders, typeList, ApiError, parseJson, errorFrom, api,
    describe, showError, clearError, sniffType, newIdempotencyKey, postGenerate, photoName, normState, resultUrls, sleep,
    cfg, FINAL, PROMPT_MIN, PROMPT_MAX,
  } = PPA;
  const MAX_IN_FLIGHT = 4;
  const MAX_ROWS = 500;             /* GET /results.zip takes at most 500 task ids */
  const POLL_FIRST_MS = 1500;
  const POLL_MAX_MS = 10000;
  const POLL_LIMIT_MS = 15 * 60 * 1000;
  const WAIT_429_S = [2, 4, 8, 15, 30];   /* a 429 without Retry-After: these waits, then 30 s each time */
  const LABEL = {
    queued: 'Queued', uploading: 'Uploading', creating: 'Starting', waiting: 'Waiting', queuing: 'Queuing',
    generating: 'Generating', done: 'Done', failed: 'Failed', rejected: 'Not sent',
  };
  const ACTIVE = new Set(['uploading', 'creating', 'waiting', 'queuing', 'generating']);

  const rows = [];
  let seq = 0;

  /* ---------- rows ---------- */
  /* Adds files to the queue; files the server would refuse anyway (too large, empty, in S3 mode not an image)
   * get a row that says why and is never sent. */
  async function add(files) {
    const room = MAX_ROWS - rows.length;
    const list = Array.from(files || []).slice(0, Math.max(0, room));
    clearError('queue-error');
    if (files.length > list.length) {
      showError('queue-error', { lead: 'The queue holds at most ' + MAX_ROWS + ' photos: ' + (files.length - list.length) + ' were left out.' });
    }
    for (const file of list) {
      const row = {
        n: ++seq, file, name: file.name || 'photo', size: file.size, state: 'queued', progress: 0, note: '',
        error: null, key: '', body: '', go: false, custom: null, used: null, upload: null, task: '', results: [],
        credits: null, started: 0, finished: 0, type: '', newKey: false,
      };
      if (file.size > cfg.max_upload_bytes) {
        reject(row, 'Too large: ' + fmtBytes(file.size) + ', the limit is ' + fmtBytes(cfg.max_upload_bytes) + '.');
      } else if (file.size === 0) {
        reject(row, 'The file is empty.');
      }
      rows.push(row);
      build(row);
      localThumb(row);
      if (row.state === 'queued' && cfg.direct_upload === true) {
        /* S3 mode: the presigned PUT is signed for one content type (as for one photo) */
        row.type = await sniffType(file);
        if (!row.type) reject(row, 'Not a ' + typeList() + ' image (its first bytes are none of these formats).');
        update(row);
      }
    }
    render();
    $('batch').hidden = false;
  }
  function reject(row, why) { row.state = 'rejected'; row.error = { lead: why, detail: 'Nothing was uploaded.' }; }
  function remove(row) {
    if (ACTIVE.has(row.state)) return;
    rows.splice(rows.indexOf(row), 1);
    if (row.thumb) URL.revokeObjectURL(row.thumb);
    row.el.remove();
    render();
    if (!rows.length) $('batch').hidden = true;
  }
  function retry(row) {
    if (row.state !== 'failed') return;
    row.state = 'queued';
    row.error = null;
    row.note = '';
    row.go = true;
    update(row);
    row.el.focus();   /* the Retry button it had is gone */
    render();
    pump();
  }
  /* The request a row sends: its own settings, else the form's, as they are when the row starts. */
  function settingsOf(row) {
    return row.custom || { prompt: $('prompt').value.trim(), aspect: $('aspect').value, resolution: $('resolution').value };
  }

  /* ---------- running ---------- */
  function active() { return rows.filter((r) => ACTIVE.has(r.state)).length; }
  function pump() {
    for (const row of rows) {
      if (active() >= MAX_IN_FLIGHT) break;
      if (row.state === 'queued' && row.go) runRow(row);
    }
    render();
  }
  function generateAll() {
    clearError('queue-error');
    if (cfg.kie_configured === false) return;
    if (cfg.auth_required && !token()) { PPA.app.askToken('Enter the API token to run the queue.'); return; }
    const bad = rows.find((r) => r.state === 'queued' && !promptOk(settingsOf(r).prompt));
    if (bad) {
      showError('queue-error', { lead: 'The prompt of “' + bad.name + '” must be ' + PROMPT_MIN + '–' + PROMPT_MAX + ' characters long.' });
      return;
    }
    for (const r of rows) if (r.state === 'queued') r.go = true;
    pump();
  }
  function promptOk(p) { return p.length >= PROMPT_MIN && p.length <= PROMPT_MAX; }
  function fail(row, info, where) {
    row.state = 'failed';
    row.error = info;
    row.note = '';
    row.finished = Date.now();
    row.newKey = where === 'task';   /* KIE failed the task itself: the same key would only replay it */
  }
  /* Waits out a 429: Retry-After when the server said it, else a growing pause. */
  async function wait429(row, e, n) {
    const secs = e.retryAfter || WAIT_429_S[Math.min(n, WAIT_429_S.length - 1)];
    row.note = 'Rate limited: trying again in ' + secs + ' s…';
    update(row);
    await sleep(secs * 1000);
    row.note = '';
  }
  async function runRow(row) {
    row.state = 'uploading';
    row.started = row.started || Date.now();
    row.finished = 0;
    update(row);
    try {
      if (!row.upload) await uploadRow(row);
      row.state = 'creating';
      update(row);
      await createTask(row);
      await pollRow(row);
    } catch (e) {
      if (e && e.info) fail(row, e.info, e.where);
      else fail(row, describe(e, 'generate'));
      if (e && e.where === 'refused') row.state = 'rejected';
    }
    update(row);
    if (row.task && (row.state === 'done' || row.state === 'failed')) finished(row);
    render();
    pump();
  }
  async function uploadRow(row) {
    const ctl = PPA.uploader((frac) => { row.progress = frac; update(row); }, (text) => { row.note = text; update(row); });
    for (let n = 0; ; n++) {
      try {
        const answer = await PPA.uploadFile(row.file, cfg.direct_upload === true, row.type, ctl);
        row.upload = answer;
        row.progress = 1;
        row.note = '';
        if (!row.thumbOk) setThumb(row, answer.url);
        return;
      } catch (e) {
        if (e.status === 429 && e.code !== 'daily_limit_reached') { await wait429(row, e, n); continue; }
        /* too large, too many pixels, not an image, unreadable: sending it again cannot help */
        const refused = [413, 415, 422].includes(e.status);
        throw Object.assign(new Error('upload'), { info: e.info || describe(e, 'upload'), where: refused ? 'refused' : 'upload' });
      }
    }
  }
  async function createTask(row) {
    const s = settingsOf(row);
    row.used = s;
    const req = {
      input_url: row.upload.public_url || row.upload.url, prompt: s.prompt, aspect_ratio: s.aspect, resolution: s.resolution,
    };
    if (photoName(row.name)) req.photo_name = photoName(row.name);   /* names its result in Download all's ZIP */
    const body = JSON.stringify(req);
    /* one key per request: the same body keeps it (a retry is never a second task), another body or a task
     * KIE failed gets a fresh one */
    if (!row.key || row.body !== body || row.newKey) row.key = newIdempotencyKey();
    row.body = body;
    row.newKey = false;
    for (let n = 0; ; n++) {
      try {
        const answer = await postGenerate(body, row.key, (note) => { row.note = note; update(row); });
        const b = answer.body;
        if (b && b.code !== undefined && Number(b.code) !== 200) {
          throw new ApiError(Number(b.code) || 502, 'kie_error', b.msg || b.message || 'KIE refused the task.');
        }
        const id = b && b.data && b.data.taskId;
        if (typeof id !== 'string' || !id) throw new ApiError(502, 'bad_response', 'The server answered without a task id.');
        row.task = id;
        row.note = '';
        row.state = 'waiting';
        update(row);
        return;
      } catch (e) {
        if (e.status === 429 && e.code !== 'daily_limit_reached') { await wait429(row, e, n); continue; }
        if (e.status === 402 || (e.status === 429 && e.code === 'daily_limit_reached')) pauseQueue(e);
        throw e;
      }
    }
  }
  /* No credits left, or the daily cap: the photos not started yet wait (Generate all goes on later). */
  function pauseQueue(e) {
    for (const r of rows) if (r.state === 'queued') r.go = false;
    showError('queue-error', Object.assign(describe(e, 'generate'), { lead: describe(e, 'generate').lead + ' The queue is paused.' }));
    if (PPA.app) PPA.app.loadCredits();
  }
  async function pollRow(row) {
    let delay = POLL_FIRST_MS;
    const since = Date.now();
    for (;;) {
      await sleep(delay);
      delay = Math.min(POLL_MAX_MS, Math.round(delay * 1.5));
      if (Date.now() - since > POLL_LIMIT_MS) {
        throw Object.assign(new Error('timeout'), {
          info: { lead: 'No result after 15 minutes.', detail: 'The task may still finish: it is in Recent tasks.' },
        });
      }
      let body;
      try {
        body = await api('/status?task_id=' + encodeURIComponent(row.task));
      } catch (e) {
        if (e.status === 401 || e.status === 400 || e.status === 404) throw e;
        const d = describe(e, 'status');
        row.note = d.lead + ' Retrying…';
        update(row);
        continue;
      }
      const d = body && body.data && typeof body.data === 'object' ? body.data : null;
      if (!d) continue;   /* not registered at KIE yet */
      const state = normState(d.state);
      row.note = '';
      if (FINAL.has(state) && d.creditsConsumed !== null && Number.isFinite(Number(d.creditsConsumed))) {
        row.credits = Number(d.creditsConsumed);
      }
      if (state === 'success') {
        row.results = resultUrls(d);
        row.stable = safeUrl(d.stable_url);
        row.state = 'done';
        row.finished = Date.now();
        return;
      }
      if (state === 'fail') {
        const why = (d.failMsg || 'no reason given') + (d.failCode ? ' (code ' + d.failCode + ')' : '');
        throw Object.assign(new Error('fail'), { where: 'task', info: { lead: 'KIE could not generate this image.', detail: 'KIE says: ' + why } });
      }
      if (state !== 'unknown') row.state = state;
      update(row);
    }
  }
  /* A finished row joins Recent tasks (and the balance is asked again). */
  function finished(row) {
    if (!row.task || !PPA.app) return;
    const s = row.used || settingsOf(row);
    PPA.app.rememberTask({
      id: row.task, input: row.upload ? row.upload.url : '', photo: row.name, prompt: s.prompt, aspect: s.aspect,
      resolution: s.resolution, state: row.state === 'done' ? 'success' : 'fail', created: row.started,
      updated: Date.now(), finished: row.finished, results: row.results, stable: row.stable || '',
      credits: row.credits, failMsg: row.error ? row.error.detail || row.error.lead : '', note: '', here: true,
    });
  }

  /* ---------- Download all ---------- */
  async function downloadAll() {
    clearError('queue-error');
    const ids = rows.filter((r) => r.state === 'done' && r.task).map((r) => r.task).slice(0, MAX_ROWS);
    if (!ids.length) return;
    const btn = $('download-all');
    btn.disabled = true;
    btn.textContent = 'Preparing the ZIP…';
    try {
      let res;
      try {
        res = await fetch('/results.zip?tasks=' + ids.map(encodeURIComponent).join(','), { headers: authHeaders(), cache: 'no-store' });
      } catch (e) { throw new ApiError(0, 'network', 'The server could not be reached.'); }
      if (!res.ok) {
        const text = await res.text().catch(() => '');
        throw errorFrom(res.status, parseJson(text), text, res.headers.get('Retry-After'));
      }
      const blob = await res.blob();
      const m = /filename="?([^";]+)"?/i.exec(res.headers.get('Content-Disposition') || '');
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: m ? m[1] : 'studio-results.zip', hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (e) {
      const lead = e.status === 501 ? 'This server cannot make a ZIP of the results (S3 storage): download each one with View, then Download result.'
        : 'The ZIP of the results could not be downloaded.';
      showError('queue-error', Object.assign(describe(e, 'download'), { lead }));
    } finally {
      render();
    }
  }

  /* ---------- rendering ---------- */
  function localThumb(row) {
    /* the file itself when this browser can show it (HEIC and TIFF it mostly cannot), else the server's copy later */
    const url = URL.createObjectURL(row.file);
    row.thumb = url;
    const probe = new Image();
    probe.onload = () => { row.thumbOk = true; row.img.src = url; row.img.hidden = false; };
    probe.src = url;
  }
  function setThumb(row, url) {
    const u = safeUrl(url);
    if (!u) return;
    row.thumbOk = true;
    row.img.src = u;
    row.img.hidden = false;
  }
  /* A row's DOM is built once and updated in place, so an open settings panel or focus stays put. */
  function build(row) {
    const id = 'q' + row.n;
    const nameId = id + '-name';
    row.img = h('img', { class: 'q-thumb', alt: '', hidden: true });
    row.nameEl = h('span', { id: nameId, class: 'q-name', text: row.name });
    row.metaEl = h('span', { class: 'muted small q-meta' });
    row.bar = h('progress', { max: '100', value: '0', 'aria-label': 'Upload of ' + row.name });
    row.badge = h('span', { class: 'badge' });
    row.elapsed = h('span', { class: 'muted small q-elapsed' });
    row.noteEl = h('p', { class: 'muted small q-note' });
    row.errEl = h('p', { class: 'error small q-error', hidden: true });
    row.resultImg = h('img', { class: 'q-thumb q-result', alt: 'Result for ' + row.name, hidden: true });
    row.retryBtn = h('button', { type: 'button', class: 'btn small', text: 'Retry', 'aria-describedby': nameId, hidden: true, onclick: () => retry(row) });
    row.removeBtn = h('button', { type: 'button', class: 'link-btn small', text: 'Remove', 'aria-describedby': nameId, onclick: () => remove(row) });
    row.viewBtn = h('button', { type: 'button', class: 'btn small', text: 'View', 'aria-describedby': nameId, hidden: true,
      onclick: () => PPA.app && PPA.app.showTask(row.task, true) });
    row.settings = buildSettings(row, id);
    row.el = h('li', { class: 'q-row', 'data-row': String(row.n), 'aria-labelledby': nameId, tabindex: '-1' },
      h('span', { class: 'q-thumbs' }, row.img, row.resultImg),
      h('span', { class: 'q-main' },
        h('span', { class: 'q-line' }, row.nameEl, row.badge, row.elapsed),
        row.metaEl, row.bar, row.noteEl, row.errEl, row.settings),
      h('span', { class: 'q-actions' }, row.viewBtn, row.retryBtn, row.removeBtn));
    $('queue').append(row.el);
    update(row);
  }
  /* "Settings" of one row: its own prompt, aspect ratio and resolution, until the row starts. */
  function buildSettings(row, id) {
    const prompt = h('textarea', { id: id + '-prompt', rows: '3', maxlength: String(PROMPT_MAX) });
    const aspect = $('aspect').cloneNode(true);
    aspect.id = id + '-aspect';
    const res = $('resolution').cloneNode(true);
    res.id = id + '-res';
    const box = h('details', { class: 'q-settings' },
      h('summary', { text: 'Settings for this photo' }),
      h('label', { for: prompt.id, text: 'Prompt' }), prompt,
      h('span', { class: 'selects' },
        h('span', {}, h('label', { for: aspect.id, text: 'Aspect ratio' }), aspect),
        h('span', {}, h('label', { for: res.id, text: 'Resolution' }), res)),
      h('button', { type: 'button', class: 'link-btn small', text: 'Use the shared settings',
        onclick: () => { row.custom = null; fill(); update(row); render(); } }));
    /* without settings of its own, the panel shows the shared ones (kept up to date by update) */
    const fill = () => { const s = settingsOf(row); prompt.value = s.prompt; aspect.value = s.aspect; res.value = s.resolution; };
    row.fillSettings = fill;
    const save = () => { row.custom = { prompt: prompt.value.trim(), aspect: aspect.value, resolution: res.value }; update(row); render(); };
    prompt.addEventListener('input', save);
    aspect.addEventListener('change', save);
    res.addEventListener('change', save);
    return box;
  }
  function update(row) {
    const st = row.state;
    row.el.dataset.state = st;
    if (row.task) row.el.dataset.task = row.task;
    if (!row.custom && st === 'queued') row.fillSettings();
    row.badge.textContent = LABEL[st] || st;
    row.badge.className = 'badge q-' + st;
    const s = row.used && st !== 'queued' && st !== 'rejected' ? row.used : settingsOf(row);
    row.metaEl.textContent = fmtBytes(row.size) + ' · ' + (row.custom && !row.used ? 'own settings · ' : '') +
      s.aspect + ' · ' + s.resolution + (Number.isFinite(row.credits) && st === 'done' ? ' · ' + row.credits + (row.credits === 1 ? ' credit' : ' credits') : '');
    const pct = Math.round(Math.max(0, Math.min(1, row.progress)) * 100);
    row.bar.value = pct;
    row.bar.hidden = st === 'rejected';
    row.noteEl.textContent = row.note;
    row.noteEl.hidden = !row.note;
    if (row.error) {
      row.errEl.replaceChildren(h('strong', { text: row.error.lead }));
      if (row.error.detail) row.errEl.append(' ', h('span', { class: 'detail', text: row.error.detail }));
      if (row.error.rid) row.errEl.append(' ', h('span', { class: 'rid', text: '(request ' + row.error.rid + ')' }));
    }
    row.errEl.hidden = !row.error;
    row.retryBtn.hidden = st !== 'failed';
    row.removeBtn.hidden = ACTIVE.has(st);
    row.viewBtn.hidden = st !== 'done';
    const editable = st === 'queued' || st === 'failed';
    row.settings.hidden = !editable;
    if (!editable) row.settings.open = false;
    if (st === 'done' && row.results[0] && row.resultImg.hidden) {
      row.resultImg.src = safeUrl(row.stable || row.results[0]);
      row.resultImg.hidden = false;
    }
    tick(row);
  }
  function tick(row) {
    if (!row.started) { row.elapsed.textContent = ''; return; }
    const end = row.finished || Date.now();
    row.elapsed.textContent = (row.finished ? 'took ' : '') + fmtElapsed(end - row.started);
  }
  /* The totals (a live region: only rewritten when they change), the estimate and the buttons. */
  function render() {
    const count = (pred) => rows.filter(pred).length;
    const done = count((r) => r.state === 'done');
    const failed = count((r) => r.state === 'failed' || r.state === 'rejected');
    const queued = count((r) => r.state === 'queued');
    const running = count((r) => ACTIVE.has(r.state));
    const spent = rows.reduce((sum, r) => sum + (r.state === 'done' && Number.isFinite(r.credits) ? r.credits : 0), 0);
    const n = (v, one, many) => v + ' ' + (v === 1 ? one : many);
    const total = n(rows.length, 'photo', 'photos') + ': ' + [done + ' done', failed + ' failed', queued + ' queued',
      running ? running + ' in progress' : '', n(spent, 'credit', 'credits') + ' spent'].filter(Boolean).join(' · ');
    const tot = $('queue-total');
    if (tot.textContent !== total) tot.textContent = total;
    const t = $('queue-total');
    t.dataset.done = String(done); t.dataset.failed = String(failed); t.dataset.queued = String(queued);
    t.dataset.spent = String(spent);
    renderEstimate();
    const waiting = rows.filter((r) => r.state === 'queued' && !r.go).length;
    const all = $('generate-all');
    all.disabled = !waiting || cfg.kie_configured === false;
    all.textContent = waiting && waiting < queued + running + done + failed && rows.some((r) => r.go || r.started)
      ? 'Generate ' + n(waiting, 'more photo', 'more photos') : 'Generate all';
    const dl = $('download-all');
    dl.disabled = !done;
    dl.textContent = done ? 'Download all (' + n(done, 'result', 'results') + ', ZIP)' : 'Download all';
  }
  /* "Estimated: 6 photos × 5 credits = 30 credits (balance 312)", from GET /credits' price per image. */
  function renderEstimate() {
    const el = $('queue-estimate');
    const todo = rows.filter((r) => r.state === 'queued' && !r.go);
    const c = PPA.app ? PPA.app.credits() : null;
    if (!todo.length) { el.textContent = ''; el.hidden = true; return; }
    el.hidden = false;
    const price = (res) => (c && c.price && Number(c.price[res]) > 0 ? Number(c.price[res]) : 0);
    const byRes = new Map();
    for (const r of todo) { const res = settingsOf(r).resolution; byRes.set(res, (byRes.get(res) || 0) + 1); }
    if ([...byRes.keys()].some((res) => !price(res))) {
      el.textContent = 'Estimated cost: unknown (the server does not know the price per image).';
      el.dataset.estimate = '';
      return;
    }
    let sum = 0;
    const parts = [];
    for (const [res, k] of byRes) { sum += k * price(res); parts.push(k + ' × ' + price(res) + ' credits (' + res + ')'); }
    const bal = c && Number.isFinite(c.balance) ? ' · balance ' + c.balance.toLocaleString() + ' credits' : '';
    el.textContent = 'Estimated cost: ' + parts.join(' + ') + ' = ' + sum.toLocaleString() + ' credits' + bal + '.';
    el.dataset.estimate = String(sum);
    el.classList.toggle('low', Boolean(c && Number.isFinite(c.balance) && c.balance < sum));
  }
  function clearFinished() {
    for (const r of rows.slice()) if (r.state === 'done' || r.state === 'rejected') remove(r);
  }

  function wire() {
    $('generate-all').addEventListener('click', generateAll);
    $('download-all').addEventListener('click', downloadAll);
    $('clear-finished').addEventListener('click', clearFinished);
    /* the shared settings show in every row that has no settings of its own */
    const refresh = () => { for (const r of rows) if (!r.custom && r.state === 'queued') update(r); render(); };
    $('prompt').addEventListener('input', refresh);
    $('aspect').addEventListener('change', refresh);
    $('resolution').addEventListener('change', refresh);
    document.addEventListener('ppa:credits', () => { if (rows.length) renderEstimate(); });
    setInterval(() => { for (const r of rows) if (ACTIVE.has(r.state)) tick(r); }, 1000);
  }
  wire();

  PPA.batch = { add, size: () => rows.length, MAX_IN_FLIGHT };
}(window.PPA));
