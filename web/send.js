/* Product Photo Studio: sending one photo to the server, the way GET /config says. Local mode: POST /upload
 * (multipart). S3 mode: POST /upload-url, a presigned PUT of the raw bytes straight to the bucket, then POST
 * /upload-complete. Both the single photo and every row of the queue use it, each with its own uploader()
 * (progress and status callbacks, the XHR in flight, cancellation). */
'use strict';
(function (PPA) {
  const { api, safeUrl, authHeaders, parseJson, errorFrom, ApiError } = PPA;
  const BUSY_RETRY_MAX_S = 30;   /* a busy server's Retry-After up to this is waited for once, automatically */
  const CANCELLED = new Error('upload cancelled');

  /* One upload's state: onProgress(fraction, text?) and onStatus(text) show it; cancel() stops it (its
   * promise then rejects with CANCELLED). */
  function uploader(onProgress, onStatus) {
    return {
      xhr: null, cancelled: false, onProgress, onStatus,
      cancel() { this.cancelled = true; const x = this.xhr; this.xhr = null; if (x) x.abort(); },
    };
  }
  /* One XHR with upload progress. Resolves with the finished XHR whatever its status; rejects with
   * ApiError status 0 when no answer came, or CANCELLED when ctl was cancelled. */
  function send(ctl, method, url, headers, body, sending) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      ctl.xhr = xhr;
      xhr.open(method, url);
      for (const [k, v] of Object.entries(headers)) if (typeof v === 'string') xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable && e.total > 0) ctl.onProgress(e.loaded / e.total, sending); };
      xhr.upload.onload = () => ctl.onProgress(1, 'Sent; the server is preparing the image…');
      const settle = (fn) => () => { if (ctl.xhr !== xhr) { reject(CANCELLED); return; } ctl.xhr = null; fn(); };
      xhr.onload = settle(() => resolve(xhr));
      xhr.onerror = settle(() => reject(new ApiError(0, 'network', '')));
      xhr.onabort = () => reject(CANCELLED);
      xhr.send(body);
    });
  }
  /* Runs call(); when the server is busy (503 server_busy) waits its Retry-After and tries once more. */
  async function busyRetry(call, ctl) {
    try { return await call(); } catch (e) {
      if (e.status !== 503 || e.code !== 'server_busy' || !(e.retryAfter <= BUSY_RETRY_MAX_S)) throw e;
      const secs = Math.max(1, e.retryAfter);
      ctl.onStatus('The server is busy with other photos; trying again in ' + secs + ' s…');
      await new Promise((r) => setTimeout(r, secs * 1000));
      if (ctl.cancelled) throw CANCELLED;
      ctl.onStatus('Trying again…');
      return call();
    }
  }
  function uploadLocal(file, ctl) {
    const fd = new FormData();
    fd.append('file', file, file.name);
    return busyRetry(async () => {
      const xhr = await send(ctl, 'POST', '/upload', authHeaders(), fd, 'Uploading…');
      const body = parseJson(xhr.responseText);
      if (xhr.status >= 200 && xhr.status < 300 && body && typeof body.url === 'string') return body;
      if (xhr.status >= 200 && xhr.status < 300) throw new ApiError(xhr.status, 'bad_response', 'The server answered without a file URL.');
      throw errorFrom(xhr.status, body, xhr.responseText, xhr.getResponseHeader('Retry-After'));
    }, ctl);
  }

  /* S3 answers errors as <Error><Code>..</Code><Message>..</Message></Error>. */
  function storageError(status, text) {
    let codeName = '';
    let msg = '';
    try {
      const doc = new DOMParser().parseFromString(text || '', 'application/xml');
      if (!doc.getElementsByTagName('parsererror').length) {
        const pick = (tag) => { const el = doc.getElementsByTagName(tag)[0]; return el ? el.textContent.trim() : ''; };
        codeName = pick('Code');
        msg = pick('Message');
      }
    } catch (e) { /* not XML */ }
    let lead;
    if (status === 403 || /^(AccessDenied|SignatureDoesNotMatch|ExpiredToken|InvalidAccessKeyId|RequestTimeTooSkewed)$/.test(codeName)) {
      lead = 'The storage bucket refused the upload (HTTP ' + status + '): the signed upload link was rejected or has expired. ' +
        'Pick the file again; if it keeps failing, the server\'s S3 credentials, clock or bucket policy need checking.';
    } else if (status === 413 || codeName === 'EntityTooLarge') {
      lead = 'The storage bucket refused the file as too large (HTTP ' + status + ').';
    } else {
      lead = 'The storage bucket refused the upload (HTTP ' + status + ').';
    }
    const detail = codeName ? codeName + (msg ? ': ' + msg : '') : (msg || String(text || '').trim().slice(0, 300));
    return { lead, detail: detail ? 'S3 says: ' + detail : '', rid: '' };
  }
  function withInfo(info) { return Object.assign(new Error(info.lead), { info }); }
  /* S3 mode: ask the server for a presigned PUT, send the raw bytes straight to the bucket, then ask the
   * server to finish the upload (POST /upload-complete): it fetches the object, converts it like /upload
   * and answers like /upload. */
  async function uploadDirect(file, contentType, ctl) {
    const ticket = await api('/upload-url', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ content_type: contentType, size: file.size }),
    });
    if (ctl.cancelled) throw CANCELLED;
    const target = ticket && ticket.upload_url ? safeUrl(ticket.upload_url) : '';
    const method = String((ticket && ticket.method) || 'PUT').toUpperCase();
    const headers = ticket && ticket.headers && typeof ticket.headers === 'object' ? ticket.headers : {};
    const uploadId = ticket && typeof ticket.upload_id === 'string' ? ticket.upload_id : '';
    if (!target || !uploadId || method !== 'PUT') {
      throw new ApiError(502, 'bad_response', 'The server answered /upload-url without a usable upload_url, upload_id and method PUT.');
    }
    let where = target;
    try { where = new URL(target).origin; } catch (e) { /* keep the full URL */ }
    let xhr;
    try {
      xhr = await send(ctl, 'PUT', target, headers, file, 'Uploading to S3…');   /* the raw bytes, with the signed Content-Type */
    } catch (e) {
      if (e !== CANCELLED) {
        throw withInfo({
          lead: 'The upload to the storage bucket failed before it answered.',
          detail: 'Either the bucket\'s CORS rules do not allow a PUT with Content-Type from ' + location.origin +
            ' (' + where + '), or the network connection dropped. Nothing was stored.',
        });
      }
      throw e;
    }
    if (xhr.status < 200 || xhr.status >= 300) throw withInfo(storageError(xhr.status, xhr.responseText));
    const done = ticket.complete && typeof ticket.complete === 'object' ? ticket.complete : {};
    const path = typeof done.url === 'string' && /^\/(?!\/)/.test(done.url) ? done.url : '/upload-complete';
    const body = done.body && typeof done.body === 'object' ? done.body : { upload_id: uploadId };
    const answer = await busyRetry(() => api(path, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    }), ctl);
    if (!answer || typeof answer.url !== 'string' || !safeUrl(answer.url)) {
      throw new ApiError(502, 'bad_response', 'The server answered /upload-complete without a file URL.');
    }
    return answer;
  }


  /* The server's upload answer ({url, width, height, ...}) for `file`; contentType is needed in S3 mode only. */
  function uploadFile(file, direct, contentType, ctl) {
    return direct ? uploadDirect(file, contentType, ctl) : uploadLocal(file, ctl);
  }

  Object.assign(PPA, { uploader, uploadFile, CANCELLED });
}(window.PPA));
