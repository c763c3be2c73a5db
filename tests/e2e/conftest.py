"""End-to-end fixtures: the real server binary and the KIE simulator, each on a
free loopback port, talking real HTTP. Nothing here reaches beyond 127.0.0.1.

PPA_BIN / KIE_SIM_BIN name the binaries (the Makefile sets them);
PPA_VALGRIND, when set, is a command prefix (valgrind ...) for the server.
UPSTREAM_THREADS, when set, is passed to every server a test does not set it
for, so the whole suite can run with 1 or 4 upstream I/O threads."""
import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PPA_BIN = os.path.abspath(os.environ.get("PPA_BIN", os.path.join(ROOT, "build/product-photo-api")))
SIM_BIN = os.path.abspath(os.environ.get("KIE_SIM_BIN", os.path.join(ROOT, "build/kie-sim")))
VALGRIND = shlex.split(os.environ.get("PPA_VALGRIND", "") or "")
SLOW = 8 if VALGRIND else 1  # timeouts scale under valgrind
KIE_KEY = "sk-test-7f3a9c1e5b2d4f6a8c0e"  # grepped for in logs: must never appear
# Every secret any test hands the server; after the whole session no log may contain one.
SECRETS = [KIE_KEY, "ppa-token-4c1d9e2f7a8b", "cb-secret-123", "ppaS3secretK3yZ9wrong", "ppaS3secretK3yZ9", "whk-secret-77"]
# one log directory for the whole run: set here, in the first process that loads this file, before pytest-xdist
# starts its workers (which inherit it), so the secrets check at the end reads every worker's server logs
if not os.environ.get("PPA_TEST_LOGS"):
    os.environ["PPA_TEST_LOGS"] = tempfile.mkdtemp(prefix="ppa-logs-")
LOG_DIR = os.environ["PPA_TEST_LOGS"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_port(proc, prefix, timeout):
    """Read stdout lines until one starts with `prefix`; return the port."""
    deadline = time.time() + timeout
    result = {}

    def reader():
        for line in proc.stdout:
            line = line.decode(errors="replace").strip()
            if line.startswith(prefix):
                result["port"] = int(line.rsplit(" ", 1)[1])
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(max(0.1, deadline - time.time()))
    if "port" not in result:
        proc.kill()
        raise RuntimeError(f"{prefix!r} not seen within {timeout}s")
    return result["port"]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


def request(port, method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * SLOW)
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    conn.request(method, path, body=body, headers=hdrs)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return Response(r.status, r.getheaders(), data)


def multipart(fields, boundary="----ppaBoundary7MA4YWxkTrZu0gW"):
    """fields: list of (name, filename or None, content_type or None, bytes)."""
    out = b""
    for name, filename, ctype, data in fields:
        out += f"--{boundary}\r\n".encode()
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out += disp.encode() + b"\r\n"
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def upload(port, data, filename="photo.png", ctype="image/png", headers=None):
    body, ct = multipart([("file", filename, ctype, data)])
    h = {"Content-Type": ct}
    h.update(headers or {})
    return request(port, "POST", "/upload", body, h)


class Proc:
    def __init__(self, proc, port, log_path):
        self.proc = proc
        self.port = port
        self.log_path = log_path

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, expect_zero=True):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("process did not exit within 30 s of SIGTERM")
        if expect_zero:
            assert self.proc.returncode == 0, f"exit code {self.proc.returncode}\n{self.log()[-3000:]}"


def start_sim(**args):
    log_path = os.path.join(LOG_DIR, f"sim-{os.getpid()}-{time.time_ns()}.log")
    logf = open(log_path, "wb")
    cmd = [SIM_BIN, "--port", "0", "--api-key", KIE_KEY]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logf)
    port = read_port(proc, "kie-sim listening on port", 10)
    sim = Proc(proc, port, log_path)
    if args:
        r = request(port, "POST", "/sim/config", args)
        assert r.status == 200, r
    return sim


def sim_config(sim, **knobs):
    r = request(sim.port, "POST", "/sim/config", knobs)
    assert r.status == 200, r
    return r.json()


def sim_requests(sim):
    r = request(sim.port, "GET", "/sim/requests")
    assert r.status == 200, r
    data = r.json()
    return data["requests"] if isinstance(data, dict) else data


def start_server(env=None, port=0, cwd=None, expect_fail=False):
    upload_dir = tempfile.mkdtemp(prefix="ppa-uploads-")
    # each server its own TMPDIR (S3 mode spools there), so a test can see only its server's files
    tmp_dir = tempfile.mkdtemp(prefix="ppa-tmp-")
    full = {
        "TMPDIR": tmp_dir,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "UPLOAD_DIR": upload_dir,
        "LOG_LEVEL": "debug",
        "RATE_LIMIT_GENERATE": "0",
        "RATE_LIMIT_UPLOAD": "0",
        "MIN_FREE_DISK_MB": "0",
        # never KIE's real upload host: a closed loopback port unless a test points it at the simulator
        "KIE_UPLOAD_BASE_URL": "http://127.0.0.1:1",
        # the simulator's result URLs are on 127.0.0.1 (tests of the fetch policy set it to "0")
        "ALLOW_PRIVATE_FETCH": "1",
    }
    # sanitizer settings; VIPS_NOVECTOR and JSIMD_FORCENONE (libjpeg-turbo's SIMD) under valgrind;
    # UPSTREAM_THREADS to run the suite with 1 or N I/O threads
    for passed in ("ASAN_OPTIONS", "VIPS_NOVECTOR", "JSIMD_FORCENONE", "UPSTREAM_THREADS"):
        if passed in os.environ:
            full[passed] = os.environ[passed]
    full.update(env or {})
    full = {k: v for k, v in full.items() if v is not None}
    log_path = os.path.join(LOG_DIR, f"server-{os.getpid()}-{time.time_ns()}.log")
    logf = open(log_path, "wb")
    proc = subprocess.Popen(VALGRIND + [PPA_BIN, "serve"], stdout=subprocess.PIPE, stderr=logf, env=full,
                            cwd=cwd or tempfile.mkdtemp(prefix="ppa-cwd-"))
    if expect_fail:
        proc.wait(20 * SLOW)
        return proc, open(log_path).read()
    port = read_port(proc, "listening on port", 20 * SLOW)
    srv = Proc(proc, port, log_path)
    srv.upload_dir = upload_dir
    srv.tmp_dir = full["TMPDIR"]
    srv.env = full
    return srv


@pytest.fixture
def sim():
    s = start_sim(step_ms=50)
    yield s
    s.stop()


@pytest.fixture
def server_factory():
    started = []

    def make(env=None, **kw):
        srv = start_server(env, **kw)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
        assert KIE_KEY not in srv.log(), "the KIE key leaked into the server log"


@pytest.fixture
def server(sim, server_factory):
    """A server wired to the simulator, allowed to send it loopback URLs."""
    port = free_port()
    return server_factory({
        "KIE_API_KEY": KIE_KEY,
        "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ALLOW_PRIVATE_INPUT_URLS": "1",
        "KIE_TIMEOUT_SECONDS": "5",
    }, port=port)


# ---- small real images (made here, no files needed) ----

def png_bytes(w=8, h=8):
    import struct
    import zlib

    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xffffffff)

    rows = []
    for y in range(h):
        row = b"\x00" + b"".join(bytes([(x * 32) % 256, (y * 32) % 256, 160]) for x in range(w))
        rows.append(row)
    raw = b"".join(rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def pil_bytes(fmt, w=16, h=12, mode="RGB", **save):
    """A small real image made with Pillow (Debian's python3-pil)."""
    import io

    from PIL import Image

    im = Image.new(mode, (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            c = ((x * 255) // max(1, w - 1), (y * 255) // max(1, h - 1), 160)
            px[x, y] = c + ((255 if x < w // 2 else 0),) if mode == "RGBA" else c
    out = io.BytesIO()
    im.save(out, fmt, **save)
    return out.getvalue()


JPEG_BYTES = pil_bytes("JPEG", quality=90)
WEBP_BYTES = pil_bytes("WEBP", quality=90)


def error_of(r):
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and len(err["message"]) > 10
    assert err["request_id"] == r.header("X-Request-Id")
    return err


def read_pty(master):
    """Everything written to a pty's slave side until it closes (the process exited); closes master."""
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: no writer left
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def wait_for(fn, timeout=10, interval=0.05):
    deadline = time.time() + timeout * SLOW
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def finished(data):
    return data["state"] in ("success", "fail")


def wait_task(port, task, until=finished, timeout=20):
    """Poll GET /status (each answer must be 200) until until(data) holds; returns that data."""
    def poll():
        s = request(port, "GET", f"/status?task_id={task}")
        assert s.status == 200, s
        d = s.json()["data"]
        return d if until(d) else None

    return wait_for(poll, timeout=timeout)


TASK_STORE_FILES = ("tasks.db", "tasks.db-wal", "tasks.db-shm", ".results-secret")  # task store (SQLite, WAL), signing key


def list_uploads(srv):
    """Files (stored or spooled) in UPLOAD_DIR; the results/ directory and the task store are not uploads."""
    return sorted(f for f in os.listdir(srv.upload_dir)
                  if os.path.isfile(os.path.join(srv.upload_dir, f)) and f not in TASK_STORE_FILES)


def urlquote(s):
    return urllib.parse.quote(s, safe="")


def pytest_sessionfinish(session, exitstatus):
    """The secrets test: after the whole suite, grep every server and simulator log (once, in the process that
    ran the session: with pytest-xdist, the controller, after all its workers)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    leaks = []
    # the simulator plays KIE, which is given the key and the callback URL: only our logs count
    for name in [n for n in os.listdir(LOG_DIR) if n.startswith("server-")]:
        with open(os.path.join(LOG_DIR, name), "rb") as f:
            text = f.read().decode(errors="replace")
        leaks += [(name, s) for s in SECRETS if s in text]
    if leaks:
        print(f"\nSECRET LEAK in logs under {LOG_DIR}: {leaks}")
        session.exitstatus = 1
    else:
        print(f"\nsecrets check: {len([n for n in os.listdir(LOG_DIR) if n.startswith('server-')])} server logs, no secret found")
