/* Product Photo Studio: the page for one photo (upload -> generate -> poll -> result), its task history and
 * the wiring. Helpers and the API client are core.js, the upload send.js, /config and the notices setup.js, the
 * balance credits.js, the queue of many photos batch.js (all on window.PPA). Plain JS, no build step, CSP-safe. */
'use strict';
(function () {
  const { balance } = window.PPA;
  const loadCredits = balance.load;
  const creditsAfterTask = balance.afterTask;
  const {
    $, h, fmtBytes, fmtElapsed, fmtAge, fmtWhen, safeUrl, token, setToken, authHeaders, typeList, ApiError, parseJson,
    errorFrom, api, describe, showError, clearError, sniffType, sizeNote, newIdempotencyKey, postGenerate,
    photoName, normState, resultUrls, uploader, uploadFile, FINAL, STATE_LABEL, PROMPT_MIN, PROMPT_MAX, cfg, CANCELLED,
  } = window.PPA;
  const STORE_KEY = 'ppa.tasks.v1';       /* the list as last shown: the fallback when GET /tasks is unavailable */
  const CLEARED_KEY = 'ppa.tasks.cleared'; /* "Clear list" with a server list: hide tasks created up to then */
  const MAX_TASKS = 20;
  const POLL_FIRST_MS = 2000;
  const POLL_MAX_MS = 10000;
  const POLL_FACTOR = 1.5;
  const POLL_LIMIT_MS = 15 * 60 * 1000;
  const defaultPrompt = $('prompt').value;
  let tasks = loadTasks();
  let upload = null;        /* server answer of the last successful upload */
  let uploadCtl = null;     /* in-flight upload (PPA.uploader) */
  let uploadSeq = 0;        /* numbers uploads so that answers for a replaced one are ignored */
  let pickSeq = 0;          /* same for the asynchronous checks of a picked file */
  let cfgLoaded = false;
  let configLoaded = null;
  const configReady = new Promise((resolve) => { configLoaded = resolve; });
  let previewObjectUrl = null;
  let pendingFile = null;   /* a file picked while the token was missing */
  let generating = false;
  let newArmed = false;      /* "New generation" was clicked: the next click starts another task */
  let currentId = null;
  const pollers = new Map(); /* task id -> timeout handle */
  const startedHere = new Set(); /* tasks this page load created (the server's list may not show them yet) */
  let historySource = 'pending'; /* 'server' once GET /tasks answered, 'local' when it could not */
  let genInfo = '';          /* a note about the last Generate click (e.g. a replayed answer) */

  /* ---------- auth ---------- */
  function askToken(msg) {
    $('auth-msg').textContent = msg + ' It is kept only for this browser tab (sessionStorage).';
    $('auth-form').hidden = false;
    $('auth-token').value = '';
    $('auth-token').focus();
    updateGenerate();
  }
  function onUnauthorized() {
    setToken('');
    cfg.auth_required = true;
    askToken('The API token was missing or rejected.');
  }
  function saveToken(ev) {
    ev.preventDefault();
    const t = $('auth-token').value.trim();
    if (!t) { $('auth-token').focus(); return; }
    setToken(t);
    $('auth-form').hidden = true;
    updateGenerate();
    resumePolling();
    loadHistory();
    loadCredits();
    if (pendingFile) { const f = pendingFile; pendingFile = null; pickFile(f); }
  }

  /* ---------- file selection and upload ---------- */
  function setPreview(url) {
    const img = $('preview');
    if (url) { img.src = url; img.hidden = false; $('drop-empty').hidden = true; $('drop').classList.add('has-image'); }
    else { img.removeAttribute('src'); img.hidden = true; $('drop-empty').hidden = false; $('drop').classList.remove('has-image'); }
    $('drop-wait').hidden = true;
  }
  function dropRevoke() {
    if (previewObjectUrl) { URL.revokeObjectURL(previewObjectUrl); previewObjectUrl = null; }
  }
  /* While uploading: the picked file itself when this browser can show it (HEIC and TIFF it mostly cannot),
   * else a short "preview after upload" note. The server's copy replaces it afterwards. */
  function localPreview(file, seq) {
    dropRevoke();
    setPreview(null);
    $('drop-empty').hidden = true;
    $('drop-wait').hidden = false;
    const url = URL.createObjectURL(file);
    previewObjectUrl = url;
    const probe = new Image();
    probe.onload = () => { if (seq === uploadSeq && previewObjectUrl === url) setPreview(url); };
    probe.src = url;
  }
  /* Shows the server's copy (a JPEG or PNG every browser can show) once it has loaded; a failure is a
   * warning, since KIE has to fetch that same URL. */
  function showStoredPreview(url, seq) {
    const probe = new Image();
    probe.onload = () => {
      if (seq !== uploadSeq) return;
      setPreview(url);
      dropRevoke();
    };
    probe.onerror = () => {
      if (seq !== uploadSeq) return;
      $('upload-status').textContent = 'Uploaded, but the stored copy could not be read back: KIE may not be able to fetch it either.';
    };
    probe.src = safeUrl(url);
  }
  function setProgress(frac, text) {
    const pct = Math.max(0, Math.min(100, Math.round(frac * 100)));
    $('upload-progress').value = pct;
    $('upload-pct').textContent = pct + '%';
    if (text !== undefined) $('upload-status').textContent = text;
  }
  /* One photo is the single flow below; several (or any once the queue has rows) go to the queue (batch.js). */
  function pickFiles(files) {
    if (!files.length) return;
    if (files.length > 1 || window.PPA.batch.size() > 0) {
      clearError('upload-error');
      window.PPA.batch.add(files).then(updateGenerate);
      $('batch').scrollIntoView({ behavior: 'smooth', block: 'start' });
      return;
    }
    pickFile(files[0]);
  }
  async function pickFile(file) {
    clearError('upload-error');
    clearError('gen-error');
    if (!file) return;
    if (!cfgLoaded) await configReady;
    const direct = cfg.direct_upload === true;
    if (file.size > cfg.max_upload_bytes) {
      showError('upload-error', {
        lead: '“' + file.name + '” is too large: ' + fmtBytes(file.size) + ', the limit is ' + fmtBytes(cfg.max_upload_bytes) + '.',
        detail: 'Resize or compress the photo and try again. Nothing was uploaded.',
      });
      return;
    }
    if (file.size === 0) { showError('upload-error', { lead: '“' + file.name + '” is empty.' }); return; }
    if (cfg.auth_required && !token()) { pendingFile = file; askToken('Enter the API token to upload.'); return; }
    /* Local mode: the server detects the type from the content and says what to do with anything else.
     * S3 mode: the presigned PUT is signed for one content type, so the page detects it here. */
    let contentType = '';
    if (direct) {
      const seq = ++pickSeq;
      contentType = await sniffType(file);
      if (seq !== pickSeq) return;   /* another file was picked meanwhile */
      if (!contentType) {
        showError('upload-error', {
          lead: '“' + file.name + '” is not a ' + typeList() + ' image.',
          detail: 'Its first bytes are not those of any of these formats (a renamed file?). Save or export it as JPEG and try again. Nothing was uploaded.',
        });
        return;
      }
    }
    runUpload(file, direct, contentType);
  }
  function uploadFailed() {
    $('upload-box').className = 'upload failed';
    $('upload-status').textContent = 'Upload failed.';
    setPreview(null);
    dropRevoke();
  }
  /* Cancels whatever upload is running and returns the number that identifies the new one. */
  function beginUpload(file, status) {
    if (uploadCtl) uploadCtl.cancel();
    uploadCtl = uploader(setProgress, (text) => { $('upload-status').textContent = text; });
    upload = null;
    updateGenerate();
    const box = $('upload-box');
    box.hidden = false;
    box.className = 'upload busy';
    $('file-name').textContent = file.name + ' · ' + fmtBytes(file.size);
    setProgress(0, status);
    return ++uploadSeq;
  }
  async function runUpload(file, direct, contentType) {
    const seq = beginUpload(file, direct ? 'Preparing the upload…' : 'Uploading…');
    localPreview(file, seq);
    try {
      const answer = await uploadFile(file, direct, contentType, uploadCtl);
      if (seq !== uploadSeq) return;
      upload = Object.assign({}, answer, { photo: file.name });
      const note = sizeNote(answer);
      setProgress(1, (direct ? 'Uploaded to S3 ✓ ' : 'Uploaded ✓ ') + (note ? note + '. ' : '') + 'Ready to generate.');
      $('upload-box').className = 'upload done';
      updateGenerate();
      showStoredPreview(answer.url, seq);
      if (historySource !== 'server') loadHistory();
      if (!window.PPA.balance.get()) loadCredits();
    } catch (e) {
      if (seq !== uploadSeq || e === CANCELLED) return;
      uploadFailed();
      if (e.status === 401) pendingFile = file;   /* retried once a token is entered */
      showError('upload-error', e.info || describe(e, 'upload'));
    }
  }
  /* ---------- prompt and generate ---------- */
  function promptState() {
    const v = $('prompt').value.trim();
    return { v, ok: v.length >= PROMPT_MIN && v.length <= PROMPT_MAX };
  }
  function updatePromptMeta() {
    const { v, ok } = promptState();
    const c = $('prompt-count');
    c.textContent = v.length + ' / ' + PROMPT_MAX + (v.length < PROMPT_MIN ? ' · at least ' + PROMPT_MIN + ' characters' : '');
    c.classList.toggle('bad', !ok);
    $('prompt').setAttribute('aria-invalid', ok ? 'false' : 'true');
    updateGenerate();
  }
  /* A task of this browser is still running (the server's list also has other browsers' tasks: those do not
   * make the button ask twice). */
  function inFlight() { return tasks.some((t) => mine(t) && !FINAL.has(t.state)); }
  /* Started in this browser: tasks that came only from the server's list have here === false (entries an
   * older page version stored have no flag: they were all this browser's). */
  function mine(t) { return t.here !== false; }
  /* Generate is off from the click until the task id arrives. While a task runs, the button first offers
   * "New generation"; only the next click starts (and pays for) another task, so a repeated click cannot. */
  function updateGenerate() {
    const btn = $('generate');
    const authMissing = cfg.auth_required && !token();
    const noKie = cfg.kie_configured === false;
    const offer = !generating && upload && inFlight() && !newArmed;
    btn.disabled = noKie || generating || !upload || !promptState().ok || authMissing;
    btn.textContent = noKie ? 'Generation is switched off' : generating ? 'Starting…'
      : !upload ? (window.PPA.batch.size() ? 'One photo alone: pick just one' : 'Upload a photo to start') : offer ? 'New generation' : 'Generate studio shot';
    $('gen-note').textContent = noKie ? 'The server has no KIE API key (see the notice at the top).'
      : offer ? 'A task is still running; its result appears below.'
        : newArmed && inFlight() ? 'The running task goes on; this starts another one, charged separately.' : genInfo;
  }
  async function generate(ev) {
    ev.preventDefault();
    if (generating || cfg.kie_configured === false) return;
    clearError('gen-error');
    if (inFlight() && !newArmed && upload) { newArmed = true; updateGenerate(); return; }
    const { v, ok } = promptState();
    if (!ok) { showError('gen-error', { lead: 'The prompt must be ' + PROMPT_MIN + '–' + PROMPT_MAX + ' characters long.' }); $('prompt').focus(); return; }
    if (!upload) { showError('gen-error', { lead: 'Upload a product photo first.' }); return; }
    generating = true;
    newArmed = false;
    genInfo = '';
    updateGenerate();
    const req = {
      input_url: upload.public_url || upload.url,
      prompt: v,
      aspect_ratio: $('aspect').value,
      resolution: $('resolution').value,
    };
    if (photoName(upload.photo)) req.photo_name = photoName(upload.photo);   /* the task record keeps it (/results.zip) */
    try {
      const answer = await postGenerate(JSON.stringify(req), newIdempotencyKey(), (note) => { genInfo = note; updateGenerate(); });
      const body = answer.body;
      genInfo = answer.replayed
        ? 'The server had already received this request: it answered with the same task (charged once).' : '';
      if (body && body.code !== undefined && Number(body.code) !== 200) {
        throw new ApiError(Number(body.code) || 502, 'kie_error', body.msg || body.message || 'KIE refused the task.');
      }
      const id = body && body.data && body.data.taskId;
      if (typeof id !== 'string' || !id) throw new ApiError(502, 'bad_response', 'The server answered without a task id.');
      const now = Date.now();
      const task = getTask(id) || {
        id, input: upload.url, photo: upload.photo || '', prompt: v, aspect: req.aspect_ratio, resolution: req.resolution,
        state: 'waiting', created: now, updated: now, results: [], failMsg: '', note: '', here: true,
      };
      task.here = true;
      tasks = [task].concat(tasks.filter((t) => t.id !== id)).slice(0, MAX_TASKS);
      startedHere.add(id);
      saveTasks();
      showTask(id, true);
      renderRecent();
      startPolling(id, POLL_FIRST_MS);
    } catch (e) {
      genInfo = '';
      showError('gen-error', describe(e, 'generate'));
      if (e.status === 402 || e.status === 429) loadCredits();
    } finally {
      generating = false;
      updateGenerate();
    }
  }

  /* ---------- task store ---------- */
  function loadTasks() {
    try {
      const a = JSON.parse(localStorage.getItem(STORE_KEY) || '[]');
      return Array.isArray(a) ? a.filter((t) => t && typeof t.id === 'string' && t.id).slice(0, MAX_TASKS) : [];
    } catch (e) { return []; }
  }
  function saveTasks() {
    try { localStorage.setItem(STORE_KEY, JSON.stringify(tasks.slice(0, MAX_TASKS))); } catch (e) { /* quota / private mode */ }
  }
  function clearedBefore() {
    try { return Number(localStorage.getItem(CLEARED_KEY)) || 0; } catch (e) { return 0; }
  }
  /* A TaskRecord of GET /tasks as the page's task (null when it has no id). */
  function fromRecord(r) {
    if (!r || typeof r !== 'object' || typeof r.id !== 'string' || !r.id) return null;
    const time = (v) => { const n = Date.parse(v); return Number.isFinite(n) ? n : 0; };
    const state = normState(r.state);
    const urls = (Array.isArray(r.result_urls) ? r.result_urls : []).map(safeUrl).filter(Boolean);
    const stable = safeUrl(r.stable_url);
    const inputs = Array.isArray(r.input_urls) ? r.input_urls.filter((u) => typeof u === 'string') : [];
    const created = time(r.created_at) || Date.now();
    const updated = time(r.updated_at) || created;
    const t = {
      id: r.id, input: safeUrl(r.thumbnail_url) ? r.thumbnail_url : (inputs[0] || ''),
      photo: typeof r.photo_name === 'string' ? r.photo_name : '',
      prompt: typeof r.prompt === 'string' ? r.prompt : '', aspect: r.aspect_ratio || '', resolution: r.resolution || '',
      state: state === 'unknown' ? 'waiting' : state, created, updated,
      results: state === 'success' ? (stable ? [stable].concat(urls.slice(1)) : urls) : [], stable,
      credits: Number.isFinite(r.credits) ? r.credits : null,
      failMsg: r.fail_message || '', failCode: r.fail_code ? String(r.fail_code) : '', note: '', here: false,
    };
    /* finished about when the record last changed (cost_time is not used: its unit is not documented — KIE's
     * example reads like seconds, the simulator reports milliseconds) */
    if (FINAL.has(t.state)) t.finished = updated;
    return t;
  }
  /* The server's list (newest first) with what this browser knows of the same tasks: the photo's name,
   * and a state it has already seen final while the server's record still lags. Tasks this page
   * started that the list does not show yet stay in front. */
  function mergeServer(records) {
    const cleared = clearedBefore();
    const local = new Map(tasks.map((t) => [t.id, t]));
    const list = records.map(fromRecord).filter((t) => t && t.created > cleared).map((srv) => {
      const known = local.get(srv.id);
      if (!known) return srv;
      const keep = FINAL.has(known.state) && !FINAL.has(srv.state);
      const merged = Object.assign({}, srv, keep ? {
        state: known.state, results: known.results, failMsg: known.failMsg, failCode: known.failCode,
        finished: known.finished, took: known.took,
      } : {});
      merged.photo = known.photo || srv.photo || '';
      merged.here = known.here !== false;
      merged.input = known.input || srv.input;
      merged.stable = srv.stable || known.stable || '';
      if (!merged.results.length && known.results && known.results.length) merged.results = known.results;
      if (merged.credits === null && Number.isFinite(known.credits)) merged.credits = known.credits;
      return merged;
    });
    const listed = new Set(list.map((t) => t.id));
    const fresh = tasks.filter((t) => !listed.has(t.id) && startedHere.has(t.id));
    return fresh.concat(list).slice(0, MAX_TASKS);
  }
  /* Recent tasks from GET /tasks, so that any browser (a new one, another profile, after a restart) sees them;
   * the localStorage copy stays the list when the server does not have /tasks (older) or it fails. */
  async function loadHistory() {
    if (cfg.auth_required && !token()) return;
    let body;
    try {
      body = await api('/tasks?limit=' + MAX_TASKS, { background: true });
    } catch (e) {
      historySource = 'local';
      renderRecent();
      return;
    }
    if (!body || !Array.isArray(body.tasks)) { historySource = 'local'; renderRecent(); return; }
    historySource = 'server';
    tasks = mergeServer(body.tasks);
    saveTasks();
    if (!getTask(currentId)) currentId = null;
    if (!currentId) currentId = (tasks.find(mine) || {}).id || null;   /* another browser's: shown when clicked */
    renderTask();
    renderRecent();
    updateGenerate();
    resumePolling();
  }
  function getTask(id) { return tasks.find((t) => t.id === id) || null; }
  /* A task the queue ran (final already): listed in Recent tasks like one started here. */
  function rememberTask(t) {
    const known = getTask(t.id);
    tasks = [Object.assign({}, known || {}, t)].concat(tasks.filter((x) => x.id !== t.id)).slice(0, MAX_TASKS);
    startedHere.add(t.id);
    saveTasks();
    renderRecent();
    creditsAfterTask();
  }
  function updateTask(id, patch) {
    const t = getTask(id);
    if (!t) return null;
    const wasFinal = FINAL.has(t.state);
    Object.assign(t, patch, { updated: Date.now() });
    if (!wasFinal && FINAL.has(t.state)) creditsAfterTask();
    saveTasks();
    if (id === currentId) renderTask();
    renderRecent();
    updateGenerate();
    return t;
  }

  /* ---------- polling ---------- */
  function startPolling(id, delay) {
    if (pollers.has(id)) return;
    pollers.set(id, setTimeout(() => pollOnce(id, delay, false), delay));
  }
  function stopPolling(id) {
    clearTimeout(pollers.get(id));
    pollers.delete(id);
  }
  function resumePolling() {
    for (const t of tasks) if (!FINAL.has(t.state)) startPolling(t.id, 0);
  }
  async function pollOnce(id, delay, single) {
    if (!single) pollers.delete(id);
    const t = getTask(id);
    if (!t || (!single && FINAL.has(t.state))) return;
    if (!single && Date.now() - t.created > POLL_LIMIT_MS) {
      updateTask(id, { state: 'timeout', note: '', failMsg: 'Stopped checking after 15 minutes. The task may still finish at KIE; use “Check again”.' });
      return;
    }
    if (cfg.auth_required && !token()) { updateTask(id, { note: 'Paused until the API token is entered.' }); return; }
    const next = Math.min(POLL_MAX_MS, Math.max(POLL_FIRST_MS, Math.round(delay * POLL_FACTOR)));
    try {
      const body = await api('/status?task_id=' + encodeURIComponent(id));
      const d = body && body.data && typeof body.data === 'object' ? body.data : null;
      if (!d) {
        /* e.g. KIE's {"code":422,"msg":"recordInfo is null"} right after creation: not ready yet */
        updateTask(id, { note: 'Waiting for KIE to register the task…' });
      } else {
        const state = normState(d.state);
        const patch = { state: state === 'unknown' ? t.state : state, note: '' };
        if (single && !FINAL.has(patch.state)) { patch.state = 'timeout'; patch.note = 'KIE still reports: ' + (d.state || 'unknown'); }
        if (state === 'success') { patch.results = resultUrls(d); patch.finished = Number(d.completeTime) || Date.now(); }
        if (safeUrl(d.stable_url)) patch.stable = safeUrl(d.stable_url);
        if (FINAL.has(patch.state) && d.creditsConsumed !== null && Number.isFinite(Number(d.creditsConsumed))) {
          patch.credits = Number(d.creditsConsumed);
        }
        if (state === 'fail') {
          patch.failMsg = d.failMsg || body.msg || body.message || 'Generation failed.';
          patch.failCode = d.failCode ? String(d.failCode) : '';
          patch.finished = Number(d.completeTime) || Date.now();
        }
        if (patch.finished && patch.finished < t.created) patch.finished = Date.now();
        /* duration on KIE's own clock when it reports both ends (the browser clock may differ) */
        const kc = Number(d.createTime);
        const kd = Number(d.completeTime);
        if (FINAL.has(patch.state) && kc > 0 && kd >= kc) patch.took = kd - kc;
        updateTask(id, patch);
      }
    } catch (e) {
      if (e.status === 401) { updateTask(id, { note: 'Paused until the API token is entered.' }); return; }
      if (e.status === 400 || e.status === 404) {
        updateTask(id, { state: 'fail', failMsg: e.message, failCode: String(e.status), finished: Date.now(), note: '' });
        return;
      }
      const d = describe(e, 'status');
      updateTask(id, { note: d.lead + (d.detail ? ' (' + d.detail + ')' : '') + ' Retrying…' });
    }
    const after = getTask(id);
    if (!single && after && !FINAL.has(after.state)) startPolling(id, next);
  }

  /* ---------- rendering ---------- */
  function stepIndex(state) {
    return { waiting: 0, queuing: 1, generating: 2, success: 3, fail: 3, timeout: 3 }[state] ?? 0;
  }
  function setImg(img, url) {
    const u = safeUrl(url);
    if (!u) { img.removeAttribute('src'); return; }
    if (img.getAttribute('src') !== u) img.src = u;
  }
  function showTask(id, focus) {
    currentId = id;
    renderTask();
    renderRecent();
    if (focus) $('task').scrollIntoView({ behavior: 'smooth', block: 'start' });
  }
  function renderTask() {
    const t = getTask(currentId);
    const sec = $('task');
    if (!t) { sec.hidden = true; return; }
    sec.hidden = false;
    const badge = $('task-state');
    badge.textContent = STATE_LABEL[t.state] || t.state;
    badge.className = 'badge s-' + t.state;
    const idx = stepIndex(t.state);
    document.querySelectorAll('#task-steps li').forEach((li, i) => {
      li.className = i < idx || (i === idx && FINAL.has(t.state)) ? 'done' : (i === idx ? 'active' : '');
      if (i === 3) li.textContent = STATE_LABEL[FINAL.has(t.state) ? t.state : 'success'];
      if (t.state === 'fail' && i === 3) li.className = 'failed';
    });
    renderElapsed();
    $('task-prompt').textContent = t.prompt || '';
    $('task-info').replaceChildren(
      'Task ', h('code', { text: t.id }), ' · ' + (t.aspect || '?') + ' · ' + (t.resolution || '?') +
      ' · started ' + fmtWhen(t.created) +
      (Number.isFinite(t.credits) ? ' · ' + t.credits + (t.credits === 1 ? ' credit' : ' credits') : '') +
      (t.note ? ' · ' + t.note : ''));
    if (t.state === 'fail' || t.state === 'timeout') {
      const kie = t.state === 'fail';
      showError('task-error', {
        lead: kie ? 'KIE could not generate this image.' : 'No result yet.',
        detail: (kie ? 'KIE says: ' : '') + (t.failMsg || 'no reason given') + (t.failCode ? ' (code ' + t.failCode + ')' : ''),
      });
    } else clearError('task-error');
    renderResult(t);
  }
  function renderElapsed() {
    const t = getTask(currentId);
    if (!t) return;
    const done = FINAL.has(t.state);
    const ms = done && Number.isFinite(t.took) ? t.took : (done ? (t.finished || t.updated) : Date.now()) - t.created;
    $('task-elapsed').textContent = (done ? 'took ' : 'elapsed ') + fmtElapsed(ms);
  }
  function renderResult(t) {
    const box = $('result');
    const actions = $('result-actions');
    if (t.state !== 'success' || !t.results || !t.results.length) {
      actions.replaceChildren();
      delete actions.dataset.key;
      box.hidden = t.state !== 'timeout';
      if (t.state === 'timeout') {
        $('compare').hidden = true; $('side').hidden = true;
        box.querySelector('.view-toggle').hidden = true;
        actions.replaceChildren(h('button', { type: 'button', class: 'btn', text: 'Check again', onclick: () => recheck(t.id) }));
      } else if (t.state === 'success') {
        showError('task-error', { lead: 'The task succeeded but returned no image URL.' });
      }
      return;
    }
    box.hidden = false;
    box.querySelector('.view-toggle').hidden = false;
    applyView();
    const main = t.results[0];
    setImg($('result-img'), main);
    setImg($('side-after'), main);
    setImg($('before-img'), t.input);
    setImg($('side-before'), t.input);
    // "Download result" is our stable copy (same origin, kept by the server, named after the photo),
    // not KIE's expiring URL in a new tab; further results of one task link to KIE's URLs
    const stem = (t.photo || '').replace(/\.[^.]*$/, '');
    const links = t.results.map((u, i) => i === 0
      ? h('a', {
        class: 'btn primary', href: downloadHref(t),
        download: (stem || t.id) + '-studio', text: t.results.length > 1 ? 'Download result 1' : 'Download result',
        onclick: (e) => { if (cfg.auth_required && !t.stable) { e.preventDefault(); downloadWithToken(e.currentTarget); } },
      })
      : h('a', { class: 'btn primary', href: u, download: 'studio-shot-' + (i + 1), target: '_blank', rel: 'noopener',
        text: 'Download result ' + (i + 1) }));
    links.push(h('a', { class: 'btn', href: main, target: '_blank', rel: 'noopener', text: 'Open full size' }));
    const keyNow = t.results.concat(t.stable || '', cfg.auth_required ? 'auth' : '').join('\n');
    if (actions.dataset.key !== keyNow) { actions.replaceChildren(...links); actions.dataset.key = keyNow; }
  }
  /* /results needs the API token like /status (an <a> cannot send it), or the signed stable_url the server gives
   * once it keeps the result: with a token, the link is that signed URL when known, else a click fetches the
   * file with the token and saves it from memory. */
  function downloadHref(t) {
    const q = 'download=1&name=' + encodeURIComponent(t.photo || '');
    if (cfg.auth_required && t.stable) return t.stable + (t.stable.includes('?') ? '&' : '?') + q;
    return '/results/' + encodeURIComponent(t.id) + '?' + q;
  }
  async function downloadWithToken(a) {
    try {
      let res;
      try { res = await fetch(a.href, { headers: authHeaders(), cache: 'no-store' }); } catch (e) {
        throw new ApiError(0, 'network', 'The server could not be reached.');
      }
      if (!res.ok) {
        const text = await res.text().catch(() => '');
        throw errorFrom(res.status, parseJson(text), text, res.headers.get('Retry-After'));
      }
      const blob = await res.blob();
      const m = /filename="?([^";]+)"?/i.exec(res.headers.get('Content-Disposition') || '');
      const url = URL.createObjectURL(blob);
      const save = h('a', { href: url, download: m ? m[1] : a.getAttribute('download') });
      document.body.append(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (e) {
      showError('task-error', Object.assign(describe(e, 'download'), { lead: 'The result could not be downloaded.' }));
    }
  }
  function recheck(id) { if (getTask(id)) pollOnce(id, POLL_MAX_MS, true); }
  let view = 'slider';
  function applyView() {
    $('compare').hidden = view !== 'slider';
    $('side').hidden = view !== 'side';
    $('view-slider').setAttribute('aria-pressed', String(view === 'slider'));
    $('view-side').setAttribute('aria-pressed', String(view === 'side'));
  }
  function setSplit(v) { $('compare').style.setProperty('--pos', v + '%'); }

  /* Prompts that extend the default one differ only at the end: name the default and show what was added. */
  function promptLabel(p) {
    if (!p) return '(no prompt)';
    const base = String($('prompt').dataset.default || defaultPrompt).trim().replace(/[.\s]+$/, '');
    if (!base || !p.startsWith(base)) return p;
    const rest = p.slice(base.length).replace(/^[\s.,;:]+/, '');
    return rest ? 'Default prompt + “' + rest + '”' : 'Default prompt';
  }
  function renderRecent() {
    const list = $('recent');
    $('recent-empty').hidden = tasks.length > 0;
    $('clear-history').hidden = tasks.length === 0;
    const src = $('recent-source');
    src.dataset.source = historySource;
    src.textContent = { server: 'From the server: the same list in every browser.',
      local: 'Kept in this browser only (the server\'s task list is not available).' }[historySource] || '';
    const items = tasks.map((t) => {
      /* the task's own result first (several tasks often share one photo), its input photo beside it */
      const resUrl = t.state === 'success' && t.results && t.results[0] ? safeUrl(t.results[0]) : '';
      const inUrl = safeUrl(t.input);
      const thumb = (u, what) => h('img', { src: u, alt: '', loading: 'lazy', 'data-thumb': what });
      const thumbs = [resUrl ? thumb(resUrl, 'result') : null, inUrl ? thumb(inUrl, 'input') : null].filter(Boolean);
      const btn = h('button', {
        type: 'button', class: 'recent-item' + (t.id === currentId ? ' current' : ''),
        'aria-current': t.id === currentId ? 'true' : null, onclick: () => showTask(t.id, true),
      },
      h('span', { class: 'thumbs' }, ...(thumbs.length ? thumbs : [h('span', { class: 'thumb-missing' })])),
      h('span', { class: 'recent-text' },
        h('span', { class: 'recent-prompt', text: promptLabel(t.prompt), title: t.prompt || null }),
        h('span', {
          class: 'muted small recent-meta', title: fmtWhen(t.created),
          text: [fmtAge(t.created), t.aspect, t.resolution,
            Number.isFinite(t.credits) ? t.credits + (t.credits === 1 ? ' credit' : ' credits') : ''].filter(Boolean).join(' · '),
        })),
      h('span', { class: 'badge s-' + t.state, text: STATE_LABEL[t.state] || t.state }));
      return h('li', { 'data-task': t.id }, btn);
    });
    list.replaceChildren(...items);
  }

  /* ---------- wiring ---------- */
  function wire() {
    const drop = $('drop');
    const input = $('file');
    drop.addEventListener('click', () => input.click());
    input.addEventListener('change', () => { const fs = Array.from(input.files || []); input.value = ''; pickFiles(fs); });
    ['dragenter', 'dragover'].forEach((type) => drop.addEventListener(type, (e) => {
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
      drop.classList.add('dragging');
    }));
    ['dragleave', 'dragend'].forEach((type) => drop.addEventListener(type, () => drop.classList.remove('dragging')));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('dragging');
      pickFiles(Array.from((e.dataTransfer && e.dataTransfer.files) || []));
    });
    /* a file dropped next to the zone must not navigate away from the page */
    window.addEventListener('dragover', (e) => e.preventDefault());
    window.addEventListener('drop', (e) => e.preventDefault());
    document.addEventListener('paste', (e) => {
      const items = e.clipboardData ? Array.from(e.clipboardData.files || []) : [];
      const f = items.find((x) => /^image\//.test(x.type));
      if (f) { e.preventDefault(); pickFiles([f]); }
    });
    $('prompt').addEventListener('input', updatePromptMeta);
    $('prompt-reset').addEventListener('click', () => {
      $('prompt').value = $('prompt').dataset.default || defaultPrompt;
      updatePromptMeta();
      $('prompt').focus();
    });
    $('gen-form').addEventListener('submit', generate);
    $('auth-form').addEventListener('submit', saveToken);
    $('cmp-range').addEventListener('input', (e) => setSplit(e.target.value));
    $('view-slider').addEventListener('click', () => { view = 'slider'; applyView(); });
    $('view-side').addEventListener('click', () => { view = 'side'; applyView(); });
    $('result-img').addEventListener('load', (e) => {
      const img = e.target;
      /* one frame of the result's shape for both views; each image is fitted into it (object-fit: contain) */
      if (img.naturalWidth && img.naturalHeight) $('result').style.setProperty('--ratio', img.naturalWidth + ' / ' + img.naturalHeight);
    });
    $('result-img').addEventListener('error', () => {
      if ($('result-img').getAttribute('src')) {
        showError('task-error', { lead: 'The result image could not be loaded.', detail: 'KIE result links expire after a while.' });
      }
    });
    $('clear-history').addEventListener('click', () => {
      for (const id of Array.from(pollers.keys())) stopPolling(id);
      /* the server keeps its list: hide, in this browser, what was created up to the newest task shown */
      const newest = Math.max(clearedBefore(), ...tasks.map((t) => t.created || 0));
      try { localStorage.setItem(CLEARED_KEY, String(newest)); } catch (e) { /* private mode */ }
      tasks = [];
      currentId = null;
      saveTasks();
      renderTask();
      renderRecent();
      updateGenerate();
    });
    setSplit(50);
    setInterval(() => { if (currentId) renderElapsed(); }, 1000);
    setInterval(renderRecent, 30000);   /* the ages */
  }

  async function init() {
    window.PPA.hooks.onUnauthorized = onUnauthorized;
    window.PPA.app = { credits: window.PPA.balance.get, rememberTask, showTask, askToken, loadCredits };
    wire();
    updatePromptMeta();
    renderRecent();
    const last = tasks.find(mine);
    if (last) showTask(last.id, false);
    try { await window.PPA.loadConfig(askToken); } finally { cfgLoaded = true; configLoaded(); }
    updateGenerate();
    loadCredits();
    await loadHistory();
    resumePolling();
  }
  init();
}());
