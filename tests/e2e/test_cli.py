"""End-to-end: `product-photo-api generate` (the one-command CLI) against the
real server wired to the KIE simulator. Everything stays on 127.0.0.1.

The CLI is run as `$PPA_BIN generate ...`; PPA_CLI_BIN may name another binary
with the same `generate` subcommand (e.g. a sanitizer build of the client)."""
import json
import os
import pty
import re
import struct
import subprocess
import time

import pytest

from conftest import KIE_KEY, PPA_BIN, SLOW, free_port, png_bytes, sim_config, sim_requests, upload, wait_for

CLI_BIN = os.path.abspath(os.environ.get("PPA_CLI_BIN") or PPA_BIN)
PROMPT = "The product on white marble, soft studio light"


def cli_env(**extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PPA_POLL_MS": "40"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def run_cli(args, cwd, env=None, timeout=60):
    p = subprocess.run([CLI_BIN, "generate"] + list(args), cwd=cwd, env=env or cli_env(), capture_output=True,
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
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert p.wait(60 * SLOW) == 0
    tty = b"".join(chunks).decode(errors="replace")
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
    # without public_url the upload's url is what /generate gets
    assert api.generate_bodies == [{"input_url": "/files/abc.png", "prompt": PROMPT, "aspect_ratio": "auto",
                                    "resolution": "1K"}]


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
    (["{dir}", "-p", PROMPT], "not a regular file"),
    (["{photo}", "{photo}", "-p", PROMPT], "only one photo"),
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
    fill = {"photo": str(src), "missing": str(tmp_path / "missing.jpg"), "dir": str(tmp_path), "tmp": str(tmp_path)}
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
