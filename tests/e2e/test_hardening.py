"""Access control, abuse limits, secrets, and the concurrency model."""
import http.client
import os
import socket
import tempfile
import threading
import time

import pytest

from conftest import (KIE_KEY, SLOW, VALGRIND, list_uploads, multipart, png_bytes, request, sim_config,
                      sim_requests,
                      start_server, upload, wait_for)

TOKEN = "ppa-token-4c1d9e2f7a8b"


def test_api_token_required_on_api_routes(sim, server_factory):
    srv = server_factory({"API_TOKEN": TOKEN, "KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
                          "ALLOW_PRIVATE_INPUT_URLS": "1"})
    gen = {"input_url": f"http://127.0.0.1:{sim.port}/x.png", "prompt": "studio shot please"}
    for method, path, body in [("POST", "/generate", gen), ("GET", "/status?task_id=abc", None)]:
        r = request(srv.port, method, path, body)
        assert r.status == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.header("WWW-Authenticate") == "Bearer"
        r = request(srv.port, method, path, body, {"Authorization": "Bearer wrong-" + TOKEN})
        assert r.status == 401
        r = request(srv.port, method, path, body, {"Authorization": "Bearer " + TOKEN[:-1]})
        assert r.status == 401
    assert upload(srv.port, png_bytes()).status == 401
    assert list_uploads(srv) == []
    ok = upload(srv.port, png_bytes(), headers={"Authorization": "Bearer " + TOKEN})
    assert ok.status == 200
    r = request(srv.port, "POST", "/generate", gen, {"Authorization": "Bearer " + TOKEN})
    assert r.status == 200, r
    # files and health stay public: KIE must fetch the file without a token
    assert request(srv.port, "GET", ok.json()["url"]).status == 200
    assert request(srv.port, "GET", "/healthz").status == 200
    assert request(srv.port, "GET", "/config").json()["auth_required"] is True
    assert TOKEN not in srv.log()


def test_rate_limit_generate(sim, server_factory):
    srv = server_factory({"RATE_LIMIT_GENERATE": "2", "KIE_API_KEY": KIE_KEY,
                          "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}", "ALLOW_PRIVATE_INPUT_URLS": "1"})
    gen = {"input_url": f"http://127.0.0.1:{sim.port}/x.png", "prompt": "studio shot please"}
    # invalid requests never reach KIE, so they use none of the budget
    for bad in ({"prompt": "no input"}, dict(gen, aspectRatio="1:1"), dict(gen, resolution="8K")):
        assert request(srv.port, "POST", "/generate", bad).status == 400
    assert request(srv.port, "POST", "/generate", gen).status == 200
    assert request(srv.port, "POST", "/generate", gen).status == 200
    r = request(srv.port, "POST", "/generate", gen)
    assert r.status == 429 and r.json()["error"]["code"] == "rate_limited"
    wait = int(r.header("Retry-After"))
    assert wait >= 1 and r.json()["error"]["retry_after"] == wait and f"try again in {wait} s" in r.json()["error"]["message"]
    creates = [q for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/createTask"]
    assert len(creates) == 2
    # uploads have their own bucket
    assert upload(srv.port, png_bytes()).status == 200


def upload_with_headers(port, header_list):
    """An upload with headers given as (name, value) pairs; a name may repeat."""
    body, ct = multipart([("file", "photo.png", "image/png", png_bytes())])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30 * SLOW)
    conn.putrequest("POST", "/upload")
    for name, value in [("Content-Type", ct), ("Content-Length", str(len(body)))] + header_list:
        conn.putheader(name, value)
    conn.endheaders(body)
    status = conn.getresponse().status
    conn.close()
    return status


def test_rate_limit_uses_proxy_header_only_when_trusted(server_factory):
    srv = server_factory({"RATE_LIMIT_UPLOAD": "1"})
    assert upload(srv.port, png_bytes(), headers={"X-Forwarded-For": "1.1.1.1"}).status == 200
    assert upload(srv.port, png_bytes(), headers={"X-Forwarded-For": "2.2.2.2"}).status == 429  # header ignored
    assert upload(srv.port, png_bytes(), headers={"CF-Connecting-IP": "3.3.3.3"}).status == 429  # this one too


def test_trust_proxy_1_takes_the_entry_the_proxy_appended(server_factory):
    srv = server_factory({"RATE_LIMIT_UPLOAD": "1", "TRUST_PROXY": "1"})
    assert upload_with_headers(srv.port, [("X-Forwarded-For", "9.9.9.9, 1.1.1.1")]) == 200
    # a client cannot dodge the limit by making up the entries before the proxy's own
    assert upload_with_headers(srv.port, [("X-Forwarded-For", "8.8.8.8, 1.1.1.1")]) == 429
    assert upload_with_headers(srv.port, [("X-Forwarded-For", "1.1.1.1")]) == 429
    # nor with a header of its own that the proxy followed with another one
    assert upload_with_headers(srv.port, [("X-Forwarded-For", "7.7.7.7"), ("X-Forwarded-For", "1.1.1.1")]) == 429
    # nor with CF-Connecting-IP, which only Cloudflare mode believes
    assert upload_with_headers(srv.port, [("CF-Connecting-IP", "6.6.6.6"), ("X-Forwarded-For", "1.1.1.1")]) == 429
    assert upload_with_headers(srv.port, [("X-Forwarded-For", "1.1.1.1,2.2.2.2")]) == 200
    assert upload_with_headers(srv.port, [("X-Forwarded-For", "2001:db8::1")]) == 200
    # garbage is no address: the socket peer (127.0.0.1) counts, once
    assert upload_with_headers(srv.port, [("X-Forwarded-For", "1.1.1.1, not-an-ip")]) == 200
    assert upload_with_headers(srv.port, []) == 429


def test_trust_proxy_cloudflare_takes_cf_connecting_ip(server_factory):
    srv = server_factory({"RATE_LIMIT_UPLOAD": "1", "TRUST_PROXY": "cloudflare"})
    assert upload_with_headers(srv.port, [("CF-Connecting-IP", "1.1.1.1"), ("X-Forwarded-For", "5.5.5.5")]) == 200
    assert upload_with_headers(srv.port, [("CF-Connecting-IP", "1.1.1.1"), ("X-Forwarded-For", "4.4.4.4")]) == 429
    assert upload_with_headers(srv.port, [("CF-Connecting-IP", "2.2.2.2")]) == 200
    assert upload_with_headers(srv.port, [("X-Forwarded-For", "3.3.3.3")]) == 200  # the peer, 127.0.0.1
    assert upload_with_headers(srv.port, [("X-Forwarded-For", "4.4.4.4")]) == 429


def test_trust_proxy_rejects_unknown_modes(server_factory):
    proc, log = start_server({"TRUST_PROXY": "maybe"}, expect_fail=True)
    assert proc.returncode != 0 and "TRUST_PROXY must be 0, 1 or cloudflare" in log, log


def test_low_disk_refuses_uploads_with_507(server_factory):
    srv = server_factory({"MIN_FREE_DISK_MB": "9999999"})
    r = upload(srv.port, png_bytes())
    assert r.status == 507 and r.json()["error"]["code"] == "insufficient_storage"
    assert list_uploads(srv) == []


def test_retention_sweeps_old_uploads_and_results_at_start_up(server_factory):
    up = tempfile.mkdtemp(prefix="ppa-retention-")
    os.mkdir(os.path.join(up, "results"))
    now = time.time()

    def put(name, age_hours, data=b""):
        path = os.path.join(up, name)
        with open(path, "wb") as f:
            f.write(data or png_bytes())
        os.utime(path, (now - age_hours * 3600, now - age_hours * 3600))

    put("0f8fad5b-d9cb-469f-a165-70867728950e.png", 3)      # upload past UPLOAD_TTL_HOURS=2
    put("1f8fad5b-d9cb-469f-a165-70867728950e.png", 1)      # young upload
    put("results/task_old.png", 49)                         # result past RESULT_TTL_HOURS=48
    put("results/task_young.png", 47)
    put(".upload-a1b2c3", 2)                                # spool left by a crash
    put("notes.txt", 1000, b"not ours")                     # foreign files are never touched
    put("results/not a task.png", 1000, b"not ours either")
    srv = server_factory({"UPLOAD_DIR": up, "UPLOAD_TTL_HOURS": "2", "RESULT_TTL_HOURS": "48"})
    gone = ["0f8fad5b-d9cb-469f-a165-70867728950e.png", "results/task_old.png", ".upload-a1b2c3"]
    wait_for(lambda: not any(os.path.exists(os.path.join(up, g)) for g in gone))
    for kept in ["1f8fad5b-d9cb-469f-a165-70867728950e.png", "results/task_young.png", "notes.txt",
                 "results/not a task.png"]:
        assert os.path.exists(os.path.join(up, kept)), kept
    assert request(srv.port, "GET", "/files/0f8fad5b-d9cb-469f-a165-70867728950e.png").status == 404
    assert request(srv.port, "GET", "/files/1f8fad5b-d9cb-469f-a165-70867728950e.png").status == 200
    r = request(srv.port, "GET", "/results/task_young")
    assert r.status == 200 and r.body == png_bytes(), r
    assert "retention: removed task_old.png" in srv.log()


def test_page_security_headers(server):
    r = request(server.port, "GET", "/")
    assert r.status == 200
    csp = r.header("Content-Security-Policy")
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.header("X-Content-Type-Options") == "nosniff"
    assert b"<html" in r.body.lower()
    for path in ["/static/core.js", "/static/send.js", "/static/setup.js", "/static/credits.js", "/static/batch.js", "/static/app.js", "/static/app.css"]:
        assert request(server.port, "GET", path).status == 200
    for path in ["/static/.js", "/static/nope.js", "/static/openapi.json"]:
        assert request(server.port, "GET", path).status == 404
    assert request(server.port, "GET", "/static/../main.c").status == 404
    assert request(server.port, "GET", "/static/index.html").status == 404


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.mark.skipif(bool(VALGRIND), reason="valgrind serialises threads; the property is checked in the plain run")
def test_waiting_clients_do_not_cost_threads(sim, server_factory):
    """64 concurrent /status against an upstream answering after 2 s: all succeed,
    and the server's thread count stays flat: pool size + upstream I/O threads + 4 or less."""
    pool = 2
    io = 2
    srv = server_factory({"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
                          "THREAD_POOL_SIZE": str(pool), "UPSTREAM_THREADS": str(io), "KIE_TIMEOUT_SECONDS": "30",
                          "KIE_MAX_CONNECTIONS": "128", "PER_IP_CONNECTIONS": "0"})
    sim_config(sim, latency_ms=2000)
    results = []
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], thread_count(srv.proc.pid))
            time.sleep(0.02)

    def one():
        results.append(request(srv.port, "GET", "/status?task_id=task_missing", timeout=30))

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=one) for _ in range(64)]
    for t in threads:
        t.start()
    wait_for(lambda: request(srv.port, "GET", "/healthz").json()["waiting_on_upstream"] >= 60, timeout=10)
    for t in threads:
        t.join()
    stop.set()
    sampler.join()
    sim_config(sim, latency_ms=0)
    assert len(results) == 64
    assert all(r.status == 404 for r in results), [r for r in results if r.status != 404][:3]
    # main + pool + the UPSTREAM_THREADS I/O threads + the task store's checkpointer (+ libcurl's resolver threads,
    # at most a couple): flat, whatever the number of waiting clients
    assert peak[0] <= pool + io + 4, f"{peak[0]} threads for a pool of {pool} and {io} I/O threads"


def count_open(socks):
    """How many sockets the server has not closed (no EOF, no reset)."""
    n = 0
    for s in socks:
        s.settimeout(0.01)
        try:
            if s.recv(1) != b"":
                n += 1
        except socket.timeout:
            n += 1
        except OSError:
            pass
    return n


def test_idle_and_trickling_connections_do_not_starve_others(server_factory):
    """1000 idle or trickling connections from one client (127.0.0.2) do not stop
    another client (127.0.0.1) from being served."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    srv = server_factory({"CONNECTION_TIMEOUT": "3", "PER_IP_CONNECTIONS": "64"})
    socks = []
    refused = 0
    try:
        for i in range(1000):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            try:
                s.connect(("127.0.0.1", srv.port))  # from 127.0.0.2
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"POST /upload HTTP/1.1\r\n")
            except OSError:
                refused += 1
            socks.append(s)
        t0 = time.time()
        for _ in range(5):
            r = request(srv.port, "GET", "/healthz", timeout=10)
            assert r.status == 200
        assert time.time() - t0 < 3 * SLOW
        # the attacker's connections beyond 64 were closed at once; the rest time out
        alive = count_open(socks)
        assert alive <= 64, alive
        time.sleep(4 * SLOW)
        still = count_open(socks)
        assert still == 0, f"{still} idle connections survived CONNECTION_TIMEOUT"
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
