#!/usr/bin/python3
"""Static checks of Dockerfile and docker-compose.yml, and of the one against the other.

    /usr/bin/python3 tests/container/check_files.py [--dockerfile F] [--compose F] [--self-test]

Needs python3-yaml (Debian). Prints "ok - ..." / "FAIL - ..." lines; exit status 1 if any check failed.
--self-test also breaks copies of the files the ways they used to be broken (a `# syntax=` line, the adapter
pinned to a release candidate or by tag only, compose publishing 0.0.0.0:8000, cloudflared :latest, ...) and
checks that each breakage is caught by its check.
"""
import json
import os
import re
import shlex
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADAPTER_REPO = "public.ecr.aws/awsguru/aws-lambda-adapter"


# ---------------------------------------------------------------- Dockerfile
def parse_dockerfile(text):
    """-> {"directives": {name: value}, "stages": [{"name", "from", "instr": [(KEYWORD, args, raw)]}]}"""
    lines = text.split("\n")
    directives = {}
    i = 0
    # Parser directives: "# key=value" lines before anything else (a blank line or comment ends them).
    while i < len(lines):
        m = re.match(r"^#\s*([A-Za-z_]+)\s*=\s*(.*?)\s*$", lines[i])
        if not m:
            break
        directives[m.group(1).lower()] = m.group(2)
        i += 1
    stages = []
    buf = ""
    for line in lines[i:] + [""]:
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):
            continue  # comment inside a continued instruction
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        if not buf.strip():
            buf = ""
            continue
        kw, _, args = buf.strip().partition(" ")
        kw = kw.upper()
        args = args.strip()
        if kw == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"name": name, "from": parts[0], "instr": []})
        elif stages:
            stages[-1]["instr"].append((kw, args, buf.strip()))
        buf = ""
    return {"directives": directives, "stages": stages}


def exec_form(args):
    try:
        v = json.loads(args)
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return v
    except ValueError:
        pass
    return None


def runtime_config(df):
    st = df["stages"][-1]
    cfg = {"expose": [], "volumes": [], "env": {}, "user": None, "healthcheck": None, "copies": []}
    for kw, args, raw in st["instr"]:
        if kw == "EXPOSE":
            cfg["expose"] += [p.split("/")[0] for p in args.split()]
        elif kw == "VOLUME":
            cfg["volumes"] += exec_form(args) or args.split()
        elif kw == "USER":
            cfg["user"] = args.split(":")[0]
        elif kw == "ENV":
            for tok in shlex.split(args):
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    cfg["env"][k] = v
        elif kw == "HEALTHCHECK":
            m = re.search(r"\bCMD\s+(.*)$", args)
            cfg["healthcheck"] = exec_form(m.group(1)) if m else None
            cfg["healthcheck_raw"] = args
        elif kw == "COPY":
            cfg["copies"].append(args)
    return cfg


# ---------------------------------------------------------------- compose
def interpolate(s):
    """Compose variable substitution with an empty environment: ${V:-d} / ${V-d} -> d, ${V} / $V -> ''."""
    if not isinstance(s, str):
        return s
    out = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?-)([^}]*)\}", lambda m: m.group(2), s)
    out = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?[?+][^}]*)?\}", "", out)
    out = re.sub(r"\$(?!\$)[A-Za-z_][A-Za-z0-9_]*", "", out)
    return out.replace("$$", "$")


def port_mapping(p):
    """short or long syntax -> (host_ip, published, target)"""
    if isinstance(p, dict):
        return (str(p.get("host_ip", "")), str(p.get("published", "")), str(p.get("target", "")))
    p = interpolate(str(p)).split("/")[0]
    parts = p.rsplit(":", 2)
    if len(parts) == 3:
        return tuple(parts)
    if len(parts) == 2:
        return ("", parts[0], parts[1])
    return ("", "", parts[0])


def env_map(env):
    if isinstance(env, list):
        return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: interpolate("" if v is None else str(v)) for k, v in (env or {}).items()}


# ---------------------------------------------------------------- .dockerignore
def dockerignore_rules(text):
    """moby/patternmatcher: root-relative patterns, `*` within a segment, `**` across, `!` re-includes, last wins."""
    rules = []
    for line in text.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = os.path.normpath((line[1:] if neg else line).strip().lstrip("/")).rstrip("/")
        rx, i = "", 0
        while i < len(pat):
            c = pat[i]
            if pat.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
                continue
            if pat.startswith("**", i):
                rx, i = rx + ".*", i + 2
                continue
            rx += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
            i += 1
        rules.append((neg, re.compile(rx + r"\Z"), pat))
    return rules


def dockerignored(rules, path):
    parts = path.split("/")
    prefixes = ["/".join(parts[:i + 1]) for i in range(len(parts))]
    ignored = False
    for neg, rx, _ in rules:
        if any(rx.match(p) for p in prefixes):
            ignored = not neg
    return ignored


def context_files(root, rules):
    """The files under root, not descending into directories .dockerignore drops whole (build/, .git/, ...)."""
    def prunable(d):
        if not dockerignored(rules, d):
            return False
        return not any(neg and ("*" in pat.split("/")[0] or pat == d or pat.startswith(d + "/"))
                       for neg, _, pat in rules)
    out = []
    for d, dirs, files in os.walk(root):
        rel = os.path.normpath(os.path.relpath(d, root))
        rel = "" if rel == "." else rel + "/"
        dirs[:] = [x for x in dirs if x != ".git" and not prunable(rel + x)]
        out += [rel + f for f in files]
    return sorted(out)


# What the build stage's `make` reads: the Makefile, the sources, the embedded web files and openapi.json.
BUILD_INPUTS = re.compile(r"(Makefile|(src|include|tools|web)/.*|docs/openapi\.json)\Z")


# ---------------------------------------------------------------- checks
def checks(df_text, compose_text, dockerignore_text=None, files=None):
    """-> list of (name, error or None)"""
    results = []

    def check(name):
        def deco(fn):
            try:
                fn()
                results.append((name, None))
            except AssertionError as e:
                results.append((name, str(e) or "assertion failed"))
            except Exception as e:  # a parse failure is a failure of that check
                results.append((name, f"{type(e).__name__}: {e}"))
            return fn
        return deco

    df = parse_dockerfile(df_text)
    cfg = runtime_config(df)
    compose = yaml.safe_load(compose_text) or {}
    services = compose.get("services") or {}
    api = services.get("api") or {}
    tunnel = services.get("tunnel") or {}

    @check("dockerfile: no `# syntax=` parser directive (it makes BuildKit pull a frontend image; nothing here needs one)")
    def _():
        assert "syntax" not in df["directives"], f"found `# syntax={df['directives'].get('syntax')}`"
        assert not re.search(r"(?im)^#\s*syntax\s*=", df_text), "a `# syntax=` line is present"

    @check("dockerfile: Lambda Web Adapter pinned to a release (not a pre-release) by tag and digest")
    def _():
        refs = re.findall(r"(?:--from=|^FROM\s+)(\S*aws-lambda-adapter\S*)", df_text, re.M)
        assert refs, "no aws-lambda-adapter reference"
        for ref in refs:
            m = re.fullmatch(re.escape(ADAPTER_REPO) + r":([^@\s]+)@sha256:([0-9a-f]{64})", ref)
            assert m, f"{ref}: want {ADAPTER_REPO}:<version>@sha256:<64 hex digits>"
            assert re.fullmatch(r"\d+\.\d+\.\d+", m.group(1)), f"{ref}: tag {m.group(1)} is not a plain release version"

    @check("dockerfile: runtime stage has EXPOSE, exec-form HEALTHCHECK, a non-root USER and one VOLUME")
    def _():
        assert cfg["expose"], "no EXPOSE"
        assert cfg["healthcheck"], f"HEALTHCHECK missing or not exec form: {cfg.get('healthcheck_raw')}"
        assert cfg["user"] and cfg["user"] not in ("root", "0"), f"USER {cfg['user']}"
        assert len(cfg["volumes"]) == 1, f"VOLUME {cfg['volumes']}"
        assert cfg["env"].get("PORT") in cfg["expose"], f"ENV PORT={cfg['env'].get('PORT')} not in EXPOSE {cfg['expose']}"

    @check("compose: services are api (default) and tunnel (profile `tunnel`)")
    def _():
        assert sorted(services) == ["api", "tunnel"], f"services: {sorted(services)}"
        assert not api.get("profiles"), f"api has profiles {api.get('profiles')}: `docker compose up` would not start it"
        assert tunnel.get("profiles") == ["tunnel"], f"tunnel profiles: {tunnel.get('profiles')}"

    @check("compose: api is built from this Dockerfile")
    def _():
        b = api.get("build")
        ctx, dockerfile = (b, "Dockerfile") if isinstance(b, str) else ((b or {}).get("context"), (b or {}).get("dockerfile", "Dockerfile"))
        assert ctx in (".", "./"), f"build context {ctx!r}"
        assert dockerfile == "Dockerfile", f"dockerfile {dockerfile!r}"

    @check("compose: api publishes 127.0.0.1:8000 -> EXPOSE port by default (loopback only)")
    def _():
        ports = [port_mapping(p) for p in api.get("ports") or []]
        assert len(ports) == 1, f"ports: {api.get('ports')}"
        host_ip, published, target = ports[0]
        assert target in cfg["expose"], f"container port {target} is not EXPOSEd ({cfg['expose']})"
        assert host_ip == "127.0.0.1", f"published on {host_ip or 'every interface (0.0.0.0)'}, not 127.0.0.1"
        assert published == "8000", f"host port {published}"
        env = env_map(api.get("environment"))
        if "PORT" in env:
            assert env["PORT"] == target, f"environment PORT={env['PORT']} but the mapping targets {target}"

    @check("compose: api's uploads volume is the Dockerfile's VOLUME, as a declared named volume")
    def _():
        vols = api.get("volumes") or []
        targets = {}
        for v in vols:
            if isinstance(v, dict):
                targets[v.get("target")] = v.get("source")
            else:
                src, _, rest = str(v).partition(":")
                targets[rest.split(":")[0]] = src
        assert cfg["volumes"] and cfg["volumes"][0] in targets, f"volumes {vols} do not mount VOLUME {cfg['volumes']}"
        src = targets[cfg["volumes"][0]]
        assert src in (compose.get("volumes") or {}), f"{src} is not a declared named volume"

    @check("compose: api's healthcheck is the image's HEALTHCHECK (inherited or the same command)")
    def _():
        assert cfg["healthcheck"], "the Dockerfile has no exec-form HEALTHCHECK"
        hc = api.get("healthcheck")
        if hc is None:
            return
        assert not hc.get("disable"), "healthcheck disabled, but tunnel waits for service_healthy"
        test = hc.get("test")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        assert test == ["CMD"] + cfg["healthcheck"], f"test {test} != CMD {cfg['healthcheck']}"

    @check("compose: api runs as the Dockerfile's USER")
    def _():
        u = api.get("user")
        assert u is None or str(u).split(":")[0] in (cfg["user"], "10001"), f"user {u} overrides USER {cfg['user']}"

    @check("compose: cloudflared pinned to a release version, waits for a healthy api, reaches it on EXPOSE")
    def _():
        img = str(tunnel.get("image", ""))
        m = re.fullmatch(r"(?:docker\.io/)?cloudflare/cloudflared:(\d{4}\.\d+\.\d+)(?:@sha256:[0-9a-f]{64})?", img)
        assert m, f"image {img!r}: want cloudflare/cloudflared:<YYYY.M.P> (not latest, not untagged)"
        dep = (tunnel.get("depends_on") or {})
        assert isinstance(dep, dict) and (dep.get("api") or {}).get("condition") == "service_healthy", \
            f"depends_on {dep}: want api: condition: service_healthy"
        cmd = tunnel.get("command")
        cmd = shlex.split(cmd) if isinstance(cmd, str) else list(cmd or [])
        assert "--url" in cmd, f"command {cmd} has no --url"
        url = cmd[cmd.index("--url") + 1]
        assert re.fullmatch(r"http://api:(\d+)", url) and url.rsplit(":", 1)[1] in cfg["expose"], \
            f"--url {url}: want http://api:<EXPOSE port {cfg['expose']}>"
        assert not tunnel.get("ports"), f"tunnel publishes {tunnel.get('ports')}: the metrics server stays inside"
        if "--metrics" in cmd:
            mport = cmd[cmd.index("--metrics") + 1].rsplit(":", 1)[1]
            murl = env_map(api.get("environment")).get("CLOUDFLARED_METRICS_URL", "")
            assert murl == f"http://tunnel:{mport}", f"api CLOUDFLARED_METRICS_URL={murl!r} but cloudflared --metrics :{mport}"

    @check("dockerignore: the build context is exactly what `make` reads (README edits do not rebuild the build stage)")
    def _():
        if dockerignore_text is None:
            return
        rules = dockerignore_rules(dockerignore_text)
        kept = [f for f in files if not dockerignored(rules, f)]
        extra = [f for f in kept if not BUILD_INPUTS.match(f)]
        missing = [f for f in files if BUILD_INPUTS.match(f) and dockerignored(rules, f)
                   and "/node_modules/" not in f and "__pycache__" not in f]
        assert not extra, f"in the context but not read by make: {extra[:8]}"
        assert not missing, f"build inputs left out: {missing[:8]}"

    return results


# ---------------------------------------------------------------- self-test: each check catches its defect
MUTATIONS = [
    # (check name prefix, what, file, function text -> broken text)
    ("dockerfile: no `# syntax=`", "a `# syntax=docker/dockerfile:1` first line", "df",
     lambda t: "# syntax=docker/dockerfile:1\n" + t),
    ("dockerfile: Lambda Web Adapter pinned", "the adapter at 1.0.0-rc1", "df",
     lambda t: re.sub(r"aws-lambda-adapter:[^\s]+", "aws-lambda-adapter:1.0.0-rc1", t)),
    ("dockerfile: Lambda Web Adapter pinned", "the adapter by tag only", "df",
     lambda t: re.sub(r"(aws-lambda-adapter:[^@\s]+)@sha256:[0-9a-f]+", r"\1", t)),
    ("compose: api publishes", 'ports "8000:8000" (every interface)', "compose",
     lambda t: re.sub(r'- "[^"\n]*:8000:8000"', '- "8000:8000"', t)),
    ("compose: cloudflared pinned", "cloudflared:latest", "compose",
     lambda t: re.sub(r"cloudflare/cloudflared:\S+", "cloudflare/cloudflared:latest", t)),
    ("compose: services are", "api behind a profile", "compose",
     lambda t: t.replace("    build: .\n", "    build: .\n    profiles: [\"api\"]\n", 1)),
    ("compose: api's healthcheck", "a different healthcheck command", "compose",
     lambda t: t.replace("    restart: unless-stopped\n",
                         "    healthcheck:\n      test: [\"CMD\", \"curl\", \"-f\", \"http://localhost:8000/\"]\n"
                         "    restart: unless-stopped\n", 1)),
    ("compose: api's uploads volume", "the volume at another path", "compose",
     lambda t: t.replace("uploads:/app/uploads", "uploads:/data")),
    ("dockerignore: the build context", "README.md in the build context", "dockerignore",
     lambda t: t + "!README.md\n"),
    ("dockerignore: the build context", "src/ left out of the build context", "dockerignore",
     lambda t: t + "src/\n"),
    ("dockerfile: runtime stage has", "HEALTHCHECK in shell form", "df",
     lambda t: re.sub(r'CMD \["/usr/local/bin/product-photo-api", "healthcheck"\]',
                      "CMD /usr/local/bin/product-photo-api healthcheck", t)),
]


def main(argv):
    dockerfile = os.path.join(ROOT, "Dockerfile")
    compose = os.path.join(ROOT, "docker-compose.yml")
    self_test = False
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--dockerfile":
            dockerfile = args.pop(0)
        elif a == "--compose":
            compose = args.pop(0)
        elif a == "--self-test":
            self_test = True
        else:
            print(__doc__)
            return 2
    df_text = open(dockerfile).read()
    compose_text = open(compose).read()
    di_path = os.path.join(os.path.dirname(os.path.abspath(dockerfile)), ".dockerignore")
    di_text = open(di_path).read() if os.path.exists(di_path) else ""
    files = context_files(os.path.dirname(os.path.abspath(dockerfile)), dockerignore_rules(di_text))
    failed = 0
    for name, err in checks(df_text, compose_text, di_text, files):
        if err:
            failed += 1
            print(f"FAIL - {name}: {err}")
        else:
            print(f"ok   - {name}")
    if self_test:
        for prefix, what, which, mutate in MUTATIONS:
            d, c, di = df_text, compose_text, di_text
            if which == "df":
                d = mutate(d)
                changed = d != df_text
            elif which == "dockerignore":
                di = mutate(di)
                changed = di != di_text
            else:
                c = mutate(c)
                changed = c != compose_text
            caught = [n for n, e in checks(d, c, di, files) if e and n.startswith(prefix)]
            if changed and caught:
                print(f"ok   - self-test: {what} is caught by \"{prefix}...\"")
            else:
                failed += 1
                why = "the mutation did not apply to the current file" if not changed else "no check failed"
                print(f"FAIL - self-test: {what} is not caught by \"{prefix}...\" ({why})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
