"""End-to-end: `product-photo-api generate` (the one-command CLI) and
`product-photo-api tasks` against the real server wired to the KIE simulator.
Everything stays on 127.0.0.1.

The CLI is run as `$PPA_BIN generate ...`; PPA_CLI_BIN may name another binary
with the same `generate` subcommand (e.g. a sanitizer build of the client)."""
import hashlib
import json
import os
import pty
import re
import signal
import struct
import subprocess
import time

import pytest

from conftest import (KIE_KEY, PPA_BIN, SLOW, free_port, list_uploads, png_bytes, read_pty, request, sim_config,
                      sim_requests, upload, wait_for)

CLI_BIN = os.path.abspath(os.environ.get("PPA_CLI_BIN") or PPA_BIN)
PROMPT = "The product on white marble, soft studio light"


def cli_env(**extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PPA_POLL_MS": "40"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def run_cli(args, cwd, env=None, timeout=60, cmd="generate"):
    p = subprocess.run([CLI_BIN, cmd] + list(args), cwd=cwd, env=env or cli_env(), capture_output=True,
                       timeout=timeout * SLOW)
    stderr = p.stderr.decode(errors="replace")
    assert_no_sanitizer_report(stderr)
    return p.returncode, p.stdout.decode(errors="replace"), stderr


def assert_no_sanitizer_report(stderr):
    # LeakSanitizer exits 1, which a failure test would otherwise accept
    assert "Sanitizer" not in stderr and "runtime error:" not in stderr, stderr


def server_url(srv):
    return f"http://127.0.0.1:{srv.port}"


def photo(tmp_path, name="mug.png", data=None):
    path = tmp_path / name
    path.write_bytes(data if data is not None else png_bytes(40, 30))
    return path


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    return struct.unpack(">II", data[16:24])


def creates(sim):
    return [q for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/createTask"]


# ---- success ------------------------------------------------------------------

def test_generate_end_to_end(server, sim, tmp_path):
    sim_config(sim, step_ms=400)
    src = photo(tmp_path)
    out = tmp_path / "out" / "studio.png"
    out.parent.mkdir()
    rc, stdout, stderr = run_cli([str(src), "--prompt", PROMPT, "--aspect-ratio", "4:3", "--resolution", "1K",
                                  "-o", str(out), "--server", server_url(server)], cwd=tmp_path)
    assert rc == 0, stderr
    assert stdout.strip() == str(out)
    # the result is the simulator's PNG, made in the requested aspect ratio
    w, h = png_size(out.read_bytes())  # 4:3 at 1K: about one megapixel
    assert abs(w / h - 4 / 3) < 0.01 and 0.9e6 < w * h < 1.1e6, (w, h)
    # no temp file left beside the result
    assert sorted(os.listdir(out.parent)) == ["studio.png"]
    # plain lines (stderr is not a terminal): upload, task, each state once, in order
    assert "Uploading mug.png" in stderr and "Uploaded: " in stderr
    states = re.findall(r"^State: (\w+) \((\d+\.\d) s\)$", stderr, re.M)
    names = [s for s, _ in states]
    assert names[-1] == "success", stderr
    assert len(names) == len(set(names)), stderr  # one line per change
    order = ["waiting", "queuing", "generating", "success"]
    assert [order.index(n) for n in names] == sorted(order.index(n) for n in names), names
    assert len(names) >= 3, stderr  # 400 ms per state; polls 40 ms apart, growing x1.5
    assert "\r" not in stderr and "\033[" not in stderr
    # what reached KIE: the uploaded file's public URL and the options
    sent = creates(sim)
    assert len(sent) == 1
    body = sent[0]["body"]["input"]
    assert body["prompt"] == PROMPT and body["aspect_ratio"] == "4:3" and body["resolution"] == "1K"
    (url,) = body["input_urls"]
    # an opaque PNG is re-encoded as JPEG by the image pipeline
    assert re.fullmatch(rf"http://127\.0\.0\.1:{server.port}/files/[0-9a-f-]{{36}}\.jpg", url), url
    with open(os.path.join(server.upload_dir, url.rsplit("/", 1)[1]), "rb") as f:
        assert f.read()[:3] == b"\xff\xd8\xff"


def test_default_output_name_quiet_and_env_server(server, sim, tmp_path):
    src = photo(tmp_path, "shoe.jpg", png_bytes(20, 20))  # the name's extension does not matter
    env = cli_env(PPA_SERVER=server_url(server) + "/")
    rc, stdout, stderr = run_cli([str(src), "-p", PROMPT, "--quiet"], cwd=tmp_path, env=env)
    assert rc == 0, stderr
    assert stderr == ""
    name = stdout.strip()
    assert re.fullmatch(r"result-[A-Za-z0-9_-]+\.png", name), name
    assert sorted(os.listdir(tmp_path)) == sorted([name, "shoe.jpg"])
    w, h = png_size((tmp_path / name).read_bytes())  # aspect auto = the input's 1:1, 1K = ~1 MP
    assert w == h and 0.9e6 < w * h < 1.1e6, (w, h)
    # the name carries the task id the CLI polled for
    polled = [str(q["query"]) for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/recordInfo"]
    assert polled and all(name[len("result-"):-len(".png")] in q for q in polled), (name, polled)


def test_terminal_progress_bar_and_one_status_line(server, sim, tmp_path):
    sim_config(sim, step_ms=200)
    src = photo(tmp_path, data=png_bytes(200, 200))
    master, slave = pty.openpty()
    p = subprocess.Popen([CLI_BIN, "generate", str(src), "--prompt", PROMPT, "-o", str(tmp_path / "r.png"),
                          "--server", server_url(server)], cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                         stderr=slave)
    os.close(slave)
    tty = read_pty(master)
    assert p.wait(60 * SLOW) == 0
    assert_no_sanitizer_report(tty)
    assert re.search(r"Uploading mug\.png \[#{30}\] 100%", tty), tty
    # the state line is redrawn in place: \r + erase-line, then one newline at the end
    assert "\r\033[KTask: success" in tty and "State: " not in tty
    status_part = tty[tty.index("Task "):tty.index("Downloading")]
    assert status_part.count("\n") == 2, status_part  # "Task ... created" and the final newline
    assert p.stdout.read().decode().strip() == str(tmp_path / "r.png")


def test_api_token_is_sent(sim, server_factory, tmp_path):
    port = free_port()
    srv = server_factory({
        "KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "ALLOW_PRIVATE_INPUT_URLS": "1",
        "API_TOKEN": "tok-cli-3141592653",
    }, port=port)
    src = photo(tmp_path)
    rc, stdout, stderr = run_cli([str(src), "-p", PROMPT, "--server", server_url(srv)], cwd=tmp_path)
    assert rc == 1 and stdout == ""
    assert "HTTP 401" in stderr and "PPA_API_TOKEN" in stderr, stderr
    rc, stdout, stderr = run_cli([str(src), "-p", PROMPT, "--server", server_url(srv), "--token", "wrong-token"],
                                 cwd=tmp_path)
    assert rc == 1 and "HTTP 401" in stderr
    env = cli_env(PPA_API_TOKEN="tok-cli-3141592653")
    rc, stdout, stderr = run_cli([str(src), "-p", PROMPT, "--server", server_url(srv), "-o", "x.png"],
                                 cwd=tmp_path, env=env)
    assert rc == 0, stderr
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


def test_status_errors_are_retried(server, sim, tmp_path):
    sim_config(sim, record_mode="http500", record_mode_times=2)
    rc, _, stderr = run_cli([str(photo(tmp_path)), "-p", PROMPT, "-o", "r.png", "--server", server_url(server)],
                            cwd=tmp_path)
    assert rc == 0, stderr
    # two 500s are queued; KIE's callback may finish the task before the second poll
    # reaches KIE (then /status answers from the cache), so one or two retries are seen
    assert 1 <= stderr.count("(retrying)") <= 2, stderr


# ---- failures -------------------------------------------------------------------

def test_failed_task_prints_kie_message(server, sim, tmp_path):
    sim_config(sim, outcome="fail", fail_code="400", fail_msg="The photo shows no recognisable product")
    rc, stdout, stderr = run_cli([str(photo(tmp_path)), "-p", PROMPT, "-o", "r.png",
                                  "--server", server_url(server)], cwd=tmp_path)
    assert rc == 1
    assert stdout == ""
    assert "error: the generation failed: The photo shows no recognisable product" in stderr, stderr
    assert "State: fail" in stderr
    assert sorted(os.listdir(tmp_path)) == ["mug.png"]


def test_non_image_upload_prints_server_message(server, sim, tmp_path):
    expected = upload(server.port, b"just some text, not a photo\n" * 10).json()["error"]["message"]
    src = photo(tmp_path, "notes.jpg", b"just some text, not a photo\n" * 10)
    rc, stdout, stderr = run_cli([str(src), "-p", PROMPT, "--server", server_url(server)], cwd=tmp_path)
    assert rc == 1 and stdout == ""
    assert "HTTP 415" in stderr and expected in stderr, stderr
    assert creates(sim) == []


def test_server_validation_error_is_shown(server, sim, tmp_path):
    rc, _, stderr = run_cli([str(photo(tmp_path)), "-p", "ab", "--server", server_url(server)], cwd=tmp_path)
    assert rc == 1
    assert "HTTP 400, invalid_prompt" in stderr and "prompt must be" in stderr, stderr


def test_server_unreachable(tmp_path):
    port = free_port()
    rc, stdout, stderr = run_cli([str(photo(tmp_path)), "-p", PROMPT, "--server", f"http://127.0.0.1:{port}"],
                                 cwd=tmp_path)
    assert rc == 1 and stdout == ""
    assert f"could not connect to the server at http://127.0.0.1:{port}" in stderr and "make sim" in stderr, stderr
    assert "product-photo-api serve" in stderr


def test_timeout_gives_up(server, sim, tmp_path):
    sim_config(sim, step_ms=60000)
    t0 = time.time()
    rc, _, stderr = run_cli([str(photo(tmp_path)), "-p", PROMPT, "--timeout", "1", "--server", server_url(server)],
                            cwd=tmp_path)
    took = time.time() - t0
    assert rc == 1
    assert "gave up after 1 s" in stderr and "still waiting" in stderr, stderr
    assert took < 10 * SLOW
    assert sorted(os.listdir(tmp_path)) == ["mug.png"]


class FakeApi:
    """A stand-in product-photo-api on 127.0.0.1 whose result download breaks:
    `result` is "truncated" (Content-Length promises more than is sent, then
    the connection closes) or "html" (200 with a page, not an image)."""

    def __init__(self, result):
        import http.server
        import threading

        api = self
        self.generate_bodies = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, obj, status=200):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/upload":
                    self.reply({"url": "/files/abc.png", "filename": "abc.png"})  # no public_url
                elif self.path == "/generate":
                    api.generate_bodies.append(json.loads(body))
                    self.reply({"code": 200, "msg": "success", "data": {"taskId": "task_fake_1"}})
                else:
                    self.reply({"error": {"code": "not_found", "message": "no"}}, 404)

            def do_GET(self):
                if self.path.startswith("/status?task_id=task_fake_1"):
                    self.reply({"code": 200, "data": {"taskId": "task_fake_1", "state": "success",
                                                      "resultUrls": [f"http://127.0.0.1:{api.port}/r/img.png"]}})
                elif self.path == "/r/img.png" and result == "truncated":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(png_bytes(64, 64)[:200])
                    self.wfile.flush()
                    self.close_connection = True
                elif self.path == "/r/img.png":
                    page = b"<html><body>Access denied</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                else:
                    self.reply({"error": {"code": "not_found", "message": "no"}}, 404)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("result,needle", [("truncated", "download of "), ("html", "is not an image")])
def test_broken_download_never_leaves_a_half_file(tmp_path, result, needle):
    api = FakeApi(result)
    try:
        old = tmp_path / "r.png"
        old.write_bytes(b"the previous result")
        rc, stdout, stderr = run_cli([str(photo(tmp_path)), "-p", PROMPT, "-o", "r.png",
                                      "--server", f"http://127.0.0.1:{api.port}"], cwd=tmp_path)
    finally:
        api.close()
    assert rc == 1 and stdout == "", stderr
    assert needle in stderr, stderr
    # -o is untouched and no temp file is left behind
    assert old.read_bytes() == b"the previous result"
    assert sorted(os.listdir(tmp_path)) == ["mug.png", "r.png"]
    # without public_url the upload's url is what /generate gets; photo_name names the result in results.zip
    assert api.generate_bodies == [{"input_url": "/files/abc.png", "prompt": PROMPT, "aspect_ratio": "auto",
                                    "resolution": "1K", "photo_name": "mug.png"}]


# ---- usage -------------------------------------------------------------------------

def test_help():
    p = subprocess.run([CLI_BIN, "generate", "--help"], capture_output=True, timeout=30, env=cli_env())
    assert_no_sanitizer_report(p.stderr.decode(errors="replace"))
    assert p.returncode == 0
    out = p.stdout.decode()
    assert out.startswith("Usage: product-photo-api generate PHOTO --prompt TEXT")
    for opt in ("--prompt", "--aspect-ratio", "--resolution", "--output", "--server", "--token", "--timeout",
                "--quiet", "PPA_SERVER", "PPA_API_TOKEN", "PPA_POLL_MS"):
        assert opt in out, opt


@pytest.mark.parametrize("args,needle", [
    ([], "name the photo"),
    (["{photo}"], "--prompt is required"),
    (["{photo}", "--prompt"], "--prompt needs a value"),
    (["{missing}", "-p", PROMPT], "cannot read"),
    (["{empty}", "-p", PROMPT], "no photos found"),
    (["{photo}", "{photo2}", "-p", PROMPT, "-o", "{photo}"], "several photos need an output directory"),
    (["{photo}", "-p", PROMPT, "--new", "--dry-run"], "--new is for one photo"),
    (["{photo}", "-p", PROMPT, "--jobs", "0"], "--jobs 0"),
    (["{photo}", "-p", PROMPT, "--rate", "x"], "--rate x"),
    (["{photo}", "-p", PROMPT, "--bogus"], "unknown option --bogus"),
    (["{photo}", "-p", PROMPT, "--aspect-ratio", "5:4"], "--aspect-ratio 5:4"),
    (["{photo}", "-p", PROMPT, "--resolution", "4K"], "--resolution 4K"),
    (["{photo}", "-p", PROMPT, "--timeout", "0"], "--timeout 0"),
    (["{photo}", "-p", PROMPT, "--timeout", "12x"], "--timeout 12x"),
    (["{photo}", "-p", PROMPT, "--server", "ftp://127.0.0.1/"], "--server ftp://"),
    (["{photo}", "-p", PROMPT, "-o", "{tmp}/no/such/dir/r.png"], "cannot write to directory"),
    (["{photo}", "-p", PROMPT, "-o", "{tmp}"], "not a directory"),
])
def test_bad_usage_exits_2(tmp_path, args, needle):
    # any traffic would go to a closed port and end in exit 1, not 2
    src = photo(tmp_path)
    (tmp_path / "empty").mkdir()
    fill = {"photo": str(src), "missing": str(tmp_path / "missing.jpg"), "empty": str(tmp_path / "empty"),
            "tmp": str(tmp_path), "photo2": str(photo(tmp_path, "cup.png"))}
    argv = ["--server", f"http://127.0.0.1:{free_port()}"] + [a.format(**fill) for a in args]
    rc, stdout, stderr = run_cli(argv, cwd=tmp_path)
    assert rc == 2, (rc, stderr)
    assert stdout == ""
    assert stderr.startswith("error: ") and needle in stderr, stderr


def test_bad_poll_env_exits_2(tmp_path):
    rc, _, stderr = run_cli([str(photo(tmp_path)), "-p", PROMPT], cwd=tmp_path, env=cli_env(PPA_POLL_MS="fast"))
    assert rc == 2 and "PPA_POLL_MS" in stderr


@pytest.mark.parametrize("args,word", [(["serve", "--port", "9000"], "unexpected argument '--port'"),
                                       (["routes", "x"], "unexpected argument 'x'"),
                                       (["bogus"], "unknown command 'bogus'"), (["--nope"], "unknown option '--nope'")])
def test_bad_command_line_is_one_short_message(tmp_path, args, word):
    p = subprocess.run([PPA_BIN] + args, cwd=tmp_path, capture_output=True, timeout=20 * SLOW, env=cli_env())
    err = p.stderr.decode()
    assert p.returncode == 2 and word in err and "see --help" in err, err
    assert len(err.strip().splitlines()) <= 2, err  # not the whole help, which scrolls the error away
    assert p.stdout == b""


def test_busy_port_names_the_variable(tmp_path):
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        env = dict(cli_env(), HOST="127.0.0.1", PORT=str(s.getsockname()[1]), UPLOAD_DIR=str(tmp_path / "u"))
        p = subprocess.run([PPA_BIN, "serve"], cwd=tmp_path, capture_output=True, timeout=20 * SLOW, env=env)
    finally:
        s.close()
    err = p.stderr.decode()
    assert p.returncode != 0 and "PORT=" in err and "in use" in err, err


def test_listening_is_said_once(server):
    log = wait_for(lambda: server.log() if "ready on" in server.log() else None)
    assert log.count("listening on") == 0 and "ready on http://127.0.0.1:" in log, log[:2000]


# ---- Idempotency-Key: the same command twice is one KIE task ------------------------------

def expected_key(photo_bytes, prompt, aspect="auto", resolution="1K", nonce=""):
    """The CLI's documented derivation (cli_key.h), recomputed here."""
    fields = [("photo", hashlib.sha256(photo_bytes).hexdigest()), ("prompt", prompt), ("aspect_ratio", aspect),
              ("resolution", resolution), ("nonce", nonce)]
    data = b"product-photo-api generate v1\n"
    for name, value in fields:
        v = value.encode()
        data += f"{name}={len(v)}:".encode() + v + b"\n"
    return "ppa-cli-1-" + hashlib.sha256(data).hexdigest()


def test_same_generate_twice_is_one_kie_task(server, sim, tmp_path):
    src = photo(tmp_path)
    args = [str(src), "-p", PROMPT, "-a", "1:1", "-o", "first.png", "--server", server_url(server)]
    rc, _, first = run_cli(args, cwd=tmp_path)
    assert rc == 0, first
    assert "Task " in first and " created" in first and "Idempotent-Replayed" not in first, first
    assert len(creates(sim)) == 1
    stored = list_uploads(server)
    assert len(stored) == 1, stored

    # again, as after a crash: the server replays its first answer; no upload, no second task
    args[args.index("first.png")] = "second.png"
    rc, _, second = run_cli(args, cwd=tmp_path)
    assert rc == 0, second
    assert len(creates(sim)) == 1, "the second run made another KIE task"
    assert "Idempotent-Replayed: true" in second and "not charged again" in second, second
    assert "not uploading again" in second and "Uploading" not in second, second
    assert list_uploads(server) == stored, "the second run uploaded the photo again"
    assert (tmp_path / "first.png").read_bytes() == (tmp_path / "second.png").read_bytes()

    # the key the server stored is the one derived from the photo and the options
    (rec,) = request(server.port, "GET", "/tasks").json()["tasks"]
    assert rec["idempotency_key"] == expected_key(src.read_bytes(), PROMPT, "1:1", "1K")

    # another prompt, or --new, is another request: a new task each
    rc, _, err = run_cli([str(src), "-p", PROMPT + ", darker", "-a", "1:1", "-o", "third.png",
                          "--server", server_url(server)], cwd=tmp_path)
    assert rc == 0 and len(creates(sim)) == 2, err
    rc, _, err = run_cli(args + ["--new"], cwd=tmp_path)
    assert rc == 0 and len(creates(sim)) == 3, err
    assert "Idempotent-Replayed" not in err and "created" in err, err


def test_generate_again_after_a_crash_resumes_the_task(server, sim, tmp_path):
    sim_config(sim, step_ms=1500)
    src = photo(tmp_path)
    args = [CLI_BIN, "generate", str(src), "-p", PROMPT, "-o", "r.png", "--server", server_url(server)]
    p = subprocess.Popen(args, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = b""
    deadline = time.time() + 30 * SLOW
    while b" created" not in seen and time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        seen += line
    p.send_signal(signal.SIGKILL)  # mid-poll, as a crash or a closed laptop would
    p.wait(10)
    p.stdout.close()
    p.stderr.close()
    assert b" created" in seen, seen
    task = re.search(rb"Task (\S+) created", seen).group(1).decode()
    assert not (tmp_path / "r.png").exists()

    sim_config(sim, step_ms=50)
    rc, stdout, stderr = run_cli(args[2:], cwd=tmp_path)
    assert rc == 0, stderr
    assert f"Task {task} resumed" in stderr and "Idempotent-Replayed: true" in stderr, stderr
    assert len(creates(sim)) == 1
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


class ScriptedApi:
    """A stand-in server that answers POST /generate from a script, to see what the CLI sends on the paths a
    real server rarely takes: a dropped connection, 409 request_in_progress, then 422 idempotency_key_reused
    (the key's task was made by an earlier run with another upload, listed in GET /tasks)."""

    def __init__(self, script, has_tasks=True):
        import http.server
        import threading

        api = self
        self.script = list(script)
        self.generate = []   # (Idempotency-Key, body) of each POST /generate
        self.lists = 0
        self.listed = []     # what GET /tasks lists

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, obj, status=200, headers=()):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/upload":
                    self.reply({"url": "/files/abc.png", "filename": "abc.png"})
                    return
                api.generate.append((self.headers.get("Idempotency-Key"), json.loads(body)))
                step = api.script.pop(0)
                if step == "drop":  # no answer at all: the client sees an empty reply
                    self.close_connection = True
                elif step == "busy":
                    self.reply({"error": {"code": "request_in_progress", "message": "The same request is being "
                                          "created right now.", "request_id": "r1"}}, 409, [("Retry-After", "1")])
                elif step == "reused":
                    api.listed = [{"id": "task_fake_7", "state": "generating", "prompt": PROMPT,
                                   "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "input_urls": ["/files/earlier.png"], "idempotency_key": api.generate[-1][0]}]
                    self.reply({"error": {"code": "idempotency_key_reused", "message": "This Idempotency-Key was "
                                          "used with another request body.", "request_id": "r2"}}, 422)

            def do_GET(self):
                if self.path.startswith("/tasks?") and has_tasks:
                    api.lists += 1
                    self.reply({"tasks": api.listed, "next": None})
                elif self.path.startswith("/status?task_id=task_fake_7"):
                    self.reply({"code": 200, "data": {"taskId": "task_fake_7", "state": "success",
                                                      "resultUrls": [f"http://127.0.0.1:{api.port}/r/img.png"]}})
                elif self.path == "/r/img.png":
                    data = png_bytes(16, 16)
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self.reply({"error": {"code": "not_found", "message": "no such thing"}}, 404)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_generate_retries_with_the_same_key_then_resumes_the_listed_task(tmp_path):
    api = ScriptedApi(["drop", "busy", "reused"])
    try:
        src = photo(tmp_path)
        t0 = time.time()
        rc, stdout, stderr = run_cli([str(src), "-p", PROMPT, "-r", "2K", "-o", "r.png",
                                      "--server", f"http://127.0.0.1:{api.port}"], cwd=tmp_path)
        took = time.time() - t0
    finally:
        api.close()
    assert rc == 0, stderr
    keys = [k for k, _ in api.generate]
    assert len(keys) == 3 and len(set(keys)) == 1, keys  # one key for every attempt of this command
    assert keys[0] == expected_key(src.read_bytes(), PROMPT, "auto", "2K")
    assert all(b == api.generate[0][1] for _, b in api.generate), "the retries changed the body"
    assert "retrying with the same Idempotency-Key" in stderr, stderr
    assert "still creating this same request" in stderr, stderr
    assert took >= 1.0, "Retry-After: 1 was not waited for"
    assert "Task task_fake_7 resumed" in stderr, stderr
    assert api.lists == 2  # before the upload (nothing yet), and after the 422
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


# ---- tasks -----------------------------------------------------------------------------------

def run_tasks(args, cwd, env=None):
    return run_cli(list(args), cwd=cwd, env=env, cmd="tasks")


def test_tasks_lists_what_was_generated(server, sim, tmp_path):
    url = server_url(server)
    rc, _, stderr = run_tasks(["--server", url], cwd=tmp_path)
    assert rc == 0 and "No tasks" in stderr, stderr
    made = []
    for prompt in (PROMPT, "On a wooden table, morning light\nwith a plant"):
        rc, _, stderr = run_cli([str(photo(tmp_path)), "-p", prompt, "-o", "r.png", "--server", url], cwd=tmp_path)
        assert rc == 0, stderr
        made.append(re.search(r"Task (\S+) created", stderr).group(1))

    rc, stdout, stderr = run_tasks(["--server", url], cwd=tmp_path)
    assert rc == 0, stderr
    lines = stdout.splitlines()
    assert re.match(r"ID\s+AGE\s+STATE\s+CREDITS\s+PROMPT$", lines[0]), lines
    rows = [re.split(r"\s{2,}", line.strip(), maxsplit=4) for line in lines[1:]]
    assert [r[0] for r in rows] == made[::-1], rows  # newest first
    for r in rows:
        assert re.fullmatch(r"\d+[smhd]", r[1]) and r[2] == "success", r
        assert r[3] == "5", r  # the simulator's price of a 1K image, as KIE reported it
    assert rows[1][4] == PROMPT and rows[0][4] == "On a wooden table, morning light with a plant", rows

    rc, stdout, stderr = run_tasks(["--json", "--limit", "1", "--server", url], cwd=tmp_path)
    assert rc == 0, stderr
    records = json.loads(stdout)
    assert [r["id"] for r in records] == [made[1]]
    assert records[0]["state"] == "success" and records[0]["resolution"] == "1K"
    one = request(server.port, "GET", f"/tasks/{made[1]}").json()
    for k in ("id", "created_at", "prompt", "idempotency_key", "request_hash", "input_urls"):
        assert records[0][k] == one[k], k


def test_tasks_follows_next_past_one_page(server, sim, tmp_path):
    sim_config(sim, step_ms=0)
    url = upload(server.port, png_bytes(16, 16)).json()["public_url"]
    for i in range(103):
        r = request(server.port, "POST", "/generate", {"input_url": url, "prompt": f"studio shot number {i}"})
        assert r.status == 200, r
    rc, stdout, stderr = run_tasks(["--server", server_url(server), "--limit", "102", "--json"], cwd=tmp_path)
    assert rc == 0, stderr
    prompts = [r["prompt"] for r in json.loads(stdout)]
    assert prompts == [f"studio shot number {i}" for i in range(102, 0, -1)]
    rc, stdout, stderr = run_tasks(["-s", server_url(server), "-n", "500"], cwd=tmp_path)
    assert rc == 0, stderr
    assert len(stdout.splitlines()) == 1 + 103  # the header, then every task once: the list ends at next = null


def test_tasks_against_a_server_without_it(tmp_path):
    api = ScriptedApi([], has_tasks=False)
    try:
        rc, stdout, stderr = run_tasks(["--server", f"http://127.0.0.1:{api.port}"], cwd=tmp_path)
    finally:
        api.close()
    assert rc == 1 and stdout == ""
    assert "HTTP 404" in stderr and "older than this client" in stderr, stderr


@pytest.mark.parametrize("args,needle", [
    (["--limit", "0"], "--limit 0"), (["--limit", "x"], "--limit x"), (["--limit"], "--limit needs a value"),
    (["--bogus"], "unknown option --bogus"), (["extra"], "unexpected argument extra"),
    (["--server", "ftp://x"], "--server ftp://x"),
])
def test_tasks_bad_usage_exits_2(tmp_path, args, needle):
    rc, stdout, stderr = run_tasks(args, cwd=tmp_path)
    assert rc == 2 and stdout == "", stderr
    assert stderr.startswith("error: ") and needle in stderr and "tasks --help" in stderr, stderr


def test_tasks_help_and_the_main_help():
    p = subprocess.run([CLI_BIN, "tasks", "--help"], capture_output=True, timeout=30, env=cli_env())
    out = p.stdout.decode()
    assert p.returncode == 0 and out.startswith("Usage: product-photo-api tasks [--limit N] [--json]"), out
    for opt in ("--limit", "--json", "--server", "--token", "PPA_SERVER", "PPA_API_TOKEN"):
        assert opt in out, opt
    p = subprocess.run([CLI_BIN, "--help"], capture_output=True, timeout=30, env=cli_env())
    out = p.stdout.decode()
    assert "product-photo-api tasks" in out and "Usage: product-photo-api tasks" in out, out
    p = subprocess.run([CLI_BIN, "generate", "--help"], capture_output=True, timeout=30, env=cli_env())
    assert "--new" in p.stdout.decode() and "Idempotency-Key" in p.stdout.decode()


def test_generate_and_tasks_without_a_task_store(sim, server_factory, tmp_path):
    port = free_port()
    srv = server_factory({
        "KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "ALLOW_PRIVATE_INPUT_URLS": "1", "TASK_STORE": "off",
    }, port=port)
    rc, _, stderr = run_cli([str(photo(tmp_path)), "-p", PROMPT, "-o", "r.png", "--server", server_url(srv)],
                            cwd=tmp_path)
    # the key cannot be honoured there: the request goes again without it, and the user is told what that means
    assert rc == 0, stderr
    assert "TASK_STORE=off" in stderr and "another task" in stderr, stderr
    assert len(creates(sim)) == 1
    rc, stdout, stderr = run_tasks(["--server", server_url(srv)], cwd=tmp_path)
    assert rc == 1 and stdout == ""
    assert "HTTP 503, task_store_off" in stderr, stderr
