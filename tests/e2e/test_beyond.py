"""KIE callbacks, the task cache, kept results, several inputs, tunnel auto-discovery, OpenAPI."""
import http.server
import json
import os
import re
import subprocess
import threading
import urllib.parse

import pytest

from conftest import (KIE_KEY, PPA_BIN, free_port, png_bytes, request, sim_config, sim_requests, upload,
                      urlquote, wait_for, wait_task)


def creates(sim):
    return [q for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/createTask"]


def records(sim):
    return [q for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/recordInfo"]


def generate(server, **extra):
    up = upload(server.port, png_bytes(16, 16)).json()
    body = {"input_url": up["url"], "prompt": "studio product photo"}
    body.update(extra)
    g = request(server.port, "POST", "/generate", body)
    assert g.status == 200, g
    return g.json()["data"]["taskId"]


def test_callback_url_is_sent_and_callback_fills_the_cache(server, sim):
    task = generate(server)
    cb = creates(sim)[0]["body"]["callBackUrl"]
    assert cb.startswith(f"http://127.0.0.1:{server.port}/kie/callback?token=")
    # the simulator calls back when the task is done; then /status answers without asking KIE
    wait_for(lambda: f"KIE callback for task {task}" in server.log(), timeout=20)
    request(sim.port, "DELETE", "/sim/requests")
    s = request(server.port, "GET", f"/status?task_id={task}")
    assert s.status == 200 and s.json()["data"]["state"] == "success"
    assert s.json()["data"]["resultUrls"]
    assert records(sim) == [], "a finished task must be answered from the cache"


def test_callback_rejects_wrong_token(server):
    body = {"code": 200, "msg": "ok", "data": {"taskId": "task_forged_1", "state": "success",
                                               "resultJson": json.dumps({"resultUrls": ["http://127.0.0.1:9/x.png"]})}}
    for q in ["", "?token=", "?token=wrong"]:
        r = request(server.port, "POST", "/kie/callback" + q, body)
        assert r.status == 403 and r.json()["error"]["code"] == "forbidden"
    # nothing was cached: /status still goes to KIE (which does not know the forged task)
    assert request(server.port, "GET", "/status?task_id=task_forged_1").status == 404


def test_callback_with_right_token_and_task_id_spelling(sim, server_factory):
    srv = server_factory({"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
                          "KIE_UPLOAD_BASE_URL": f"http://127.0.0.1:{sim.port}",
                          "CALLBACK_SECRET": "cb-secret-123", "ALLOW_PRIVATE_INPUT_URLS": "1"})
    sim_config(sim, outcome="fail", fail_msg="boom")
    task = generate(srv)
    wait_for(lambda: any(t["taskId"] == task and t["state"] == "fail"
                         for t in request(sim.port, "GET", "/sim/tasks").json()["tasks"]), timeout=20)
    # the callback is a hint (its body says nothing we use): the server asks KIE's recordInfo
    body = {"code": 501, "msg": "Playground task failed.",
            "data": {"task_id": task, "state": "success", "failMsg": "forged", "resultJson": None}}
    r = request(srv.port, "POST", "/kie/callback?token=cb-secret-123", body)
    assert r.status == 200, r
    wait_for(lambda: f"KIE callback for task {task}: recordInfo says fail" in srv.log(), timeout=10)
    request(sim.port, "DELETE", "/sim/requests")
    s = request(srv.port, "GET", f"/status?task_id={task}")
    assert s.status == 200 and s.json()["data"]["state"] == "fail" and s.json()["data"]["failMsg"] == "boom"
    assert records(sim) == [], "answered from the cache the callback filled"
    assert request(srv.port, "POST", "/kie/callback?token=cb-secret-123", b"{nope",
                   {"Content-Type": "application/json"}).status == 400
    assert "cb-secret-123" not in srv.log()


def test_polling_works_without_callbacks_and_fills_cache(sim, server_factory):
    # no PUBLIC_BASE_URL: no callBackUrl is sent; polling finds the result and caches it
    srv = server_factory({"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
                          "ALLOW_PRIVATE_INPUT_URLS": "1"})
    r = request(srv.port, "POST", "/generate", {"input_url": f"http://127.0.0.1:{sim.port}/results/none.png",
                                                "prompt": "studio product photo"})
    task = r.json()["data"]["taskId"]
    assert "callBackUrl" not in creates(sim)[0]["body"]
    wait_task(srv.port, task)
    n = len(records(sim))
    request(srv.port, "GET", f"/status?task_id={task}")
    assert len(records(sim)) == n


def test_results_copy_on_first_use(server, sim):
    task = generate(server)
    wait_task(server.port, task, lambda d: d["state"] == "success")
    r = request(server.port, "GET", f"/results/{task}")
    assert r.status == 200 and r.body.startswith(b"\x89PNG") and r.header("Content-Type") == "image/png"
    kept = os.path.join(server.upload_dir, "results", f"{task}.png")
    assert open(kept, "rb").read() == r.body
    # the status answer now names the stable copy
    d = request(server.port, "GET", f"/status?task_id={task}").json()["data"]
    assert re.fullmatch(rf"http://127\.0\.0\.1:{server.port}/results/{task}\?exp=\d+&sig=[0-9a-f]{{64}}", d["stable_url"])
    # served from our copy even if KIE's URL is gone
    fetches = [q for q in sim_requests(sim) if q["path"].startswith("/results/")]
    assert request(server.port, "GET", f"/results/{task}").status == 200
    assert len([q for q in sim_requests(sim) if q["path"].startswith("/results/")]) == len(fetches)
    assert r.header("Content-Disposition") == "inline"
    # the page's "Download result": our copy, as an attachment named after the photo
    d = request(server.port, "GET", f"/results/{task}?download=1&name=" + urlquote("Red mug (2).HEIC"))
    assert d.status == 200 and d.body == r.body
    assert d.header("Content-Disposition") == 'attachment; filename="Red mug 2-studio.png"'
    for hostile in ('x";\r\nSet-Cookie: a=b', "../../etc/passwd", ".."):
        d = request(server.port, "GET", f"/results/{task}?download=1&name=" + urlquote(hostile))
        disp = d.header("Content-Disposition")
        assert d.status == 200 and disp.startswith('attachment; filename="') and disp.count('"') == 2, disp
        assert "/" not in disp and "\r" not in disp and ";" not in disp[len("attachment; "):], disp
    d = request(server.port, "GET", f"/results/{task}?download=1")
    assert d.header("Content-Disposition") == f'attachment; filename="{task}-studio.png"'


def test_new_task_is_waiting_until_kie_knows_it(server, sim):
    # KIE may answer "recordInfo is null" right after createTask: our own new task is "waiting", not 404
    sim_config(sim, record_mode="code422")
    task = generate(server)
    r = request(server.port, "GET", f"/status?task_id={task}")
    assert r.status == 200 and r.json()["data"]["state"] == "waiting" and r.json()["data"]["taskId"] == task, r
    r = request(server.port, "GET", "/status?task_id=task_flux-2_1765174753676")  # not ours
    assert r.status == 404 and r.json()["error"]["code"] == "task_not_found", r
    assert "unknown or expired" in r.json()["error"]["message"]
    sim_config(sim, record_mode="normal")


def test_keep_result_copies_automatically(server, sim):
    task = generate(server, keep_result=True)
    kept = os.path.join(server.upload_dir, "results", f"{task}.png")
    wait_for(lambda: os.path.exists(kept), timeout=20)
    d = wait_task(server.port, task, lambda d: d.get("stable_url"), timeout=10)
    assert d["stable_url"].split("?")[0].endswith(f"/results/{task}") and "&sig=" in d["stable_url"]


def test_results_errors(server, sim):
    sim_config(sim, step_ms=5000)
    task = generate(server)
    r = request(server.port, "GET", f"/results/{task}")
    assert r.status == 409 and r.json()["error"]["code"] == "task_not_finished"
    sim_config(sim, step_ms=50)
    r = request(server.port, "GET", "/results/task_unknown_9")
    assert r.status == 404 and r.json()["error"]["code"] == "task_not_found"
    assert request(server.port, "GET", "/results/..%2Fetc").status == 404
    sim_config(sim, outcome="fail", fail_msg="no product found")
    task = generate(server)
    wait_task(server.port, task, lambda d: d["state"] == "fail")
    r = request(server.port, "GET", f"/results/{task}")
    assert r.status == 409 and "no product found" in r.json()["error"]["message"]


class FakeMetrics(http.server.BaseHTTPRequestHandler):
    calls = 0

    def do_GET(self):
        FakeMetrics.calls += 1
        host = "" if FakeMetrics.calls < 3 else "shop-test-tunnel.trycloudflare.com"
        body = json.dumps({"hostname": host}).encode() if self.path == "/quicktunnel" else b"{}"
        self.send_response(200 if self.path == "/quicktunnel" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_public_base_url_auto_from_cloudflared(sim, server_factory):
    metrics = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeMetrics)
    t = threading.Thread(target=metrics.serve_forever, daemon=True)
    t.start()
    try:
        srv = server_factory({"PUBLIC_BASE_URL": "auto", "KIE_API_KEY": KIE_KEY, "KIE_UPLOAD": "never",
                              "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
                              "CLOUDFLARED_METRICS_URL": f"http://127.0.0.1:{metrics.server_port}"})
        assert request(srv.port, "GET", "/config").json()["public_url_ok"] is False  # not up yet
        c = wait_for(lambda: (lambda c: c if c["public_url_ok"] else None)(request(srv.port, "GET", "/config").json()),
                     timeout=15)
        assert c["public_base_url"] == "https://shop-test-tunnel.trycloudflare.com"
        assert FakeMetrics.calls >= 3
        up = upload(srv.port, png_bytes()).json()
        assert up["public_url"] == f"https://shop-test-tunnel.trycloudflare.com/files/{up['filename']}"
    finally:
        metrics.shutdown()


def test_openapi_matches_route_table(server):
    r = request(server.port, "GET", "/openapi.json")
    assert r.status == 200 and r.header("Content-Type") == "application/json"
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    routes = subprocess.run([PPA_BIN, "routes"], capture_output=True, text=True, check=True).stdout.split("\n")
    heads = {l.split(" ", 1)[1] for l in routes if l.startswith("HEAD ")}
    table = {tuple(l.split(" ", 1)) for l in routes if l and not l.startswith("HEAD ")}
    # every GET route also answers HEAD, and `routes` says so
    assert heads == {p for m, p in table if m == "GET"}, heads
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m in ("get", "post", "put", "delete")}
    assert documented == table, (documented ^ table)
    for path, ops in doc["paths"].items():
        for m, op in ops.items():
            assert op.get("summary") and op.get("responses"), (m, path)
            errs = [c for c in op["responses"] if c.startswith(("4", "5"))]
            if path not in ("/healthz", "/"):  # these cannot fail short of a crash
                assert errs, f"{m} {path} documents no error response"
    # every $ref resolves
    text = json.dumps(doc)
    for ref in re.findall(r'"\$ref": "#/components/schemas/([A-Za-z]+)"', text):
        assert ref in doc["components"]["schemas"], ref


def test_status_never_reveals_the_callback_token(sim, server_factory):
    port = free_port()
    srv = server_factory({"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
                          "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "ALLOW_PRIVATE_INPUT_URLS": "1",
                          "CALLBACK_SECRET": "cb-secret-123"}, port=port)
    task = generate(srv)
    assert "cb-secret-123" in creates(sim)[0]["body"]["callBackUrl"]  # KIE gets it ...
    first = request(srv.port, "GET", f"/status?task_id={task}")     # ... but KIE echoes it in data.param
    assert first.status == 200 and b"cb-secret-123" not in first.body
    assert "REDACTED" in first.json()["data"]["param"]
    wait_for(lambda: f"KIE callback for task {task}" in srv.log(), timeout=20)
    cached = request(srv.port, "GET", f"/status?task_id={task}")
    assert cached.status == 200 and b"cb-secret-123" not in cached.body


@pytest.mark.parametrize("server_key,accepted", [("whk-secret-77", True), ("another-key", False)])
def test_webhook_signature_checked_when_configured(sim, server_factory, server_key, accepted):
    sim_config(sim, webhook_hmac_key="whk-secret-77")
    port = free_port()
    srv = server_factory({"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
                          "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "ALLOW_PRIVATE_INPUT_URLS": "1",
                          "CALLBACK_SECRET": "cb-secret-123", "KIE_WEBHOOK_HMAC_KEY": server_key}, port=port)
    task = generate(srv)
    if accepted:
        wait_for(lambda: f"KIE callback for task {task}" in srv.log(), timeout=20)
    else:
        wait_for(lambda: "bad or missing webhook signature" in srv.log(), timeout=20)
        assert f"KIE callback for task {task}" not in srv.log()
        # polling still works
        wait_task(srv.port, task, lambda d: d["state"] == "success")
    # a forged callback with the right token but no signature is refused either way
    forged = {"code": 200, "data": {"taskId": "task_forged_2", "state": "success", "resultJson": ""}}
    r = request(srv.port, "POST", "/kie/callback?token=cb-secret-123", forged)
    assert r.status == 403 and r.json()["error"]["code"] == "bad_signature"
    assert "whk-secret-77" not in srv.log()
