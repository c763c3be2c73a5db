#!/usr/bin/env bash
# (4) The real IaC tools, offline: terraform fmt / init / validate, terraform apply + destroy against a
# local moto_server (127.0.0.1 only, fake credentials, in a temporary COPY of infra/terraform — the
# endpoint override is never written into the repo), and cfn-lint on template.yaml (it runs the SAM
# transform). Prints one PASS/FAIL line per check (run.sh counts them); a tool that is not installed
# prints one "SKIPPED: <tool> not installed" line instead and fails nothing.
#
# Tools: terraform >= 1.5 with the hashicorp/aws provider reachable by `terraform init` — set
# TF_PLUGIN_MIRROR=/path/to/filesystem-mirror (default /opt/tf-plugins when it exists) to stay offline;
# moto_server (pip install 'moto[server]') and boto3 for the apply; cfn-lint (pip install cfn-lint).
# Wall time about 2 min on 2 cores, most of it the AWS provider polling moto for the S3 lifecycle rule
# to settle (~55 s); moto is lenient, so a pass is necessary, not sufficient.
set -u -o pipefail
cd "$(dirname "$0")/../.." || exit 2
REPO=$PWD
TF_SRC=$REPO/infra/terraform

tmp=$(mktemp -d) || exit 2
moto_pid=""
cleanup() {
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null; wait "$moto_pid" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

failed=0
pass() { echo "PASS $1${2:+ ($2)}"; }
fail() {
  failed=1
  echo "FAIL $1"
  [ -s "${2:-/dev/null}" ] && tail -n 25 "$2" | sed 's/^/     /'
}
secs() { echo "$(( $(date +%s) - $1 )) s"; }

have() { command -v "$1" >/dev/null 2>&1; }

# ------------------------------------------------------------ terraform
if ! have terraform; then
  echo "SKIPPED: terraform not installed"
else
  mirror=${TF_PLUGIN_MIRROR:-}
  [ -z "$mirror" ] && [ -d /opt/tf-plugins ] && mirror=/opt/tf-plugins
  if [ -n "$mirror" ]; then
    printf 'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' "$mirror" >"$tmp/tf.rc"
    export TF_CLI_CONFIG_FILE=$tmp/tf.rc
  fi
  export TF_IN_AUTOMATION=1 TF_CLI_ARGS_apply=-no-color TF_CLI_ARGS_destroy=-no-color TF_CLI_ARGS_init=-no-color TF_CLI_ARGS_validate=-no-color TF_INPUT=0 CHECKPOINT_DISABLE=1

  t0=$(date +%s)
  if terraform fmt -check -recursive -diff "$TF_SRC" >"$tmp/fmt.log" 2>&1; then
    pass "terraform fmt -check -recursive infra/terraform" "$(secs "$t0")"
  else
    fail "terraform fmt -check -recursive infra/terraform (run: terraform fmt -recursive infra/terraform)" "$tmp/fmt.log"
  fi

  # a copy without local state or plugins: what a fresh clone would run
  mkdir -p "$tmp/tf"
  (cd "$TF_SRC" && tar --exclude=.terraform --exclude='*.tfstate*' --exclude=terraform.tfvars -cf - .) | (cd "$tmp/tf" && tar -xf -)
  W=$tmp/tf
  # the committed lock file must already name the provider init selects (no silent re-locking)
  lockmode="-lockfile=readonly"

  t0=$(date +%s)
  init_ok=0
  if [ ! -f "$W/.terraform.lock.hcl" ]; then
    echo "infra/terraform/.terraform.lock.hcl is not committed" >"$tmp/init.log"
  elif terraform -chdir="$W" init -backend=false $lockmode >"$tmp/init.log" 2>&1 &&
    terraform -chdir="$W" validate >>"$tmp/init.log" 2>&1; then
    init_ok=1
    pass "terraform init (${mirror:-registry}${lockmode:+, $lockmode}) + validate" "$(secs "$t0")"
  else
    fail "terraform init (${mirror:-registry}${lockmode:+, $lockmode}) + validate" "$tmp/init.log"
  fi

  if [ "$init_ok" -ne 1 ]; then
    fail "terraform apply + destroy against moto_server (init/validate failed)"
  elif ! have moto_server; then
    echo "SKIPPED: moto_server not installed"
  elif ! python3 -c 'import boto3' 2>/dev/null; then
    echo "SKIPPED: boto3 not installed (needed to put an image manifest into moto's ECR)"
  else
    t0=$(date +%s)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    moto_server -H 127.0.0.1 -p "$port" >"$tmp/moto.log" 2>&1 &
    moto_pid=$!
    ep=http://127.0.0.1:$port
    for _ in $(seq 1 100); do
      curl -fs "$ep/moto-api/" >/dev/null 2>&1 && break
      sleep 0.1
    done
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
    export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
    unset AWS_PROFILE
    cat >"$W/moto_override.tf" <<EOF
provider "aws" {
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    apigatewayv2   = "$ep"
    cloudwatch     = "$ep"
    cloudwatchlogs = "$ep"
    ecr            = "$ep"
    iam            = "$ep"
    lambda         = "$ep"
    s3             = "$ep"
    sts            = "$ep"
  }
}
EOF
    vars=(-var aws_region=us-east-1 -var account_id=123456789012 -var kie_api_key=moto-test-key)
    log=$tmp/apply.log
    ok=1
    # ECR first: the function's image must exist before moto creates the function
    terraform -chdir="$W" apply -auto-approve "${vars[@]}" -target=aws_ecr_repository.api >"$log" 2>&1 || ok=0
    if [ "$ok" -eq 1 ]; then
      MOTO=$ep python3 - >>"$log" 2>&1 <<'PY' || ok=0
import json, os, boto3
ecr = boto3.client("ecr", endpoint_url=os.environ["MOTO"], region_name="us-east-1")
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023,
                       "digest": "sha256:" + "a" * 64},
            "layers": []}
ecr.put_image(repositoryName="product-photo-api", imageManifest=json.dumps(manifest), imageTag="latest")
print("image manifest put into moto ECR")
PY
    fi
    [ "$ok" -eq 1 ] && { terraform -chdir="$W" apply -auto-approve -refresh=false "${vars[@]}" >>"$log" 2>&1 || ok=0; }
    created=$(terraform -chdir="$W" state list 2>/dev/null | grep -vc '^data\.')
    endpoint=""
    if [ "$ok" -eq 1 ]; then
      terraform -chdir="$W" output -json >"$tmp/outputs.json" 2>>"$log" || ok=0
      # README: API=$(terraform output -raw api_endpoint); curl "$API/healthz" — no trailing "/"
      endpoint=$(terraform -chdir="$W" output -raw api_endpoint 2>>"$log")
      case $endpoint in
        http*[!/]) ;;
        *) echo "output api_endpoint is '$endpoint': not a URL without a trailing /" >>"$log"; ok=0 ;;
      esac
      # the function's PUBLIC_BASE_URL (KIE's callBackUrl base) is the deployed API's endpoint
      pbu=$(terraform -chdir="$W" show -json 2>>"$log" | python3 -c 'import json,sys
for r in json.load(sys.stdin)["values"]["root_module"]["resources"]:
    if r["address"] == "aws_lambda_function.api":
        print(r["values"]["environment"][0]["variables"].get("PUBLIC_BASE_URL", ""))' 2>>"$log")
      if [ -z "$endpoint" ] || [ "$pbu" != "$endpoint" ]; then
        echo "function PUBLIC_BASE_URL is '$pbu', api_endpoint '$endpoint'" >>"$log"; ok=0
      fi
      # what moto now holds for the task store: the bucket's lifecycle rule for tasks/ (30 days by
      # default), the role's Get/Put/Delete on tasks/* and ListBucket limited to the tasks/ prefix, and
      # S3_TASKS_PREFIX in the function's environment
      tasks=$(MOTO=$ep BUCKET=$(terraform -chdir="$W" output -raw bucket_name 2>>"$log") python3 - 2>>"$log" <<'PY'
import json, os, boto3
kw = dict(endpoint_url=os.environ["MOTO"], region_name="us-east-1")
s3, iam, lam = boto3.client("s3", **kw), boto3.client("iam", **kw), boto3.client("lambda", **kw)
bucket = os.environ["BUCKET"]
bad = []
rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
r = rules.get("expire-tasks", {})
if r.get("Status") != "Enabled" or r.get("Filter", {}).get("Prefix") != "tasks/" or r.get("Expiration", {}).get("Days") != 30:
    bad.append(f"lifecycle rule expire-tasks: {r}")
role = "product-photo-api-lambda"
doc = iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"]
doc = json.loads(doc) if isinstance(doc, str) else doc
sts = {s.get("Sid"): s for s in doc["Statement"]}
acts = lambda s: sorted([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
res = lambda s: [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
t = sts.get("TasksReadWriteDelete")
if not t or acts(t) != ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"] or res(t) != [f"arn:aws:s3:::{bucket}/tasks/*"]:
    bad.append(f"TasksReadWriteDelete: {t}")
lst = sts.get("TasksList")
prefix = (lst or {}).get("Condition", {}).get("StringLike", {}).get("s3:prefix")
if not lst or acts(lst) != ["s3:ListBucket"] or res(lst) != [f"arn:aws:s3:::{bucket}"] or prefix not in ("tasks/*", ["tasks/*"]):
    bad.append(f"TasksList: {lst}")
env = lam.get_function_configuration(FunctionName="product-photo-api")["Environment"]["Variables"]
if env.get("S3_TASKS_PREFIX") != "tasks/":
    bad.append(f"S3_TASKS_PREFIX={env.get('S3_TASKS_PREFIX')}")
print("; ".join(bad) if bad else f"tasks/ expires after {r['Expiration']['Days']} days, role may Get/Put/Delete it and list it")
PY
)
      case $tasks in
        "tasks/ expires"*) ;;
        *) echo "task store in moto: ${tasks:-no answer}" >>"$log"; ok=0 ;;
      esac
    fi
    # the repository keeps no force_delete (a real destroy must not silently drop pushed images):
    # empty it here, as a user would before `terraform destroy`
    MOTO=$ep python3 -c 'import os, boto3; e = boto3.client("ecr", endpoint_url=os.environ["MOTO"], region_name="us-east-1"); e.batch_delete_image(repositoryName="product-photo-api", imageIds=[{"imageTag": "latest"}])' >>"$log" 2>&1
    destroy_ok=1
    terraform -chdir="$W" destroy -auto-approve -refresh=false "${vars[@]}" >>"$log" 2>&1 || destroy_ok=0
    left=$(terraform -chdir="$W" state list 2>/dev/null | grep -vc '^data\.')
    if [ "$ok" -eq 1 ] && [ "$destroy_ok" -eq 1 ] && [ "$left" -eq 0 ]; then
      pass "terraform apply + destroy against moto_server on 127.0.0.1:$port" "$created resources created and destroyed, api_endpoint = PUBLIC_BASE_URL = $endpoint, callBackUrl $endpoint/kie/callback, $tasks, $(secs "$t0")"
    else
      fail "terraform apply + destroy against moto_server on 127.0.0.1:$port (apply ok=$ok, destroy ok=$destroy_ok, left=$left)" "$log"
    fi
    kill "$moto_pid" 2>/dev/null
    wait "$moto_pid" 2>/dev/null
    moto_pid=""
  fi
fi

# ------------------------------------------------------------ cfn-lint
if ! have cfn-lint; then
  echo "SKIPPED: cfn-lint not installed"
else
  t0=$(date +%s)
  if cfn-lint template.yaml >"$tmp/cfn.log" 2>&1; then
    pass "cfn-lint template.yaml" "$(secs "$t0")"
  else
    fail "cfn-lint template.yaml" "$tmp/cfn.log"
  fi
fi

exit "$failed"
