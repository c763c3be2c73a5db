'use strict';
// (1) Route consistency: `product-photo-api routes` == Terraform route_keys == SAM HttpApi events.
const fs = require('fs');
const os = require('os');
const path = require('path');
const L = require('./lib');

function describe(problems) {
  return problems.map((p) => `  - ${p}`).join('\n');
}

(async () => {
  let tf = null;
  let sam = null;
  let tfRoutes = null;
  let samRoutes = null;
  let binRoutes = null;

  await L.check('routes: Terraform route_keys readable', async () => {
    tf = await L.loadTerraform();
    tfRoutes = L.routesFromTerraform(tf);
    return `${tfRoutes.length} routes`;
  });
  await L.check('routes: SAM HttpApi events readable', async () => {
    sam = L.loadSam();
    samRoutes = L.routesFromSam(sam);
    return `${samRoutes.length} routes`;
  });
  await L.check('routes: binary prints its route table', async () => {
    binRoutes = L.routesFromBinary();
    for (const r of binRoutes) L.assert(/^(GET|POST|PUT|PATCH|DELETE) \/\S*$/.test(r), `unexpected route line "${r}"`);
    return `${binRoutes.length} routes`;
  });

  await L.check('routes: binary == Terraform == SAM', async () => {
    L.assert(binRoutes && tfRoutes && samRoutes, 'a route source failed to load (see above)');
    const problems = L.diffRouteSets({ binary: binRoutes, terraform: tfRoutes, sam: samRoutes });
    if (problems.length) throw new Error(`route sets differ:\n${describe(problems)}`);
    return `${binRoutes.length} identical routes`;
  });

  // ---- the comparison must be able to fail: feed deliberately altered inputs through the same code.
  await L.check('routes self-test: diff reports a dropped and an added route', async () => {
    const base = ['GET /healthz', 'POST /upload', 'GET /files/{name}'];
    L.assertEq(L.diffRouteSets({ a: base, b: [...base].reverse() }), [], 'same set, other order');
    const problems = L.diffRouteSets({ binary: base, terraform: base.slice(1), sam: [...base, 'GET /extra'] });
    L.assert(problems.some((p) => p.startsWith('GET /healthz') && p.includes('MISSING from terraform')), `dropped route not reported: ${problems}`);
    L.assert(problems.some((p) => p.startsWith('GET /extra') && p.includes('MISSING from binary, terraform')), `added route not reported: ${problems}`);
    L.assert(L.diffRouteSets({ a: ['GET /x', 'GET /x'], b: ['GET /x'] }).some((p) => p.startsWith('duplicate in a')), 'duplicate not reported');
    return `${problems.length} differences found as expected`;
  });

  await L.check('routes self-test: a route deleted from the real main.tf is detected', async () => {
    L.assert(tfRoutes && samRoutes, 'Terraform/SAM failed to load');
    const victim = tfRoutes[tfRoutes.length - 1];
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'infra-routes-'));
    try {
      for (const f of fs.readdirSync(L.TF_DIR).filter((x) => x.endsWith('.tf'))) {
        let text = fs.readFileSync(path.join(L.TF_DIR, f), 'utf8');
        text = text.split('\n').filter((line) => line.trim() !== `"${victim}",`).join('\n');
        fs.writeFileSync(path.join(tmp, f), text);
      }
      const altered = L.routesFromTerraform(await L.loadTerraform(tmp));
      const problems = L.diffRouteSets({ terraform: altered, sam: samRoutes });
      L.assert(altered.length === tfRoutes.length - 1, `route "${victim}" was not removed from the copy`);
      L.assert(problems.length === 1 && problems[0].startsWith(victim), `expected exactly one difference for "${victim}", got:\n${describe(problems)}`);
      return `"${victim}" reported`;
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  await L.check('routes self-test: a path changed in the real template.yaml is detected', async () => {
    L.assert(tfRoutes, 'Terraform failed to load');
    const text = fs.readFileSync(L.SAM_FILE, 'utf8');
    const altered = text.replace('Path: /healthz', 'Path: /health');
    L.assert(altered !== text, 'template.yaml has no "Path: /healthz" to alter');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'infra-sam-'));
    try {
      fs.writeFileSync(path.join(tmp, 'template.yaml'), altered);
      const problems = L.diffRouteSets({ terraform: tfRoutes, sam: L.routesFromSam(L.loadSam(path.join(tmp, 'template.yaml'))) });
      L.assert(problems.length === 2, `expected 2 differences, got:\n${describe(problems)}`);
      return problems.join(' | ');
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  L.finish();
})();
