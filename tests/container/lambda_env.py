#!/usr/bin/python3
"""The environment the deployed function gets, read from template.yaml (SAM) and infra/terraform/main.tf.

    /usr/bin/python3 tests/container/lambda_env.py [KEY=VALUE ...]     -> one KEY=VALUE per line, NUL-free

Parameters resolve to their defaults, other references to placeholders (KIE_API_KEY=test-key, the bucket to
a made-up name). Both templates must set the same variables (exit 1 otherwise). Then what Lambda itself puts in
every function's environment is added (function name, region, temporary credentials with a session token,
the Runtime API address, task root, ...), and last the KEY=VALUE arguments (overrides; KEY= removes KEY).
Needs python3-yaml.
"""
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Tag:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


def cfn_loader():
    class L(yaml.SafeLoader):
        pass

    def construct(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            v = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            v = loader.construct_sequence(node, deep=True)
        else:
            v = loader.construct_mapping(node, deep=True)
        return Tag(suffix, v)

    L.add_multi_constructor("!", construct)
    return L


def resolve(v, params, resources):
    if isinstance(v, Tag):
        if v.tag == "Ref":
            if v.value in params:
                p = params[v.value]
                d = p.get("Default")
                if d is None:
                    return "test-key" if "Key" in v.value else f"test-{v.value.lower()}"
                if p.get("Type") == "CommaDelimitedList":
                    return [s.strip() for s in str(d).split(",")]
                return str(d)
            if v.value in resources:
                return f"{v.value.lower()}-123456789012-eu-west-1"
            return f"test-{v.value.lower()}"
        if v.tag == "Join":
            sep, items = v.value
            items = resolve(items, params, resources)
            out = []
            for it in items if isinstance(items, list) else [items]:
                r = resolve(it, params, resources)
                out += r if isinstance(r, list) else [r]
            return sep.join(str(x) for x in out)
        if v.tag == "Sub":
            s = v.value if isinstance(v.value, str) else v.value[0]
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(resolve(Tag("Ref", m.group(1)), params, resources)), s)
        if v.tag == "GetAtt":
            return f"test-{str(v.value).lower().replace('.', '-')}"
        raise ValueError(f"unsupported tag !{v.tag}")
    if isinstance(v, list):
        return [resolve(x, params, resources) for x in v]
    return "" if v is None else str(v)


def sam_env():
    t = yaml.load(open(os.path.join(ROOT, "template.yaml")), Loader=cfn_loader())
    params, resources = t.get("Parameters") or {}, t.get("Resources") or {}
    fns = [r for r in resources.values() if r.get("Type") == "AWS::Serverless::Function"]
    if len(fns) != 1:
        sys.exit(f"lambda_env: want one AWS::Serverless::Function in template.yaml, found {len(fns)}")
    variables = ((fns[0].get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
    return {k: resolve(v, params, resources) for k, v in variables.items()}


def terraform_keys():
    text = open(os.path.join(ROOT, "infra", "terraform", "main.tf")).read()
    m = re.search(r'resource\s+"aws_lambda_function"[^{]*\{.*?\benvironment\s*\{.*?\bvariables\s*=\s*\{(.*?)\n\s*\}', text, re.S)
    if not m:
        sys.exit("lambda_env: no aws_lambda_function environment { variables = { ... } } in infra/terraform/main.tf")
    return {k for k in re.findall(r"^\s*([A-Z][A-Z0-9_]*)\s*=", m.group(1), re.M)}


def main(argv):
    env = sam_env()
    tf = terraform_keys()
    if set(env) != tf:
        sys.exit(f"lambda_env: template.yaml and main.tf set different variables: "
                 f"only SAM {sorted(set(env) - tf)}, only Terraform {sorted(tf - set(env))}")
    # What Lambda adds to every function (docs: "Defined runtime environment variables").
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": "product-photo-api",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/product-photo-api",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/12/01/[$LATEST]0123456789abcdef0123456789abcdef",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_Image",
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLEEXAMPLE00",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjEXAMPLEsessiontoken",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
    })
    for a in argv:
        k, _, v = a.partition("=")
        if v == "" and a.endswith("="):
            env.pop(k, None)
        else:
            env[k] = v
    for k, v in env.items():
        if "\n" in v or "\0" in v:
            sys.exit(f"lambda_env: {k} has a newline")
        print(f"{k}={v}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
