"""Upstream I/O on several threads (UPSTREAM_THREADS) keeps what one thread guaranteed: every suspended
request is resumed exactly once (one well-formed answer, nothing more on its connection), KIE's failures map
to the same statuses, /metrics and /healthz count every call, and SIGTERM still drains."""
import json
import re
import signal
import socket
import threading
import time

import pytest

from conftest import KIE_KEY, SLOW, error_of, free_port, png_bytes, request, sim_config, start_server, upload, wait_for


def start(sim, threads, **extra):
    """A server on UPSTREAM_THREADS=threads wired to the simulator, with a photo of its own that KIE can fetch
    (srv.photo). The simulator's tasks never finish (step_ms), so every /status asks KIE (a finished task is
    answered from memory) and no callback ever comes (every KIE call is one a test request made)."""
    port = free_port()
    env = {"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}", "ALLOW_PRIVATE_INPUT_URLS": "1",
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "UPSTREAM_THREADS": str(threads),
           "PER_IP_CONNECTIONS": "0", "KIE_TIMEOUT_SECONDS": "2"}
    env.update(extra)
    srv = start_server(env, port=port)
    sim_config(sim, step_ms=600000)
    r = upload(srv.port, png_bytes(16, 16))
    assert r.status == 200, r
    srv.photo = r.json()["url"]
    return srv


def generate_body(srv):
    return json.dumps({"input_url": srv.photo, "prompt": "A studio shot on white", "aspect_ratio": "4:3",
                       "resolution": "1K"}).encode()


def read_answer(sock, timeout):
    """One HTTP/1.1 answer with a Content-Length from sock: (status, headers, body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer ({data[:100]!r})")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of a body")
        rest += chunk
    assert len(rest) == length, f"{len(rest) - length} bytes after the answer: a second answer? {rest[length:][:200]!r}"
    return status, headers, rest


def exchange(port, reqs, timeout):
    """Send each request of reqs on one keep-alive connection, one after the other; then check that nothing
    else arrives (a connection resumed twice would answer twice). Returns [(status, headers, body)]."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = []
    try:
        for method, path, body in reqs:
            head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            if body is not None:
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            sock.sendall(head.encode() + b"\r\n" + (body or b""))
            out.append(read_answer(sock, timeout))
        sock.settimeout(0.3)
        try:
            extra = sock.recv(65536)
        except socket.timeout:
            extra = b""
        assert extra == b"", f"bytes after the last answer: {extra[:200]!r}"
    finally:
        sock.close()
    return out


def well_formed(status, headers, body):
    assert headers.get("x-request-id")
    j = json.loads(body)
    if status == 200:
        assert j["code"] == 200 and j["data"]["taskId"], j
    else:
        assert set(j) == {"error"} and j["error"]["code"] and j["error"]["request_id"] == headers["x-request-id"], j
    return j


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{re.escape(name)}{{{re.escape(want)}}} (\d+)$" if labels else rf"^{re.escape(name)} (\d+)$",
                  text, re.M)
    return int(m.group(1)) if m else 0


@pytest.mark.parametrize("threads", [1, 4])
def test_mixed_fast_slow_hanging_erroring_each_answered_once(sim, threads):
    """/status and /generate at once, over few upstream connections, while KIE answers some calls late, lets
    some hang past KIE_TIMEOUT_SECONDS and fails some with HTTP 500: every request gets exactly one well-formed
    answer, the counts of 504s and 502s are exactly the calls KIE hung up or failed, and /metrics and /healthz
    agree with the simulator. (Enough connections that nothing queues behind a hanging call: a queued call's
    KIE_TIMEOUT_SECONDS runs while it waits, which would make the count of 504s depend on timing.)"""
    srv = start(sim, threads, KIE_MAX_CONNECTIONS="64")
    try:
        tasks = []
        for _ in range(3):
            r = request(srv.port, "POST", "/generate", generate_body(srv), {"Content-Type": "application/json"})
            assert r.status == 200, r
            tasks.append(r.json()["data"]["taskId"])
        n_status, n_generate, hung, failed = 36, 18, 5, 4
        sim_config(sim, latency_ms=150, record_mode="hang", record_mode_times=hung, hang_max_ms=20000,
                   create_mode="http500", create_mode_times=failed)
        results, errors = [], []
        lock = threading.Lock()

        def client(i):
            # each connection: two requests in a row, so the second proves the first left the connection clean
            if i % 3 == 0:
                reqs = [("POST", "/generate", generate_body(srv)), ("GET", "/healthz", None)]
            else:
                reqs = [("GET", f"/status?task_id={tasks[i % 3]}", None), ("GET", "/healthz", None)]
            try:
                got = exchange(srv.port, reqs, 30 * SLOW)
                with lock:
                    results.append((reqs[0][1], got))
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(repr(e))

        clients = [threading.Thread(target=client, args=(i,)) for i in range(n_status + n_generate)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(60 * SLOW)
        sim_config(sim, latency_ms=0, record_mode="normal", create_mode="normal")
        assert not errors, errors[:3]
        assert len(results) == n_status + n_generate
        by = {"status": [], "generate": []}
        for path, got in results:
            (status, headers, body), (h_status, _, _) = got
            well_formed(status, headers, body)
            assert h_status == 200
            by["generate" if path == "/generate" else "status"].append(status)
        assert sorted(by["status"]) == [200] * (n_status - hung) + [504] * hung, by["status"]
        assert sorted(by["generate"]) == [200] * (n_generate - failed) + [502] * failed, by["generate"]
        # nothing left waiting, and the observer counted each call once, whichever thread ran it
        h = wait_for(lambda: (lambda j: j if j["waiting_on_upstream"] == 0 else None)(
            request(srv.port, "GET", "/healthz").json()))
        assert h["active_requests"] <= 1, h
        m = request(srv.port, "GET", "/metrics").body.decode()
        assert metric(m, "ppa_upstream_inflight") == 0
        assert metric(m, "ppa_upstream_calls_total", target="kie", outcome="timeout") == hung
        assert metric(m, "ppa_upstream_calls_total", target="kie", outcome="http_error") == failed
        assert metric(m, "ppa_upstream_calls_total", target="kie", outcome="ok") == 3 + n_status + n_generate - hung - failed
    finally:
        srv.stop()


@pytest.mark.parametrize("threads", [1, 4])
def test_calls_queued_over_the_cap_are_each_answered_once(sim, threads):
    """More concurrent calls than KIE_MAX_CONNECTIONS (3, split over the threads; 4 asked for means 3, one
    connection each): the rest wait their turn and every request still gets exactly one answer."""
    srv = start(sim, threads, KIE_MAX_CONNECTIONS="3", KIE_TIMEOUT_SECONDS="20")
    try:
        r = request(srv.port, "POST", "/generate", generate_body(srv), {"Content-Type": "application/json"})
        task = r.json()["data"]["taskId"]
        sim_config(sim, latency_ms=100)
        got, errors, lock = [], [], threading.Lock()

        def client():
            try:
                ans = exchange(srv.port, [("GET", f"/status?task_id={task}", None)] * 2, 30 * SLOW)
                with lock:
                    got.extend(a[0] for a in ans)
                for a in ans:
                    well_formed(*a)
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(repr(e))

        ts = [threading.Thread(target=client) for _ in range(15)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60 * SLOW)
        assert not errors, errors[:3]
        assert got == [200] * 30, got
        m = request(srv.port, "GET", "/metrics").body.decode()
        assert metric(m, "ppa_upstream_calls_total", target="kie", outcome="ok") == 31
    finally:
        sim_config(sim, latency_ms=0)
        srv.stop()


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("mode,status", [("hang", 504), ("http500", 502), ("nonjson", 502), ("reset", 502),
                                         ("code401", 401), ("code455", 503)])
def test_failures_map_the_same_on_any_thread(sim, threads, mode, status):
    """Each KIE failure maps to the same status whatever the number of I/O threads, for a batch of
    concurrent calls spread over all of them."""
    srv = start(sim, threads, KIE_TIMEOUT_SECONDS="1")
    try:
        sim_config(sim, record_mode=mode, hang_max_ms=10000)
        got = []
        lock = threading.Lock()

        def one():
            r = request(srv.port, "GET", "/status?task_id=task_x_1")
            with lock:
                got.append(r)

        ts = [threading.Thread(target=one) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30 * SLOW)
        assert [r.status for r in got] == [status] * 8, got
        for r in got:
            error_of(r)
    finally:
        sim_config(sim, record_mode="normal")
        srv.stop()


def test_sigterm_drains_calls_on_every_thread(sim):
    """SIGTERM with calls in flight on 4 I/O threads: within the grace every one finishes and is answered;
    past it the rest are failed once each (an answer or a closed connection, never a hang), and the process
    exits 0 (under ASan: nothing leaked)."""
    srv = start(sim, 4, SHUTDOWN_GRACE_SECONDS="5")
    r = request(srv.port, "POST", "/generate", generate_body(srv), {"Content-Type": "application/json"})
    task = r.json()["data"]["taskId"]
    sim_config(sim, latency_ms=1000)
    got, lock = [], threading.Lock()

    def one(path, body=None):
        r = request(srv.port, "POST" if body else "GET", path, body,
                    {"Content-Type": "application/json"} if body else None)
        with lock:
            got.append(r.status)

    ts = [threading.Thread(target=one, args=(f"/status?task_id={task}",)) for _ in range(16)]
    ts += [threading.Thread(target=one, args=("/generate", generate_body(srv))) for _ in range(8)]
    for t in ts:
        t.start()
    wait_for(lambda: request(srv.port, "GET", "/healthz").json()["waiting_on_upstream"] == 24)
    srv.proc.send_signal(signal.SIGTERM)
    for t in ts:
        t.join(20 * SLOW)
    srv.proc.wait(20 * SLOW)
    sim_config(sim, latency_ms=0)
    assert srv.proc.returncode == 0, srv.log()[-2000:]
    assert sorted(got) == [200] * 24, got

    # past the grace: KIE never answers; the calls are cut, each client sees one end, the process exits 0
    srv = start(sim, 4, SHUTDOWN_GRACE_SECONDS="1", KIE_TIMEOUT_SECONDS="30")
    sim_config(sim, record_mode="hang", hang_max_ms=30000)
    ends, lock = [], threading.Lock()

    def cut():
        try:
            ans = exchange(srv.port, [("GET", "/status?task_id=task_x_1", None)], 20 * SLOW)
            status, headers, body = ans[0]
            well_formed(status, headers, body)
            end = status
        except (ConnectionError, OSError) as e:
            end = type(e).__name__
        with lock:
            ends.append(end)

    ts = [threading.Thread(target=cut) for _ in range(12)]
    for t in ts:
        t.start()
    try:
        wait_for(lambda: request(srv.port, "GET", "/healthz").json()["waiting_on_upstream"] == 12)
        t0 = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(15 * SLOW)
        took = time.time() - t0
        for t in ts:
            t.join(15 * SLOW)
    finally:
        sim_config(sim, record_mode="normal")
    assert srv.proc.returncode == 0, srv.log()[-2000:]
    assert took < 4 * SLOW, took
    assert len(ends) == 12 and all(e != 200 for e in ends), ends
    assert "still running after 1000 ms" in srv.log()


def test_thread_count_and_config(sim, server_factory):
    """UPSTREAM_THREADS threads are started (never more than KIE_MAX_CONNECTIONS), and a bad value stops
    start-up like any other variable."""
    import os

    def threads_of(srv):
        return len(os.listdir(f"/proc/{srv.proc.pid}/task"))

    base = {"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}", "THREAD_POOL_SIZE": "2",
            "TASK_STORE": "off"}
    one = server_factory(dict(base, UPSTREAM_THREADS="1"))
    four = server_factory(dict(base, UPSTREAM_THREADS="4"))
    capped = server_factory(dict(base, UPSTREAM_THREADS="4", KIE_MAX_CONNECTIONS="2"))
    assert threads_of(four) - threads_of(one) == 3
    assert threads_of(capped) - threads_of(one) == 1

    def names_of(srv):
        names = []
        for t in os.listdir(f"/proc/{srv.proc.pid}/task"):
            with open(f"/proc/{srv.proc.pid}/task/{t}/comm") as f:
                names.append(f.read().strip())
        return names

    # each thread says what it is (top -H; bench/spool.sh tells the HTTP threads from the image workers by it).
    # A thread names itself once it runs, and the server answers /healthz from one MHD worker while the other
    # may not have run yet: wait for the names (they never change afterwards)
    named = server_factory(dict(base, UPSTREAM_THREADS="3", IMAGE_WORKERS="2", TASK_STORE="auto"))
    want = {"ppa-upstream": 3, "ppa-image": 2, "ppa-checkpoint": 1, "MHD-worker": 2}
    deadline = time.monotonic() + 5 * SLOW
    while True:
        names = names_of(named)
        if all(names.count(k) == n for k, n in want.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert all(names.count(k) == n for k, n in want.items()), names
    assert "ppa-checkpoint" not in names_of(four), "TASK_STORE=off starts no store thread"
    proc, log = start_server({"UPSTREAM_THREADS": "-1"}, expect_fail=True)
    assert proc.returncode != 0 and "UPSTREAM_THREADS" in log
