'use strict';
// Shared helpers for the infra checks: a tiny check harness, loaders for the binary's route table,
// Terraform (HCL via @cdktf/hcl2json), SAM (YAML via yaml-cfn) and a Dockerfile parser.
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const REPO = path.resolve(__dirname, '..', '..');
const BIN = process.env.PPA_BIN ? path.resolve(process.env.PPA_BIN) : path.join(REPO, 'build', 'product-photo-api');
const TF_DIR = path.join(REPO, 'infra', 'terraform');
const SAM_FILE = path.join(REPO, 'template.yaml');
const DOCKERFILE = path.join(REPO, 'Dockerfile');
const COMPOSE_FILE = path.join(REPO, 'docker-compose.yml');

// ---------------------------------------------------------------- harness
// Each check prints exactly one "PASS <name>" or "FAIL <name>" line; run.sh counts them.
const results = { passed: 0, failed: 0 };
async function check(name, fn) {
  try {
    const note = await fn();
    results.passed++;
    console.log(`PASS ${name}${note ? ` (${note})` : ''}`);
  } catch (e) {
    results.failed++;
    console.log(`FAIL ${name}`);
    for (const line of String(e && e.message ? e.message : e).split('\n')) console.log(`     ${line}`);
  }
}
function finish() {
  process.exitCode = results.failed ? 1 : 0;
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
function assertEq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

// ---------------------------------------------------------------- routes
// A route is "METHOD PATH" with API Gateway path syntax ({param}); normalised to single spaces.
function normRoute(s) {
  const m = /^\s*([A-Za-z]+)\s+(\S+)\s*$/.exec(s);
  if (!m) throw new Error(`not a "METHOD PATH" route: ${JSON.stringify(s)}`);
  return `${m[1].toUpperCase()} ${m[2]}`;
}

function routesFromText(text) {
  const out = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    // the server answers HEAD on every GET route by itself; API Gateway routes are per method and
    // HEAD is not routed there (see infra/terraform/main.tf), so the comparison is of the other lines
    if (line.startsWith('HEAD ')) continue;
    out.push(normRoute(line));
  }
  return out;
}

function requireBinary() {
  if (!fs.existsSync(BIN)) throw new Error(`server binary not found at ${BIN}: run \`make\` first (or set PPA_BIN)`);
  return BIN;
}

function routesFromBinary() {
  const bin = requireBinary();
  let text;
  try {
    text = execFileSync(bin, ['routes'], { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`\`${bin} routes\` failed: ${e.status !== undefined ? `exit ${e.status}` : e.message}\n${e.stderr || ''}`);
  }
  const routes = routesFromText(text);
  if (routes.length === 0) throw new Error(`\`${bin} routes\` printed no routes`);
  return routes;
}

// The server's `--help` (its configuration variables with their defaults).
function serverHelp() {
  const bin = requireBinary();
  return execFileSync(bin, ['--help'], { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'pipe', 'pipe'] });
}

// Terraform: all *.tf files of infra/terraform parsed with @cdktf/hcl2json and merged per top-level kind.
async function loadTerraform(dir = TF_DIR) {
  const { parse } = require('@cdktf/hcl2json');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.tf')).sort();
  if (files.length === 0) throw new Error(`no .tf files in ${dir}`);
  const merged = { files: {}, resource: {}, data: {}, variable: {}, output: {}, locals: {} };
  for (const f of files) {
    const text = fs.readFileSync(path.join(dir, f), 'utf8');
    let json;
    try {
      json = await parse(f, text);
    } catch (e) {
      throw new Error(`${f}: HCL parse error: ${e && e.message ? e.message : e}`);
    }
    merged.files[f] = json;
    for (const kind of ['resource', 'data']) {
      for (const [type, byName] of Object.entries(json[kind] || {})) {
        merged[kind][type] = merged[kind][type] || {};
        for (const [name, blocks] of Object.entries(byName)) {
          if (merged[kind][type][name]) throw new Error(`${kind} ${type}.${name} defined twice`);
          merged[kind][type][name] = blocks[0];
        }
      }
    }
    for (const kind of ['variable', 'output']) {
      for (const [name, blocks] of Object.entries(json[kind] || {})) {
        if (merged[kind][name]) throw new Error(`${kind} ${name} defined twice`);
        merged[kind][name] = blocks[0];
      }
    }
    for (const block of json.locals || []) Object.assign(merged.locals, block);
  }
  return merged;
}

// "${local.x}" / "${toset(local.x)}" / literal list -> list of strings (only what our files use).
function resolveTfList(expr, tf, what) {
  if (Array.isArray(expr)) return expr;
  const m = /^\$\{(?:toset\()?local\.([A-Za-z0-9_]+)\)?\}$/.exec(String(expr));
  if (m && Array.isArray(tf.locals[m[1]])) return tf.locals[m[1]];
  throw new Error(`${what}: cannot resolve ${JSON.stringify(expr)} to a literal list (use a literal list or local.<name>)`);
}

function routesFromTerraform(tf) {
  const routes = [];
  const blocks = tf.resource.aws_apigatewayv2_route || {};
  if (Object.keys(blocks).length === 0) throw new Error('no aws_apigatewayv2_route resources in infra/terraform');
  for (const [name, r] of Object.entries(blocks)) {
    const key = r.route_key;
    if (key === '${each.value}' || key === '${each.key}') {
      for (const k of resolveTfList(r.for_each, tf, `aws_apigatewayv2_route.${name}.for_each`)) routes.push(normRoute(k));
    } else if (typeof key === 'string' && !key.includes('${')) {
      routes.push(normRoute(key));
    } else {
      throw new Error(`aws_apigatewayv2_route.${name}: unsupported route_key ${JSON.stringify(key)}`);
    }
  }
  return routes;
}

function loadSam(file = SAM_FILE) {
  const { yamlParse } = require('yaml-cfn');
  try {
    return yamlParse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${path.basename(file)}: YAML/CloudFormation parse error: ${e.message}`);
  }
}

function routesFromSam(t) {
  const routes = [];
  for (const [rname, res] of Object.entries(t.Resources || {})) {
    if (res.Type !== 'AWS::Serverless::Function') continue;
    for (const [ename, ev] of Object.entries((res.Properties || {}).Events || {})) {
      if (ev.Type !== 'HttpApi') continue;
      const p = ev.Properties || {};
      if (!p.Method || !p.Path) throw new Error(`${rname}.Events.${ename}: HttpApi event without Method/Path (catch-all not allowed)`);
      routes.push(normRoute(`${p.Method} ${p.Path}`));
    }
  }
  if (routes.length === 0) throw new Error('no HttpApi events in template.yaml');
  return routes;
}

// Compare named route lists; returns [] when identical sets without duplicates, else human-readable lines.
function diffRouteSets(named) {
  const problems = [];
  const names = Object.keys(named);
  const sets = {};
  for (const n of names) {
    const seen = new Set();
    for (const r of named[n]) {
      if (seen.has(r)) problems.push(`duplicate in ${n}: ${r}`);
      seen.add(r);
    }
    sets[n] = seen;
  }
  const all = new Set(names.flatMap((n) => [...sets[n]]));
  for (const r of [...all].sort()) {
    const missing = names.filter((n) => !sets[n].has(r));
    if (missing.length) {
      const present = names.filter((n) => sets[n].has(r));
      problems.push(`${r}: in ${present.join(', ')}; MISSING from ${missing.join(', ')}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------- Dockerfile
// Minimal parser: joins "\" continuations, drops comments, splits stages at FROM, keeps instructions in order.
function splitShellWords(s) {
  const out = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  let m;
  while ((m = re.exec(s))) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2] !== undefined ? m[2] : m[3]);
  return out;
}

function parseExecOrShell(arg) {
  const t = arg.trim();
  if (t.startsWith('[')) {
    const v = JSON.parse(t);
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new Error(`bad exec form: ${t}`);
    return { form: 'exec', argv: v };
  }
  return { form: 'shell', argv: ['/bin/sh', '-c', t] };
}

function parseEnvArgs(arg) {
  const words = splitShellWords(arg);
  const env = {};
  if (words.length && !words[0].includes('=')) {
    // legacy form: ENV KEY value with spaces
    const m = /^\s*(\S+)\s+(.*)$/.exec(arg);
    env[m[1]] = m[2].trim();
    return env;
  }
  for (const w of words) {
    const i = w.indexOf('=');
    if (i <= 0) throw new Error(`bad ENV word: ${w}`);
    env[w.slice(0, i)] = w.slice(i + 1);
  }
  return env;
}

function parseDockerfile(text) {
  const logical = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (cur === '' && /^\s*#/.test(line)) continue;
    if (cur !== '' && /^\s*#/.test(line)) continue; // comment inside a continuation
    if (/\\\s*$/.test(line)) {
      cur += line.replace(/\\\s*$/, ' ');
      continue;
    }
    cur += line;
    if (cur.trim() !== '') logical.push(cur.trim());
    cur = '';
  }
  if (cur.trim() !== '') logical.push(cur.trim());

  const stages = [];
  for (const l of logical) {
    const m = /^(\S+)\s*(.*)$/s.exec(l);
    const ins = m[1].toUpperCase();
    const arg = m[2];
    if (ins === 'FROM') {
      const w = splitShellWords(arg).filter((x) => !x.startsWith('--'));
      const asIdx = w.findIndex((x) => x.toUpperCase() === 'AS');
      stages.push({ from: w[0], name: asIdx >= 0 ? w[asIdx + 1] : null, instructions: [] });
      continue;
    }
    if (!stages.length) {
      if (ins === 'ARG') continue;
      throw new Error(`instruction before FROM: ${l}`);
    }
    stages[stages.length - 1].instructions.push({ ins, arg, raw: l });
  }
  return stages;
}

// Effective runtime config of one stage (ENV accumulates; last CMD/ENTRYPOINT/USER/WORKDIR/HEALTHCHECK wins).
function stageConfig(stage) {
  const cfg = { env: {}, user: null, workdir: '/', entrypoint: null, cmd: null, healthcheck: null,
    expose: [], volumes: [], copies: [], runs: [] };
  for (const { ins, arg } of stage.instructions) {
    switch (ins) {
      case 'ENV': Object.assign(cfg.env, parseEnvArgs(arg)); break;
      case 'USER': cfg.user = arg.trim(); break;
      case 'WORKDIR': cfg.workdir = path.posix.resolve(cfg.workdir, arg.trim()); break;
      case 'ENTRYPOINT': cfg.entrypoint = parseExecOrShell(arg); cfg.cmd = null; break;
      case 'CMD': cfg.cmd = parseExecOrShell(arg); break;
      case 'EXPOSE': cfg.expose.push(...splitShellWords(arg)); break;
      case 'VOLUME': {
        const t = arg.trim();
        cfg.volumes.push(...(t.startsWith('[') ? JSON.parse(t) : splitShellWords(t)));
        break;
      }
      case 'COPY': {
        const w = splitShellWords(arg);
        const flags = w.filter((x) => x.startsWith('--'));
        const rest = w.filter((x) => !x.startsWith('--'));
        const from = (flags.find((f) => f.startsWith('--from=')) || '').slice('--from='.length) || null;
        cfg.copies.push({ from, srcs: rest.slice(0, -1), dest: rest[rest.length - 1], flags });
        break;
      }
      case 'RUN': cfg.runs.push(arg.trim()); break;
      case 'HEALTHCHECK': {
        const m = /^((?:--\S+\s+)*)CMD\s+(.*)$/is.exec(arg.trim());
        if (!m) throw new Error(`HEALTHCHECK without CMD: ${arg}`);
        cfg.healthcheck = { options: m[1].trim(), cmd: parseExecOrShell(m[2]) };
        break;
      }
      default: break;
    }
  }
  return cfg;
}

function loadDockerfile(file = DOCKERFILE) {
  const stages = parseDockerfile(fs.readFileSync(file, 'utf8'));
  if (stages.length < 2) throw new Error(`Dockerfile: expected a multi-stage build, found ${stages.length} stage(s)`);
  return { stages, build: stages[0], runtime: stages[stages.length - 1], runtimeCfg: stageConfig(stages[stages.length - 1]) };
}

module.exports = {
  serverHelp,
  REPO, BIN, TF_DIR, SAM_FILE, DOCKERFILE, COMPOSE_FILE,
  check, finish, assert, assertEq, results,
  normRoute, routesFromText, routesFromBinary, requireBinary,
  loadTerraform, resolveTfList, routesFromTerraform, loadSam, routesFromSam, diffRouteSets,
  parseDockerfile, stageConfig, loadDockerfile, splitShellWords, parseEnvArgs,
};
