"""What an operator needs: GET /metrics (Prometheus text) whose counters move with real traffic, its token, the
CloudWatch EMF line, and a graceful shutdown bounded by SHUTDOWN_GRACE_SECONDS."""
import http.client
import json
import re
import signal
import socket
import threading
import time

from conftest import (KIE_KEY, SLOW, Response, free_port, png_bytes, request, sim_config, start_server, upload,
                      wait_for, wait_task)


def scrape(port, headers=None):
    r = request(port, "GET", "/metrics", headers=headers)
    assert r.status == 200, r
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4")
    values = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def env_for(sim, port, **extra):
    env = {"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "ALLOW_PRIVATE_INPUT_URLS": "1", "KIE_TIMEOUT_SECONDS": "5"}
    env.update(extra)
    return env


def test_metrics_counters_move(sim, server_factory):
    port = free_port()
    srv = server_factory(env_for(sim, port), port=port)
    before = scrape(srv.port)
    assert before['ppa_tasks_created_total'] == 0 and before['ppa_uploads_total'] == 0
    up = upload(srv.port, png_bytes(32, 24))
    assert up.status == 200
    g = request(srv.port, "POST", "/generate", {"input_url": up.json()["url"], "prompt": "studio product photo"},
                {"Idempotency-Key": "m-1"})
    again = request(srv.port, "POST", "/generate", {"input_url": up.json()["url"], "prompt": "studio product photo"},
                    {"Idempotency-Key": "m-1"})
    assert g.status == 200 and again.header("Idempotent-Replayed") == "true"
    task = g.json()["data"]["taskId"]
    wait_task(srv.port, task)
    request(srv.port, "GET", "/no-such-route")

    def finished():
        # a request is counted when libmicrohttpd reports it complete, just after its answer went out
        m = scrape(srv.port)
        return m if (m.get("ppa_tasks_succeeded_total") == 1 and
                     m.get('ppa_http_requests_total{method="",route="unmatched",status="404"}') == 1) else None
    m = wait_for(finished)
    assert m["ppa_uploads_total"] == 1 and m["ppa_upload_bytes_total"] == len(png_bytes(32, 24))
    assert m["ppa_tasks_created_total"] == 1 and m["ppa_idempotent_replays_total"] == 1
    assert m["ppa_credits_spent_total"] == 5 and m["ppa_tasks_failed_total"] == 0
    assert m['ppa_http_requests_total{method="POST",route="/upload",status="200"}'] == 1
    assert m['ppa_http_requests_total{method="POST",route="/generate",status="200"}'] == 2
    assert m['ppa_http_requests_total{method="",route="unmatched",status="404"}'] == 1
    assert m['ppa_http_requests_total{method="GET",route="/status",status="200"}'] >= 1
    assert m['ppa_upstream_calls_total{target="kie",outcome="ok"}'] >= 2  # createTask + recordInfo
    # a histogram: cumulative buckets, +Inf == count
    b = [v for k, v in m.items() if k.startswith('ppa_http_request_duration_seconds_bucket{method="POST",route="/upload"')]
    assert b == sorted(b) and b[-1] == m['ppa_http_request_duration_seconds_count{method="POST",route="/upload"}'] == 1
    assert m["ppa_disk_guard_active"] == 0 and m["ppa_image_queue"] == 0
    # KIE refusing: counted as an upstream http_error
    sim_config(sim, create_mode="http500", create_mode_times=1)
    assert request(srv.port, "POST", "/generate", {"input_url": up.json()["url"], "prompt": "studio shot"}).status == 502
    m2 = scrape(srv.port)
    assert m2['ppa_upstream_calls_total{target="kie",outcome="http_error"}'] == m.get(
        'ppa_upstream_calls_total{target="kie",outcome="http_error"}', 0) + 1


def test_metrics_token(sim, server_factory):
    srv = server_factory({"API_TOKEN": "api-tok"})
    assert request(srv.port, "GET", "/metrics").status == 401
    scrape(srv.port, {"Authorization": "Bearer api-tok"})
    srv2 = server_factory({"API_TOKEN": "api-tok", "METRICS_TOKEN": "prom-tok"})
    assert request(srv2.port, "GET", "/metrics", headers={"Authorization": "Bearer api-tok"}).status == 401
    scrape(srv2.port, {"Authorization": "Bearer prom-tok"})


def test_sigterm_drains_within_the_grace_then_exits(sim, server_factory):
    port = free_port()
    srv = start_server(env_for(sim, port, SHUTDOWN_GRACE_SECONDS="2"), port=port)
    photo = upload(srv.port, png_bytes(16, 16)).json()["url"]
    sim_config(sim, latency_ms=1000)
    done = {}

    def call(name):
        done[name] = request(srv.port, "POST", "/generate", {"input_url": photo, "prompt": "studio product photo"})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: request(srv.port, "GET", "/healthz").json()["waiting_on_upstream"] == 3)
    t0 = time.time()
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # no new connections once SIGTERM arrived
    refused = False
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
    except OSError:
        refused = True
    for t in threads:
        t.join(15 * SLOW)
    srv.proc.wait(15 * SLOW)
    assert refused, "still accepting after SIGTERM"
    assert srv.proc.returncode == 0
    assert sorted(r.status for r in done.values()) == [200, 200, 200], done  # the in-flight ones finished
    # a call longer than the grace is cut: the process still exits, about SHUTDOWN_GRACE_SECONDS later
    srv2 = start_server(env_for(sim, free_port(), SHUTDOWN_GRACE_SECONDS="1"))
    photo2 = upload(srv2.port, png_bytes(16, 16)).json()["url"]
    sim_config(sim, latency_ms=4000)
    def slow_generate():
        try:
            done["slow"] = request(srv2.port, "POST", "/generate", {"input_url": photo2,
                                                                     "prompt": "studio product photo"})
        except (OSError, http.client.HTTPException) as e:  # cut at the end of the grace: expected
            done["slow"] = e

    th = threading.Thread(target=slow_generate)
    th.start()
    wait_for(lambda: request(srv2.port, "GET", "/healthz").json()["waiting_on_upstream"] == 1)
    t0 = time.time()
    srv2.proc.send_signal(signal.SIGTERM)
    srv2.proc.wait(15 * SLOW)
    took = time.time() - t0
    th.join(15 * SLOW)
    sim_config(sim, latency_ms=0)
    assert srv2.proc.returncode == 0 and took < 3.5 * SLOW, took
    assert "still running after 1000 ms" in srv2.log()
    # the call longer than the grace got no 200: it was cut, or answered as failed while the server stopped
    assert not isinstance(done["slow"], Response) or done["slow"].status >= 500, done["slow"]


def test_config_names_the_upstream_deadlines(server_factory, tmp_path):
    c = request(server_factory({}).port, "GET", "/config").json()
    assert c["upstream_timeout_seconds"] == {"kie": 30, "result_download": 120} and c["on_lambda"] is False
    # on Lambda every upstream deadline stays below API Gateway's 30 s, and 30 s or more is warned about
    lam = server_factory({"AWS_LAMBDA_FUNCTION_NAME": "ppa", "UPLOAD_DIR": str(tmp_path / "up"),
                          "KIE_TIMEOUT_SECONDS": "25"})
    c = request(lam.port, "GET", "/config").json()
    assert c["on_lambda"] is True and c["upstream_timeout_seconds"] == {"kie": 25, "result_download": 25}
    assert not any("KIE_TIMEOUT_SECONDS" in w for w in c["warnings"])
    slow = server_factory({"AWS_LAMBDA_FUNCTION_NAME": "ppa", "UPLOAD_DIR": str(tmp_path / "up2")})
    c = request(slow.port, "GET", "/config").json()
    assert any("KIE_TIMEOUT_SECONDS is 30 or more on Lambda" in w for w in c["warnings"]), c["warnings"]
