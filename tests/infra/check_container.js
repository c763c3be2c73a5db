'use strict';
// (3) Container start command: parse the runtime stage of the Dockerfile (ENV/USER/WORKDIR/ENTRYPOINT/CMD/
// HEALTHCHECK), run build/product-photo-api exactly that way on port 8080 (as PORT and as AWS_LWA_PORT, the
// way the Lambda Web Adapter picks its port) from a read-only working directory, and probe the adapter's
// readiness path. Loopback only.
const fs = require('fs');
const os = require('os');
const net = require('net');
const http = require('http');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const L = require('./lib');

const TEST_PORT = 8080;
// The exact line from the Lambda Web Adapter README (pinned tag; see the README, "Deploy to AWS").
const LWA_LINE = 'COPY --from=public.ecr.aws/awsguru/aws-lambda-adapter:1.1.0@sha256:17cfd08eff1dfea3f6a9a1e9c65fdac80aa4919b6085e746615530f43f57d2f1 /lambda-adapter /opt/extensions/lambda-adapter';
const RUNTIME_LIBS = ['libmicrohttpd12', 'libcurl4', 'libcjson1', 'libuuid1', 'libssl3', 'zlib1g', 'ca-certificates'];
const BASE_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/tmp' };

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (e) => resolve(e.code || String(e)));
    s.listen(port, '0.0.0.0', () => s.close(() => resolve(null)));
  });
}

function request(port, method, p, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, timeout: 3000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

// What the Lambda Web Adapter would do with this environment (aws.md: AWS_LWA_PORT -> PORT -> 8080).
function adapterTarget(env) {
  const port = Number(env.AWS_LWA_PORT || env.PORT || 8080);
  return {
    port: Number(env.AWS_LWA_READINESS_CHECK_PORT || port),
    path: env.AWS_LWA_READINESS_CHECK_PATH || '/',
  };
}

function listTree(dir) {
  const out = [];
  (function walk(d, rel) {
    for (const name of fs.readdirSync(d).sort()) {
      const full = path.join(d, name);
      const st = fs.lstatSync(full);
      out.push(`${path.join(rel, name)} ${st.isDirectory() ? 'dir' : st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(full, path.join(rel, name));
    }
  })(dir, '');
  return out;
}

// Replace the in-image binary path with the locally built binary.
function mapArgv(argv, imageBin) {
  return argv.map((a) => (a === imageBin || a === path.posix.basename(imageBin) ? L.BIN : a));
}

function startServer(argv, env, cwd) {
  const child = spawn(argv[0], argv.slice(1), { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  child.output = '';
  child.stdout.on('data', (d) => { child.output += d; });
  child.stderr.on('data', (d) => { child.output += d; });
  child.exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
  child.done = null;
  child.exited.then((r) => { child.done = r; });
  return child;
}

async function stopServer(child) {
  if (!child || child.done) return child && child.done;
  child.kill('SIGTERM');
  const r = await Promise.race([child.exited, sleep(5000).then(() => null)]);
  if (r) return r;
  child.kill('SIGKILL');
  await child.exited;
  throw new Error('server did not exit within 5 s of SIGTERM');
}

async function waitReady(child, port, p, ms = 8000) {
  const t0 = Date.now();
  let last = 'no answer';
  while (Date.now() - t0 < ms) {
    if (child.done) throw new Error(`server exited early (${JSON.stringify(child.done)}) before answering ${p} on ${port}:\n${child.output.slice(-2000)}`);
    try {
      const r = await request(port, 'GET', p);
      if (r.status === 200) return { res: r, ms: Date.now() - t0 };
      last = `HTTP ${r.status}: ${r.body.slice(0, 200)}`;
    } catch (e) {
      last = e.message;
    }
    await sleep(50);
  }
  throw new Error(`GET http://127.0.0.1:${port}${p} never returned 200 within ${ms} ms (last: ${last})\nserver output:\n${child.output.slice(-2000)}`);
}

function tinyPng() {
  // an 8x8 RGBA PNG with correct CRCs (the server decodes every upload to the end, so a broken one is refused)
  const zlib = require('zlib');
  const chunk = (kind, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(kind, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body) >>> 0);
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(8, 0);
  ihdr.writeUInt32BE(8, 4);
  ihdr.set([8, 6, 0, 0, 0], 8);
  const rows = [];
  for (let y = 0; y < 8; y++) {
    rows.push(Buffer.from([0]));
    for (let x = 0; x < 8; x++) rows.push(Buffer.from([x * 32, y * 32, 160, x < 4 ? 255 : 0]));
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))), chunk('IEND', Buffer.alloc(0))]);
}

function multipart(field, filename, type, data) {
  const boundary = `----infra${Date.now().toString(16)}`;
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: ${type}\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { body: Buffer.concat([head, data, tail]), type: `multipart/form-data; boundary=${boundary}` };
}


// .dockerignore semantics (moby/patternmatcher): patterns are root-relative, "*" stays inside one path segment,
// "**" spans segments, a pattern matching a directory excludes everything below it, "!" re-includes, last match wins.
function dockerignoreRules(text) {
  const rules = [];
  for (let line of text.split('\n')) {
    line = line.trim();
    if (!line || line.startsWith('#')) continue;
    const neg = line.startsWith('!');
    let pat = path.posix.normalize((neg ? line.slice(1) : line).trim().replace(/^\/+/, '')).replace(/\/+$/, '');
    let re = '';
    for (let i = 0; i < pat.length; i++) {
      const c = pat[i];
      if (c === '*' && pat[i + 1] === '*') {
        if (pat[i + 2] === '/') { re += '(?:.*/)?'; i += 2; } else { re += '.*'; i += 1; }
      } else if (c === '*') re += '[^/]*';
      else if (c === '?') re += '[^/]';
      else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
    rules.push({ neg, re: new RegExp(`^${re}$`), pat: line });
  }
  return rules;
}
function dockerignored(rules, file) {
  const parts = file.split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const r of rules) if (prefixes.some((p) => r.re.test(p))) ignored = !r.neg;
  return ignored;
}
function walkFiles(rel) {
  const full = path.join(L.REPO, rel);
  if (!fs.existsSync(full)) return [];
  if (!fs.statSync(full).isDirectory()) return [rel];
  return fs.readdirSync(full).filter((n) => n !== 'node_modules').flatMap((n) => walkFiles(path.posix.join(rel, n)));
}

(async () => {
  let df = null;
  let cfg = null;
  let imageBin = null;

  await L.check('dockerfile: build stage = debian:bookworm running `make deps-build && make`', async () => {
    df = L.loadDockerfile();
    cfg = df.runtimeCfg;
    L.assertEq(df.build.from, 'debian:bookworm', 'build stage base');
    const runs = L.stageConfig(df.build).runs.join(' ; ');
    L.assert(/\bmake deps-build && make\b/.test(runs), `build stage must RUN "make deps-build && make", has: ${runs}`);
  });

  await L.check('dockerfile: runtime = bookworm-slim, runtime libraries only, LWA line, port/readiness ENV', async () => {
    L.assert(df, 'Dockerfile failed to parse');
    L.assertEq(df.runtime.from, 'debian:bookworm-slim', 'runtime stage base');
    const runs = cfg.runs.join(' ');
    for (const lib of RUNTIME_LIBS) L.assert(new RegExp(`\\b${lib}\\b`).test(runs), `runtime stage must install ${lib}`);
    L.assert(!/-dev\b|\bgcc\b|\bmake\b|\bcurl\b(?!4)/.test(runs.replace(/libcurl4/g, '')), `runtime stage installs build tools or curl: ${runs}`);
    L.assert(df.runtime.instructions.some((i) => i.raw === LWA_LINE), `runtime stage lacks the exact Lambda Web Adapter line:\n${LWA_LINE}`);
    L.assertEq(cfg.env.AWS_LWA_READINESS_CHECK_PATH, '/healthz', 'ENV AWS_LWA_READINESS_CHECK_PATH');
    L.assert(cfg.env.PORT, 'ENV PORT must be set (the server and, via fallback, the adapter read it)');
    if (cfg.env.AWS_LWA_PORT) L.assertEq(cfg.env.AWS_LWA_PORT, cfg.env.PORT, 'AWS_LWA_PORT must equal PORT');
    L.assert(cfg.expose.includes(cfg.env.PORT) && cfg.expose.includes('8000'), `EXPOSE ${cfg.expose} must include PORT ${cfg.env.PORT} = 8000`);
    L.assert(!cfg.env.UPLOAD_DIR || cfg.env.UPLOAD_DIR.startsWith('/tmp/'), 'ENV UPLOAD_DIR outside /tmp breaks Lambda (read-only filesystem)');
    L.assert(cfg.volumes.includes(path.posix.join(cfg.workdir, 'uploads')), `VOLUME ${cfg.volumes} must be WORKDIR/uploads (${cfg.workdir}/uploads, the default UPLOAD_DIR)`);
    return `PORT=${cfg.env.PORT} WORKDIR=${cfg.workdir}`;
  });

  await L.check('dockerfile: non-root USER, exec-form ENTRYPOINT and HEALTHCHECK use the built binary', async () => {
    L.assert(cfg, 'Dockerfile failed to parse');
    L.assert(cfg.user && !/^(root|0)(:|$)/.test(cfg.user), `runtime USER must be non-root, got ${cfg.user}`);
    const copy = cfg.copies.find((c) => c.from === df.build.name && c.srcs.some((s) => /(^|\/)build\/product-photo-api$/.test(s)));
    L.assert(copy, `runtime stage must COPY --from=${df.build.name} .../build/product-photo-api`);
    imageBin = copy.dest.endsWith('/') ? path.posix.join(copy.dest, 'product-photo-api') : copy.dest;
    L.assert(cfg.entrypoint || cfg.cmd, 'no ENTRYPOINT/CMD');
    for (const [what, c] of [['ENTRYPOINT', cfg.entrypoint], ['CMD', cfg.cmd]]) if (c) L.assertEq(c.form, 'exec', `${what} form (shell form swallows SIGTERM)`);
    const start = [...(cfg.entrypoint ? cfg.entrypoint.argv : []), ...(cfg.cmd ? cfg.cmd.argv : [])];
    L.assertEq(start[0], imageBin, 'start command runs the copied binary');
    L.assert(cfg.healthcheck, 'no HEALTHCHECK');
    L.assertEq(cfg.healthcheck.cmd.argv, [imageBin, 'healthcheck'], 'HEALTHCHECK CMD');
    return `start: ${start.join(' ')}`;
  });


  await L.check('dockerignore: build context has what `make` needs, no secrets or host build output', async () => {
    const rules = dockerignoreRules(fs.readFileSync(path.join(L.REPO, '.dockerignore'), 'utf8'));
    // self-test of the matcher on the patterns' semantics
    const t = dockerignoreRules('docs/*\n!docs/openapi.json\n**/node_modules/\nbuild/\n');
    L.assertEq([dockerignored(t, 'docs/a.md'), dockerignored(t, 'docs/openapi.json'), dockerignored(t, 'x/node_modules/y'),
      dockerignored(t, 'build/product-photo-api'), dockerignored(t, 'src/build.c')], [true, false, true, true, false], 'matcher self-test');
    const mk = fs.readFileSync(path.join(L.REPO, 'Makefile'), 'utf8');
    const webFiles = ((/^WEB_FILES\s*:?=\s*(.*)$/m.exec(mk) || [])[1] || '').replace(/\$\(wildcard|\)/g, ' ').split(/\s+/).filter(Boolean);
    const needed = [...new Set([...['Makefile', 'src', 'include', 'tools', 'web'].flatMap(walkFiles), ...webFiles])];
    L.assert(needed.length > 5, `only ${needed.length} build inputs found`);
    const dropped = needed.filter((f) => dockerignored(rules, f));
    L.assertEq(dropped, [], 'build inputs excluded by .dockerignore');
    for (const f of ['.env', 'build/product-photo-api', 'uploads/x.png', 'tests/infra/node_modules/x', '.git/config', '.pytest_cache/v', 'tools/__pycache__/x.pyc']) {
      L.assert(dockerignored(rules, f), `.dockerignore should exclude ${f}`);
    }
    return `${needed.length} build inputs kept`;
  });

  // ------------------------------------------------------------ running it
  const scenarios = [
    { name: 'local, PORT=8080', extra: { PORT: String(TEST_PORT) }, lambda: false, upload: true },
    { name: 'Lambda, PORT=8080', extra: { PORT: String(TEST_PORT), AWS_LAMBDA_FUNCTION_NAME: 'test' }, lambda: true, upload: true },
    { name: 'Lambda, AWS_LWA_PORT=8080 (PORT from image)', extra: { AWS_LWA_PORT: String(TEST_PORT), AWS_LAMBDA_FUNCTION_NAME: 'test' }, lambda: true,
      hint: 'the adapter takes AWS_LWA_PORT before PORT, so with the image\'s PORT=8000 and AWS_LWA_PORT=8080 it probes 8080:'
        + ' the server must give AWS_LWA_PORT precedence over PORT when it is set (on Lambda) or init never completes' },
  ];

  for (const sc of scenarios) {
    await L.check(`run: ${sc.name} -> readiness 200, nothing written to the cwd`, async () => {
      L.assert(cfg && imageBin, 'Dockerfile checks failed (see above)');
      L.requireBinary();
      const env = { ...BASE_ENV, ...cfg.env, ...sc.extra };
      const target = adapterTarget(env);
      L.assertEq(target.port, TEST_PORT, 'port the adapter would probe');
      const busy = await portFree(TEST_PORT);
      if (busy) throw new Error(`port ${TEST_PORT} is busy (${busy}): another process is listening; stop it and rerun`);

      const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'infra-ro-cwd-'));
      fs.writeFileSync(path.join(cwd, 'marker.txt'), 'read-only working directory\n');
      // Mirror the image: WORKDIR is root-owned and read-only, only WORKDIR/uploads (the VOLUME) exists in it.
      fs.mkdirSync(path.join(cwd, 'uploads'));
      fs.chmodSync(cwd, 0o555);
      // Locally the server may write into ./uploads (the volume); on Lambda it must not touch the cwd at all.
      const keep = (x) => sc.lambda || !/^uploads[/ ]/.test(x);
      const before = listTree(cwd).filter(keep);
      const uploadDir = sc.lambda ? '/tmp/uploads' : path.join(cwd, 'uploads');
      const argv = mapArgv([...(cfg.entrypoint ? cfg.entrypoint.argv : []), ...(cfg.cmd ? cfg.cmd.argv : [])], imageBin);
      const notes = [];
      let child = null;
      const errors = [];
      try {
        child = startServer(argv, env, cwd);
        const { res, ms } = await waitReady(child, target.port, target.path);
        notes.push(`ready in ${ms} ms`);
        try { JSON.parse(res.body); } catch (e) { throw new Error(`${target.path} did not answer JSON: ${res.body.slice(0, 200)}`); }
        const hz = await request(TEST_PORT, 'GET', '/healthz');
        L.assertEq(hz.status, 200, 'GET /healthz');

        if (!sc.extra.AWS_LWA_PORT) {
          const hc = mapArgv(cfg.healthcheck.cmd.argv, imageBin);
          const r = spawnSync(hc[0], hc.slice(1), { env, cwd, timeout: 10000, encoding: 'utf8' });
          L.assertEq(r.status, 0, `HEALTHCHECK command exit status (stderr: ${(r.stderr || '').trim()})`);
          notes.push('healthcheck=0');
        }

        if (sc.upload) {
          const mp = multipart('file', 'probe.png', 'image/png', tinyPng());
          const up = await request(TEST_PORT, 'POST', '/upload', mp.body, { 'Content-Type': mp.type, 'Content-Length': mp.body.length });
          L.assert(up.status >= 200 && up.status < 300, `POST /upload in Lambda mode: HTTP ${up.status} ${up.body.slice(0, 300)}`);
          let j = {};
          try { j = JSON.parse(up.body); } catch (e) { /* checked below */ }
          const fname = j.filename || (j.url ? path.posix.basename(String(j.url).split('?')[0]) : null);
          L.assert(fname && /^[\w.-]+$/.test(fname), `upload answer has no filename: ${up.body.slice(0, 300)}`);
          const stored = path.join(uploadDir, fname);
          L.assert(fs.existsSync(stored), `uploaded file not found at ${stored} (default UPLOAD_DIR ${sc.lambda ? 'on Lambda' : '= WORKDIR/uploads, the VOLUME'})`);
          fs.rmSync(stored, { force: true });
          notes.push(`upload -> ${sc.lambda ? stored : 'WORKDIR/uploads/'}`);
        }
      } catch (e) {
        errors.push(e.message);
        if (sc.hint) errors.push(`hint: ${sc.hint}`);
      }
      try {
        const stopped = await stopServer(child);
        if (stopped) notes.push(`SIGTERM -> ${stopped.sig ? stopped.sig : `exit ${stopped.code}`}`);
      } catch (e) {
        errors.push(e.message);
      }
      fs.chmodSync(cwd, 0o755);
      const after = listTree(cwd).filter(keep);
      fs.rmSync(cwd, { recursive: true, force: true });
      const added = after.filter((x) => !before.includes(x));
      const removed = before.filter((x) => !after.includes(x));
      if (added.length || removed.length) errors.push(`server changed its working directory: added [${added.join(', ')}] removed [${removed.join(', ')}]`);
      if (errors.length) throw new Error(errors.join('\n'));
      if (!sc.extra.AWS_LWA_PORT) {
        const hc = mapArgv(cfg.healthcheck.cmd.argv, imageBin);
        const r = spawnSync(hc[0], hc.slice(1), { env, cwd: '/', timeout: 10000 });
        L.assert(r.status !== 0, 'HEALTHCHECK command exits 0 with the server stopped');
        notes.push(`healthcheck after stop=${r.status}`);
      }
      return notes.join(', ');
    });
  }

  L.finish();
})();
