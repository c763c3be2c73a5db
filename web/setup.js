/* Product Photo Studio: GET /config and what the page says about it up front: the server pill, the accepted
 * types and size, the default prompt, and the notices (simulated results, KIE cannot reach the uploads, no KIE key,
 * server warnings). Plain JS, CSP-safe; loaded after core.js. */
'use strict';
(function (PPA) {
  const { $, h, api, describe, token, typeList, fmtBytes, TYPES, PROMPT_MIN, cfg } = PPA;
  const defaultPrompt = $('prompt').value;

  function notice(kind, title, ...body) {
    const box = h('div', { class: 'notice ' + kind, role: kind === 'info' ? 'note' : 'alert' },
      h('strong', { class: 'notice-title', text: title }), ...body);
    $('notices').append(box);
    return box;
  }
  function code(text) { return h('code', { text }); }

  /* Reads /config into PPA.cfg and shows it; askToken(msg) is called when the server wants a token we lack. */
  async function loadConfig(askToken) {
    const pill = $('server-state');
    let c;
    try {
      c = await api('/config');
    } catch (e) {
      pill.textContent = 'Server unreachable';
      pill.className = 'pill bad';
      const d = describe(e, 'config');
      notice('error', 'Could not load the server configuration.', h('p', { text: d.lead + (d.detail ? ' ' + d.detail : '') }));
      return;
    }
    if (!c || typeof c !== 'object') c = {};
    Object.assign(cfg, c);
    // S3 mode: the page PUTs straight to the bucket, where the direct-upload limit applies
    if (cfg.direct_upload && Number(c.max_direct_upload_bytes) > 0) cfg.max_upload_bytes = Number(c.max_direct_upload_bytes);
    if (!(Number(cfg.max_upload_bytes) > 0)) cfg.max_upload_bytes = 32 * 1024 * 1024;
    const known = Array.isArray(c.accepted_types) ? c.accepted_types.filter((t) => TYPES[t]) : [];
    if (known.length) cfg.accepted_types = known;
    showAccepted();
    if (typeof c.default_prompt === 'string' && c.default_prompt.trim().length >= PROMPT_MIN &&
        $('prompt').value === defaultPrompt) {
      $('prompt').value = c.default_prompt;
      $('prompt').dataset.default = c.default_prompt;
    }
    const via = { public_url: 'KIE fetches photos from this server', s3: 'KIE fetches photos from S3',
      kie_upload: "photos reach KIE through KIE's file upload" }[c.kie_input];
    pill.textContent = 'Ready · ' + (c.storage === 's3' ? 'S3 storage' : 'local storage') + (via ? ' · ' + via : '');
    pill.className = 'pill ok';
    if (c.kie_simulated === true && c.kie_configured !== false) {
      notice('info', 'Results are simulated.',
        h('p', {}, 'This server talks to the KIE simulator (', code('make sim'), '): the result is your photo on a ' +
          'plain studio background, marked SIMULATED, and costs nothing. With a real KIE key, ', code('make run'),
          ' makes real studio shots.'));
    }

    if (c.public_url_ok === false) {
      const where = c.public_base_url ? 'PUBLIC_BASE_URL is ' : 'PUBLIC_BASE_URL is not set';
      notice('warn', 'KIE cannot download files from this server yet.',
        h('p', {},
          'Uploaded photos are stored on this machine, and KIE fetches the input image from the internet. ' +
          'It cannot download from localhost, 127.0.0.1 or private addresses (' + where,
          c.public_base_url ? code(c.public_base_url) : '', '), so generation would fail.'),
        h('p', { text: 'Fix it in one of these ways, then reload this page:' }),
        h('ol', {},
          h('li', {}, 'Set ', code('KIE_UPLOAD=auto'), " (the default): the server then sends each photo through " +
            "KIE's file upload, no tunnel needed."),
          h('li', {}, 'Or start the tunnel with ', code('docker compose --profile tunnel up'),
            ' and set ', code('PUBLIC_BASE_URL'), ' to the https tunnel URL it prints (e.g. ',
            code('https://…trycloudflare.com'), '), then restart the server.'),
          h('li', {}, 'Or set ', code('PUBLIC_BASE_URL'), ' to any public HTTPS address that forwards to this server.'),
          h('li', {}, 'Or use S3 storage (', code('USE_S3=1'), ' with ', code('S3_BUCKET'),
            '), so uploads get presigned S3 URLs that KIE can fetch.')));
    }
    if (c.kie_configured === false) {
      notice('error', 'Generation is switched off: the server has no KIE API key.',
        h('p', {}, 'Set ', code('KIE_API_KEY'), ' in the server\'s environment or ', code('.env'),
          ' and restart it, then reload this page. Uploading works meanwhile.'));
    }
    if (Array.isArray(c.warnings)) {
      /* the notices above already say these in full */
      const said = (w) => (c.kie_configured === false && /KIE_API_KEY/.test(w)) ||
        (c.public_url_ok === false && /PUBLIC_BASE_URL/.test(w));
      for (const w of c.warnings) if (typeof w === 'string' && w && !said(w)) notice('info', 'Server note', h('p', { text: w }));
    }
    if (cfg.auth_required && !token()) askToken('This server requires an API token.');
  }

  /* The picker's accept= list (MIME types and extensions: browsers often give HEIC files no type) and the hint. */
  function showAccepted() {
    const types = cfg.accepted_types.slice();
    if (types.includes('image/heic') && !types.includes('image/heif')) types.push('image/heif');
    $('file').accept = types.concat(types.map((t) => TYPES[t][1])).join(',');
    $('file-types').textContent = typeList();
    $('max-size').textContent = fmtBytes(cfg.max_upload_bytes);
  }

  Object.assign(PPA, { loadConfig });
}(window.PPA));
