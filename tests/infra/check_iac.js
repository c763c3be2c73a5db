'use strict';
// (2) Terraform parses as HCL, template.yaml parses as CloudFormation YAML, docker-compose.yml and
// the README's AWS section agree with them; structural assertions on the security-relevant parts.
const fs = require('fs');
const path = require('path');
const L = require('./lib');

const LEAST_PRIVILEGE = ['logs:CreateLogStream', 'logs:PutLogEvents', 's3:DeleteObject', 's3:GetObject', 's3:ListBucket',
  's3:PutObject'];
// Lambda rejects these in Environment.Variables (reserved) or they would shadow the runtime's values.
const RESERVED_ENV = /^(AWS_REGION|AWS_DEFAULT_REGION|AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|AWS_LAMBDA_.*|AWS_EXECUTION_ENV|_HANDLER|_X_AMZN_TRACE_ID|LAMBDA_TASK_ROOT|LAMBDA_RUNTIME_DIR|AWS_XRAY_.*)$/;
const REQUIRED_ENV = ['KIE_API_KEY', 'KIE_BASE_URL', 'KIE_MODEL', 'USE_S3', 'S3_BUCKET', 'S3_TASKS_PREFIX'];
// S3 access per key prefix (never bucket/*): delete only where the server deletes (raw direct uploads
// under <S3_PREFIX>incoming/, released idempotency keys of the task store), read/write for kept results.
// s3:ListBucket only for the task store's listings: on the bucket, with an s3:prefix condition.
function expectedS3(env) {
  return {
    [`${env.S3_PREFIX}*`]: ['s3:DeleteObject', 's3:GetObject', 's3:PutObject'],
    [`${env.S3_RESULTS_PREFIX}*`]: ['s3:GetObject', 's3:PutObject'],
    [`${env.S3_TASKS_PREFIX}*`]: ['s3:DeleteObject', 's3:GetObject', 's3:PutObject'],
  };
}
// The one s3:ListBucket statement: only that action, on the bucket itself, listings under the tasks prefix.
function listStatement(acts, resources, prefixValues, bucketRef, env, what) {
  L.assertEq(acts, ['s3:ListBucket'], `${what}: s3:ListBucket in a statement of its own`);
  L.assertEq(resources, [bucketRef], `${what}: s3:ListBucket on the bucket`);
  L.assertEq(prefixValues, [`${env.S3_TASKS_PREFIX}*`], `${what}: s3:ListBucket limited by s3:prefix to the tasks prefix`);
}
function addS3(map, suffix, acts) {
  map[suffix] = [...new Set([...(map[suffix] || []), ...acts])].sort();
}
function sortedObj(o) {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
}
// Lambda behind API Gateway: the HTTP API integration stops at 30 s, a Lambda request at 6 MB
// (base64 on the way in: 6 MB * 3/4 = 4.5 MB of file, minus the event envelope and multipart framing).
const APIGW_TIMEOUT_S = 30;
const LAMBDA_UPLOAD_MAX = Math.floor((6 * 1000 * 1000 * 3) / 4) - 256 * 1024;
const CORS_EXPOSE = ['idempotency-key', 'idempotent-replayed', 'retry-after', 'x-request-id'];
function lambdaLimits(env, what) {
  const kie = Number(env.KIE_TIMEOUT_SECONDS);
  L.assert(kie > 0 && kie < APIGW_TIMEOUT_S, `${what}: KIE_TIMEOUT_SECONDS must be set below API Gateway's ${APIGW_TIMEOUT_S} s (got ${env.KIE_TIMEOUT_SECONDS})`);
  const max = Number(env.MAX_UPLOAD_BYTES);
  L.assert(max > 0 && max <= LAMBDA_UPLOAD_MAX, `${what}: MAX_UPLOAD_BYTES must fit a 6 MB base64 Lambda request (<= ${LAMBDA_UPLOAD_MAX}, got ${env.MAX_UPLOAD_BYTES})`);
  return `KIE ${kie} s, uploads <= ${max} B`;
}
function corsHeaders(allow, expose, what) {
  const lc = (a) => [].concat(a || []).map((h) => String(h).toLowerCase()).sort();
  L.assert(lc(allow).includes('idempotency-key'), `${what}: CORS must allow the Idempotency-Key request header`);
  L.assertEq(lc(expose), CORS_EXPOSE, `${what}: CORS expose headers`);
}

function one(obj, what) {
  const keys = Object.keys(obj || {});
  L.assert(keys.length === 1, `expected exactly one ${what}, found ${keys.length}: ${keys.join(', ')}`);
  return obj[keys[0]];
}

// "${local.x}" inside a string -> the local's string value.
function tfLocals(v, tf) {
  return String(v).replace(/\$\{local\.([A-Za-z0-9_]+)\}/g, (all, name) => {
    L.assert(typeof tf.locals[name] === 'string', `local.${name} is not a string literal`);
    return tf.locals[name];
  });
}
function tfEnv(tf) {
  const env = one(tf.resource.aws_lambda_function, 'aws_lambda_function').environment[0].variables;
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, typeof v === 'string' ? tfLocals(v, tf) : v]));
}

// "${var.x}" -> default of variable x (for numbers/strings with defaults), literal -> itself.
function tfValue(v, tf) {
  const m = /^\$\{var\.([A-Za-z0-9_]+)\}$/.exec(String(v));
  if (!m) return v;
  const decl = tf.variable[m[1]];
  L.assert(decl && 'default' in decl, `var.${m[1]} has no default to check`);
  return decl.default;
}

(async () => {
  let tf = null;
  let sam = null;

  // ------------------------------------------------------------ Terraform
  await L.check('terraform: every .tf parses as HCL2', async () => {
    tf = await L.loadTerraform();
    return `${Object.keys(tf.files).length} files, ${Object.values(tf.resource).reduce((n, t) => n + Object.keys(t).length, 0)} resources`;
  });

  await L.check('terraform: HCL parser rejects broken syntax (self-test)', async () => {
    const { parse } = require('@cdktf/hcl2json');
    let threw = false;
    try {
      await parse('broken.tf', 'resource "aws_s3_bucket" "x" {\n  bucket = "a"\n');
    } catch (e) {
      threw = true;
    }
    L.assert(threw, 'unterminated block parsed without error');
  });

  await L.check('terraform: variables, sensitive KIE key, outputs', async () => {
    L.assert(tf, 'Terraform failed to parse');
    for (const v of ['aws_region', 'account_id', 'image_uri', 'kie_api_key', 'cors_origins', 'name']) {
      L.assert(tf.variable[v], `variable "${v}" missing`);
    }
    L.assertEq(tf.variable.kie_api_key.sensitive, true, 'variable kie_api_key.sensitive');
    L.assert(!('default' in tf.variable.kie_api_key), 'kie_api_key must not have a default (no secret in the repo)');
    for (const o of ['api_endpoint', 'ecr_repository_url', 'bucket_name']) L.assert(tf.output[o], `output "${o}" missing`);
    // the stage's invoke_url ends in "/" (the README's "$API/healthz" would be "//healthz"); the API's endpoint does not
    L.assertEq(tf.output.api_endpoint.value, '${aws_apigatewayv2_api.http.api_endpoint}', 'api_endpoint output');
  });

  await L.check('terraform: provider pinned (committed .terraform.lock.hcl, constraint excludes untested majors)', async () => {
    const aws = tf.files['versions.tf'].terraform[0].required_providers[0].aws;
    L.assertEq(aws.version, '>= 5.100, < 6.0', 'hashicorp/aws version constraint');
    const lockFile = path.join(L.TF_DIR, '.terraform.lock.hcl');
    L.assert(fs.existsSync(lockFile), 'infra/terraform/.terraform.lock.hcl missing (terraform providers lock)');
    const { parse } = require('@cdktf/hcl2json');
    const lock = await parse('.terraform.lock.hcl', fs.readFileSync(lockFile, 'utf8'));
    const p = lock.provider['registry.terraform.io/hashicorp/aws'];
    L.assert(p, 'lock file has no registry.terraform.io/hashicorp/aws');
    const v = p[0].version;
    const [maj, min] = v.split('.').map(Number);
    L.assert(maj === 5 && min >= 100, `locked version ${v} outside >= 5.100, < 6.0`);
    L.assert(p[0].hashes.length >= 1, 'lock file has no hashes');
    return `aws ${v}, ${p[0].hashes.length} hash(es)`;
  });

  await L.check('terraform: S3 bucket private (public access block) + CORS for presigned PUT', async () => {
    const pab = one(tf.resource.aws_s3_bucket_public_access_block, 'aws_s3_bucket_public_access_block');
    for (const f of ['block_public_acls', 'block_public_policy', 'ignore_public_acls', 'restrict_public_buckets']) {
      L.assertEq(pab[f], true, `public access block ${f}`);
    }
    L.assert(!tf.resource.aws_s3_bucket_policy && !tf.resource.aws_s3_bucket_acl, 'no bucket policy/ACL expected (objects are reached via presigned URLs)');
    const cors = one(tf.resource.aws_s3_bucket_cors_configuration, 'aws_s3_bucket_cors_configuration').cors_rule[0];
    L.assert(cors.allowed_methods.includes('PUT'), 'bucket CORS must allow PUT');
    // var.cors_origins plus the API's own origin (the web page at GET / uploads straight to S3)
    L.assertEq(cors.allowed_origins, '${distinct(concat(var.cors_origins, [aws_apigatewayv2_api.http.api_endpoint]))}', 'bucket CORS allowed_origins');
  });

  await L.check('terraform: IAM role has exactly the least-privilege actions', async () => {
    const role = one(tf.resource.aws_iam_role, 'aws_iam_role');
    const trust = /data\.aws_iam_policy_document\.(\w+)\.json/.exec(role.assume_role_policy);
    L.assert(trust, 'assume_role_policy should come from an aws_iam_policy_document');
    const tdoc = tf.data.aws_iam_policy_document[trust[1]];
    L.assertEq(tdoc.statement[0].principals[0].identifiers, ['lambda.amazonaws.com'], 'trust principal');
    L.assert(!tf.resource.aws_iam_role_policy_attachment && !role.managed_policy_arns, 'no managed policy attachments (they exceed least privilege)');
    const actions = new Set();
    const s3 = {};
    const env = tfEnv(tf);
    let lists = 0;
    for (const [name, rp] of Object.entries(tf.resource.aws_iam_role_policy || {})) {
      const m = /^\$\{data\.aws_iam_policy_document\.(\w+)\.json\}$/.exec(rp.policy);
      L.assert(m, `aws_iam_role_policy.${name}.policy must reference an aws_iam_policy_document`);
      for (const st of tf.data.aws_iam_policy_document[m[1]].statement) {
        L.assert(!st.effect || st.effect === 'Allow', 'only Allow statements expected');
        for (const a of st.actions) actions.add(a);
        if (st.actions.includes('s3:ListBucket')) {
          const conds = st.condition || [];
          L.assert(conds.length === 1 && conds[0].test === 'StringLike' && conds[0].variable === 's3:prefix',
            `terraform: s3:ListBucket needs one StringLike s3:prefix condition, got ${JSON.stringify(conds)}`);
          listStatement(st.actions, st.resources, conds[0].values.map((v) => tfLocals(v, tf)), '${aws_s3_bucket.files.arn}', env, 'terraform');
          lists++;
        } else if (st.actions.some((a) => a.startsWith('s3:'))) {
          for (const r of st.resources) {
            const m2 = /^\$\{aws_s3_bucket\.files\.arn\}\/(.+)$/.exec(r);
            L.assert(m2, `S3 actions must be scoped to objects of the files bucket: ${r}`);
            addS3(s3, tfLocals(m2[1], tf), st.actions.filter((a) => a.startsWith('s3:')));
          }
        }
        L.assert(!st.resources.includes('*'), `statement with Resource "*": ${st.actions}`);
      }
    }
    L.assertEq([...actions].sort(), LEAST_PRIVILEGE, 'IAM actions');
    L.assertEq(lists, 1, 'terraform: statements with s3:ListBucket');
    L.assertEq(sortedObj(s3), sortedObj(expectedS3(env)), 'S3 actions per key prefix');
    return Object.entries(sortedObj(s3)).map(([k, v]) => `${k}: ${v.join(',')}`).join('; ') + `; list ${env.S3_TASKS_PREFIX}*`;
  });

  await L.check('terraform: Lambda function from image, 1024 MB, 60 s, env', async () => {
    const fn = one(tf.resource.aws_lambda_function, 'aws_lambda_function');
    L.assertEq(fn.package_type, 'Image', 'package_type');
    L.assert(!fn.handler && !fn.runtime, 'image functions have no handler/runtime');
    L.assertEq(tfValue(fn.memory_size, tf), 1024, 'memory_size');
    L.assertEq(tfValue(fn.timeout, tf), 60, 'timeout');
    const env = fn.environment[0].variables;
    for (const k of REQUIRED_ENV) L.assert(k in env, `env ${k} missing`);
    L.assertEq(env.KIE_API_KEY, '${var.kie_api_key}', 'KIE_API_KEY');
    L.assertEq(env.USE_S3, '1', 'USE_S3');
    L.assert(/aws_s3_bucket\.\w+\.(bucket|id)/.test(env.S3_BUCKET), 'S3_BUCKET must reference the bucket');
    const reserved = Object.keys(env).filter((k) => RESERVED_ENV.test(k));
    L.assertEq(reserved, [], 'reserved Lambda env keys (Lambda sets AWS_REGION itself)');
    return lambdaLimits(env, 'terraform');
  });

  await L.check('terraform: HTTP API, proxy integration 2.0, $default auto-deploy stage, invoke permission', async () => {
    const api = one(tf.resource.aws_apigatewayv2_api, 'aws_apigatewayv2_api');
    L.assertEq(api.protocol_type, 'HTTP', 'protocol_type');
    L.assertEq(api.cors_configuration[0].allow_origins, '${var.cors_origins}', 'API CORS allow_origins');
    corsHeaders(api.cors_configuration[0].allow_headers, api.cors_configuration[0].expose_headers, 'terraform');
    const integ = one(tf.resource.aws_apigatewayv2_integration, 'aws_apigatewayv2_integration');
    L.assertEq([integ.integration_type, integ.integration_method, integ.payload_format_version], ['AWS_PROXY', 'POST', '2.0'], 'integration');
    L.assert(/aws_lambda_function\.\w+\.invoke_arn/.test(integ.integration_uri), 'integration_uri must be the function invoke_arn');
    for (const [n, r] of Object.entries(tf.resource.aws_apigatewayv2_route)) {
      L.assert(/^integrations\/\$\{aws_apigatewayv2_integration\.\w+\.id\}$/.test(r.target), `route ${n} target`);
    }
    const stage = one(tf.resource.aws_apigatewayv2_stage, 'aws_apigatewayv2_stage');
    L.assertEq([stage.name, stage.auto_deploy], ['$default', true], 'stage name/auto_deploy');
    const perm = one(tf.resource.aws_lambda_permission, 'aws_lambda_permission');
    L.assertEq(perm.principal, 'apigateway.amazonaws.com', 'permission principal');
    L.assert(/execution_arn\}\/\*\/\*$/.test(perm.source_arn), `permission source_arn ${perm.source_arn}`);
  });

  await L.check('terraform: terraform.tfvars.example parses and names only declared variables', async () => {
    const { parse } = require('@cdktf/hcl2json');
    const text = fs.readFileSync(path.join(L.TF_DIR, 'terraform.tfvars.example'), 'utf8');
    const vars = await parse('terraform.tfvars', text);
    const unknown = Object.keys(vars).filter((k) => !tf.variable[k]);
    L.assertEq(unknown, [], 'unknown variables in tfvars example');
    const required = Object.entries(tf.variable).filter(([, v]) => !('default' in v)).map(([k]) => k).sort();
    const missing = required.filter((k) => !(k in vars));
    L.assertEq(missing, [], 'required variables missing from tfvars example');
    return `sets ${Object.keys(vars).join(', ')}`;
  });

  // ------------------------------------------------------------ SAM
  await L.check('sam: template.yaml parses as CloudFormation YAML (!Ref/!Sub/!GetAtt)', async () => {
    sam = L.loadSam();
    L.assertEq(sam.Transform, 'AWS::Serverless-2016-10-31', 'Transform');
    return `${Object.keys(sam.Resources).length} resources`;
  });

  await L.check('sam: CloudFormation parser rejects an unknown tag (self-test)', async () => {
    const { yamlParse } = require('yaml-cfn');
    let threw = false;
    try {
      yamlParse('A: !NoSuchFunction x\n');
    } catch (e) {
      threw = true;
    }
    L.assert(threw, 'unknown tag accepted');
  });

  function samByType(type) {
    return Object.entries(sam.Resources).filter(([, r]) => r.Type === type);
  }

  await L.check('sam: image function, NoEcho KIE key, env matches Terraform', async () => {
    L.assert(sam, 'template.yaml failed to parse');
    const fns = samByType('AWS::Serverless::Function');
    L.assert(fns.length === 1, `expected one function, got ${fns.length}`);
    const [, fn] = fns[0];
    const p = fn.Properties;
    const g = (sam.Globals && sam.Globals.Function) || {};
    L.assertEq(p.PackageType, 'Image', 'PackageType');
    L.assertEq(p.MemorySize || g.MemorySize, 1024, 'MemorySize');
    L.assertEq(p.Timeout || g.Timeout, 60, 'Timeout');
    L.assert(fn.Metadata && fn.Metadata.Dockerfile && fs.existsSync(path.join(L.REPO, fn.Metadata.DockerContext || '.', fn.Metadata.Dockerfile)),
      'Metadata.Dockerfile/DockerContext must point at the repo Dockerfile (needed by sam build)');
    const key = sam.Parameters.KieApiKey;
    L.assert(key, 'parameter KieApiKey missing');
    L.assertEq(key.NoEcho, true, 'KieApiKey.NoEcho');
    L.assert(!('Default' in key), 'KieApiKey must not have a Default');
    const env = p.Environment.Variables;
    L.assertEq(env.KIE_API_KEY, { Ref: 'KieApiKey' }, 'KIE_API_KEY');
    L.assertEq(env.USE_S3, '1', 'USE_S3');
    L.assertEq(Object.keys(env).filter((k) => RESERVED_ENV.test(k)), [], 'reserved Lambda env keys');
    if (tf) {
      const tfEnv = one(tf.resource.aws_lambda_function, 'aws_lambda_function').environment[0].variables;
      L.assertEq(Object.keys(env).sort(), Object.keys(tfEnv).sort(), 'SAM env keys vs Terraform env keys');
      for (const k of ['KIE_TIMEOUT_SECONDS', 'MAX_UPLOAD_BYTES']) L.assertEq(env[k], tfEnv[k], `SAM ${k} vs Terraform`);
    }
    for (const [n, ev] of Object.entries(p.Events)) {
      L.assertEq([ev.Type, ev.Properties.PayloadFormatVersion], ['HttpApi', '2.0'], `event ${n}`);
      L.assertEq(ev.Properties.ApiId, { Ref: 'HttpApi' }, `event ${n} ApiId`);
    }
    return lambdaLimits(env, 'sam');
  });

  await L.check('sam: bucket private + CORS PUT, HTTP API CORS from parameter', async () => {
    const buckets = samByType('AWS::S3::Bucket');
    L.assert(buckets.length === 1, `expected one bucket, got ${buckets.length}`);
    const bp = buckets[0][1].Properties;
    const pab = bp.PublicAccessBlockConfiguration;
    for (const f of ['BlockPublicAcls', 'BlockPublicPolicy', 'IgnorePublicAcls', 'RestrictPublicBuckets']) L.assertEq(pab[f], true, f);
    L.assert(samByType('AWS::S3::BucketPolicy').length === 0, 'no bucket policy expected');
    const rule = bp.CorsConfiguration.CorsRules[0];
    L.assert(rule.AllowedMethods.includes('PUT'), 'bucket CORS must allow PUT');
    L.assertEq(rule.AllowedOrigins, { Ref: 'CorsOrigins' }, 'bucket CORS origins');
    const apis = samByType('AWS::Serverless::HttpApi');
    L.assert(apis.length === 1, 'one AWS::Serverless::HttpApi expected');
    L.assertEq(apis[0][1].Properties.CorsConfiguration.AllowOrigins, { Ref: 'CorsOrigins' }, 'HttpApi CORS origins');
    corsHeaders(apis[0][1].Properties.CorsConfiguration.AllowHeaders, apis[0][1].Properties.CorsConfiguration.ExposeHeaders, 'sam');
    L.assert(/the API's own origin/.test(sam.Parameters.CorsOrigins.Description || ''), 'CorsOrigins must tell how to allow the API\'s own origin (the bucket cannot reference the API)');
    L.assert(!/amazonaws\.com/.test(JSON.stringify(sam.Outputs)), 'Outputs must use ${AWS::URLSuffix}, not amazonaws.com (China/GovCloud partitions)');
    L.assert(/execute-api/.test(JSON.stringify(sam.Outputs.ApiUrl.Value)), 'Outputs.ApiUrl must be the execute-api URL');
  });

  await L.check('S3 retention: lifecycle rules expire the upload prefix and the tasks prefix, never the results prefix', async () => {
    // Terraform: one rule per prefix, by id
    const lc = one(tf.resource.aws_s3_bucket_lifecycle_configuration, 'aws_s3_bucket_lifecycle_configuration');
    L.assert(/aws_s3_bucket\.files\.(id|bucket)/.test(lc.bucket), 'lifecycle must target the files bucket');
    L.assertEq(lc.rule.map((x) => x.id).sort(), ['expire-tasks', 'expire-uploads'], 'lifecycle rules');
    const tfRule = (id) => lc.rule.find((x) => x.id === id);
    const r = tfRule('expire-uploads');
    const rt = tfRule('expire-tasks');
    for (const x of [r, rt]) L.assertEq(x.status, 'Enabled', `rule ${x.id} status`);
    const tfPrefix = r.filter[0].prefix;
    const tfTasksPrefix = tfLocals(rt.filter[0].prefix, tf);
    L.assertEq(r.expiration[0].days, '${var.upload_expiration_days}', 'expiration days from the variable');
    L.assert(tfValue(r.expiration[0].days, tf) >= 1, 'upload_expiration_days default must be at least 1');
    L.assertEq(rt.expiration[0].days, '${var.task_retention_days}', 'tasks expire after var.task_retention_days');
    L.assertEq(tfValue(rt.expiration[0].days, tf), 30, 'task_retention_days default');
    L.assert(tf.variable.task_retention_days.validation, 'task_retention_days has a validation (>= 1 day)');
    const env = tfEnv(tf);
    // SAM: the same two rules
    const bp = samByType('AWS::S3::Bucket')[0][1].Properties;
    const rules = bp.LifecycleConfiguration.Rules;
    L.assertEq(rules.map((x) => x.Id).sort(), ['expire-tasks', 'expire-uploads'], 'SAM lifecycle rules');
    const su = rules.find((x) => x.Id === 'expire-uploads');
    const st = rules.find((x) => x.Id === 'expire-tasks');
    L.assertEq([su.Status, su.ExpirationInDays], ['Enabled', { Ref: 'UploadExpirationDays' }], 'SAM uploads rule');
    L.assertEq([st.Status, st.ExpirationInDays], ['Enabled', { Ref: 'TaskRetentionDays' }], 'SAM tasks rule');
    L.assert(sam.Parameters.UploadExpirationDays.MinValue >= 1, 'UploadExpirationDays.MinValue');
    const trd = sam.Parameters.TaskRetentionDays;
    L.assert(trd && trd.Type === 'Number' && trd.Default === 30 && trd.MinValue >= 1,
      `SAM parameter TaskRetentionDays: Number, Default 30, MinValue >= 1 (got ${JSON.stringify(trd)})`);
    const samEnv = samByType('AWS::Serverless::Function')[0][1].Properties.Environment.Variables;
    // both agree with each other and with the environment they give the server
    const serverDefault = (k) => {
      const m = new RegExp(`^  ${k} .*\\[default: ([^\\]]*)\\]$`, 'm').exec(L.serverHelp());
      L.assert(m, `${k} missing from the server's --help`);
      return m[1];
    };
    for (const [name, prefix, tasks, e] of [['terraform', tfPrefix, tfTasksPrefix, env], ['sam', su.Prefix, st.Prefix, samEnv]]) {
      L.assertEq(prefix, e.S3_PREFIX, `${name}: the uploads rule's prefix must be the function's S3_PREFIX`);
      L.assertEq(tasks, e.S3_TASKS_PREFIX, `${name}: the tasks rule's prefix must be the function's S3_TASKS_PREFIX`);
      for (const x of [prefix, tasks]) L.assert(x && x.endsWith('/'), `${name}: a prefix ending in / (got ${x})`);
      L.assert(!String(e.S3_RESULTS_PREFIX).startsWith(prefix), `${name}: S3_RESULTS_PREFIX must be outside ${prefix}`);
      L.assert(!String(e.S3_RESULTS_PREFIX).startsWith(tasks), `${name}: S3_RESULTS_PREFIX must be outside ${tasks}`);
      L.assert(!tasks.startsWith(prefix) && !prefix.startsWith(tasks), `${name}: ${tasks} and ${prefix} must not overlap`);
    }
    L.assertEq([tfPrefix, tfTasksPrefix], [su.Prefix, st.Prefix], 'terraform and SAM expire the same prefixes');
    L.assertEq([env.S3_PREFIX, env.S3_RESULTS_PREFIX, env.S3_TASKS_PREFIX],
      [serverDefault('S3_PREFIX'), serverDefault('S3_RESULTS_PREFIX'), serverDefault('S3_TASKS_PREFIX')],
      'templates use the server defaults, so local and AWS keys look alike');
    return `expires ${tfPrefix} after ${tfValue(r.expiration[0].days, tf)} day(s), ${tfTasksPrefix} after ` +
      `${tfValue(rt.expiration[0].days, tf)}; results under ${env.S3_RESULTS_PREFIX} stay`;
  });

  await L.check('sam: IAM role has exactly the least-privilege actions', async () => {
    const [, fn] = samByType('AWS::Serverless::Function')[0];
    L.assert(!fn.Properties.Policies, 'function Policies would add AWSLambdaBasicExecutionRole; use the explicit Role');
    const roleRef = fn.Properties.Role;
    L.assert(roleRef && roleRef['Fn::GetAtt'], 'function Role must be !GetAtt <Role>.Arn');
    const role = sam.Resources[roleRef['Fn::GetAtt'][0]];
    L.assertEq(role.Type, 'AWS::IAM::Role', 'role type');
    L.assertEq(role.Properties.AssumeRolePolicyDocument.Statement[0].Principal.Service, 'lambda.amazonaws.com', 'trust principal');
    L.assert(!role.Properties.ManagedPolicyArns, 'no managed policies');
    const actions = new Set();
    const s3 = {};
    const env = fn.Properties.Environment.Variables;
    let lists = 0;
    for (const pol of role.Properties.Policies) {
      for (const st of pol.PolicyDocument.Statement) {
        L.assertEq(st.Effect, 'Allow', 'Effect');
        const acts = [].concat(st.Action);
        acts.forEach((a) => actions.add(a));
        L.assert(st.Resource !== '*', `Resource "*" for ${acts}`);
        if (acts.includes('s3:ListBucket')) {
          const cond = st.Condition || {};
          L.assertEq(Object.keys(cond), ['StringLike'], 'sam: s3:ListBucket condition operator');
          L.assertEq(Object.keys(cond.StringLike), ['s3:prefix'], 'sam: s3:ListBucket condition key');
          listStatement(acts, [].concat(st.Resource), [].concat(cond.StringLike['s3:prefix']),
            { 'Fn::GetAtt': ['FilesBucket', 'Arn'] }, env, 'sam');
          lists++;
        } else if (acts.some((a) => a.startsWith('s3:'))) {
          for (const r of [].concat(st.Resource)) {
            const m = /^\$\{FilesBucket\.Arn\}\/(.+)$/.exec((r && r['Fn::Sub']) || '');
            L.assert(m, `S3 actions must be scoped to objects of FilesBucket: ${JSON.stringify(r)}`);
            addS3(s3, m[1], acts.filter((a) => a.startsWith('s3:')));
          }
        }
      }
    }
    L.assertEq([...actions].sort(), LEAST_PRIVILEGE, 'IAM actions');
    L.assertEq(lists, 1, 'sam: statements with s3:ListBucket');
    L.assertEq(sortedObj(s3), sortedObj(expectedS3(env)), 'S3 actions per key prefix');
    return Object.keys(sortedObj(s3)).join(' ') + ` list:${env.S3_TASKS_PREFIX}*`;
  });

  // ------------------------------------------------------------ docker-compose.yml
  await L.check('compose: api on 8000 with optional .env + uploads volume, tunnel profile', async () => {
    const { yamlParse } = require('yaml-cfn');
    const c = yamlParse(fs.readFileSync(L.COMPOSE_FILE, 'utf8'));
    const api = c.services.api;
    L.assert(api.ports.includes('127.0.0.1:8000:8000'), 'api must publish 127.0.0.1:8000:8000 (loopback by default; the tunnel is the public way in)');
    L.assertEq(api.env_file, [{ path: '.env', required: false }], 'api env_file');
    const df = L.loadDockerfile();
    const vol = api.volumes.map((v) => String(v).split(':')[1]);
    L.assert(df.runtimeCfg.volumes.every((v) => vol.includes(v)), `compose volumes ${vol} must cover Dockerfile VOLUME ${df.runtimeCfg.volumes}`);
    L.assertEq(api.environment.HOST, '0.0.0.0', 'api HOST (published ports need 0.0.0.0)');
    for (const k of ['PUBLIC_BASE_URL', 'CLOUDFLARED_METRICS_URL']) L.assert(k in api.environment, `api environment must pass ${k}`);
    const t = c.services.tunnel;
    L.assertEq(t.profiles, ['tunnel'], 'tunnel profiles');
    L.assert(/^cloudflare\/cloudflared(:|$)/.test(t.image), 'tunnel image');
    L.assertEq(t.command, 'tunnel --no-autoupdate --metrics 0.0.0.0:2000 --url http://api:8000', 'tunnel command');
    const doc = fs.readFileSync(L.COMPOSE_FILE, 'utf8');
    L.assert(doc.includes('PUBLIC_BASE_URL=auto') && doc.includes('CLOUDFLARED_METRICS_URL=http://tunnel:2000'), 'compose file must document the tunnel variables');
  });

  // ------------------------------------------------------------ README: Deploy to AWS
  await L.check("docs: README's AWS section names only real outputs, variables, parameters and routes", async () => {
    const readme = fs.readFileSync(path.join(L.REPO, 'README.md'), 'utf8');
    const start = readme.indexOf('\n## Deploy to AWS');
    if (start < 0) throw new Error('README.md has no "## Deploy to AWS" section');
    const next = readme.indexOf('\n## ', start + 1);
    const doc = readme.slice(start, next < 0 ? undefined : next);
    const errs = [];
    const tfOuts = [...doc.matchAll(/terraform output(?: -raw)? (\w+)/g)].map((m) => m[1]);
    for (const o of tfOuts) if (!tf.output[o]) errs.push(`terraform output ${o} does not exist`);
    for (const m of doc.matchAll(/-var[ =]"?(\w+)=/g)) if (!tf.variable[m[1]]) errs.push(`-var ${m[1]} is not a variable`);
    for (const m of doc.matchAll(/-target=([\w.]+)/g)) {
      const [type, name] = m[1].split('.');
      if (!(tf.resource[type] && tf.resource[type][name])) errs.push(`-target ${m[1]} does not exist`);
    }
    const samOuts = [...doc.matchAll(/OutputKey=='(\w+)'/g)].map((m) => m[1]);
    for (const o of samOuts) if (!sam.Outputs[o]) errs.push(`SAM output ${o} does not exist`);
    // --parameter-overrides Name=value ... (continued lines ending in a backslash)
    for (const m of doc.matchAll(/--parameter-overrides((?:[^\n]*\\\n)*[^\n]*)/g)) {
      for (const p of m[1].matchAll(/(?:^|\s)(\w+)=/g)) if (!sam.Parameters[p[1]]) errs.push(`SAM parameter ${p[1]} does not exist`);
    }
    for (const m of doc.matchAll(/Parameter `(\w+)`|`(\w+)`: your/g)) {
      const p = m[1] || m[2];
      if (!sam.Parameters[p]) errs.push(`SAM parameter ${p} (guided answers) does not exist`);
    }
    const routePaths = new Set(L.routesFromTerraform(tf).map((r) => r.split(' ')[1]));
    const curled = new Set();
    for (const line of doc.split('\n')) {
      for (const m of line.matchAll(/\$API(\/[\w\-.\/]*)/g)) {
        if (!routePaths.has(m[1])) errs.push(`path ${m[1]} used with $API is not a route`);
        if (/curl/.test(line)) curled.add(m[1]);
      }
    }
    for (const p of ['/upload', '/generate', '/status']) if (!curled.has(p)) errs.push(`docs never curl $API${p}`);
    L.assert(tfOuts.length >= 3 && samOuts.length >= 1, `docs should read outputs (found terraform: ${tfOuts}, sam: ${samOuts})`);
    if (errs.length) throw new Error(errs.join('\n'));
    return `${tfOuts.length} terraform outputs, ${samOuts.length} SAM outputs, curls: ${[...curled].join(' ')}`;
  });

  L.finish();
})();
