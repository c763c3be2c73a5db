"""The fetch policy for URLs a peer names (issue 15, item 3): KIE's result URLs are downloaded only over http(s),
without userinfo, from public addresses (ALLOW_PRIVATE_FETCH=0), with the check repeated on every redirect (at most
3), and every refusal looks the same to the client. Callbacks are only a hint: the server asks KIE's recordInfo
itself, a replayed signed callback is refused, and a finished task's answer is never replaced.

A counting HTTP listener on 127.0.0.1 plays the internal service a hostile URL points at; the simulator's
result_url knob makes KIE itself name such a URL. Nothing here reaches beyond 127.0.0.1."""
import base64
import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest

from conftest import (KIE_KEY, free_port, png_bytes, request, sim_config, sim_requests, start_sim, upload,
                      wait_for, wait_task)

SECRET = "cb-secret-123"
HMAC_KEY = "whk-secret-77"
GENERIC = "KIE's result could not be downloaded; it may have expired."


class Listener:
    """An internal service: counts every request (path, Authorization header) it gets."""

    def __init__(self):
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Authorization")))
                port = self.server.server_address[1]
                where = {
                    "/redir-internal": f"http://127.0.0.1:{port}/img.png",
                    "/redir-userinfo": f"http://user:pass@127.0.0.1:{port}/img.png",
                    "/redir-ftp": f"ftp://127.0.0.1:{port}/img.png",
                    "/redir-loop": "/redir-loop",
                }.get(self.path)
                if where:
                    self.send_response(302)
                    self.send_header("Location", where)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/img.png":
                    body = png_bytes(8, 8)
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.stop()


@pytest.fixture
def sim():
    s = start_sim(step_ms=30)
    yield s
    s.stop()


def make_server(server_factory, sim, allow_private_fetch, **extra):
    """No PUBLIC_BASE_URL: photos reach KIE through its file upload (the simulator), and KIE is sent no
    callBackUrl, so the only callbacks are the ones a test posts."""
    env = {"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
           "KIE_UPLOAD_BASE_URL": f"http://127.0.0.1:{sim.port}", "ALLOW_PRIVATE_INPUT_URLS": "0",
           "ALLOW_PRIVATE_FETCH": allow_private_fetch, "CALLBACK_SECRET": SECRET, "KIE_TIMEOUT_SECONDS": "5"}
    env.update(extra)
    return server_factory(env)


def generate(srv):
    up = upload(srv.port, png_bytes(16, 16)).json()
    g = request(srv.port, "POST", "/generate", {"input_url": up["url"], "prompt": "studio product photo"})
    assert g.status == 200, g
    return g.json()["data"]["taskId"]


def sim_task_done(sim, task):
    def done():
        r = request(sim.port, "GET", "/sim/tasks")
        return any(t["taskId"] == task and t["state"] == "success" for t in r.json()["tasks"])
    wait_for(done, timeout=20)


def callback_body(task, urls):
    return {"code": 200, "msg": "Playground task completed successfully.",
            "data": {"taskId": task, "state": "success", "resultJson": json.dumps({"resultUrls": urls})}}


def sign(task, ts, key=HMAC_KEY):
    mac = hmac.new(key.encode(), f"{task}.{ts}".encode(), hashlib.sha256).digest()
    return {"X-Webhook-Timestamp": str(ts), "X-Webhook-Signature": base64.b64encode(mac).decode()}


def sim_result_url(sim, task):
    return f"http://127.0.0.1:{sim.port}/results/{task}.png"


def error_triple(r):
    body = r.json()
    return r.status, body["error"]["code"], body["error"]["message"]


def hostile_urls(port):
    return [f"http://127.0.0.1:{port}/img.png", f"http://0x7f.1:{port}/img.png",
            f"http://user:pass@127.0.0.1:{port}/img.png", f"http://127.0.0.1:{port}/redir-internal"]


# ---- callbacks are a hint -------------------------------------------------------------------------------------

def test_callback_body_is_not_used_kie_is_asked(sim, server_factory, listener):
    srv = make_server(server_factory, sim, "0")
    task = generate(srv)
    sim_task_done(sim, task)
    request(sim.port, "DELETE", "/sim/requests")
    r = request(srv.port, "POST", f"/kie/callback?token={SECRET}", callback_body(task, hostile_urls(listener.port)))
    assert r.status == 200 and r.json() == {"status": "received"}, r
    # the server asked recordInfo itself, with our key, and noted KIE's answer
    wait_for(lambda: f"KIE callback for task {task}: recordInfo says success" in srv.log(), timeout=10)
    asked = [q for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/recordInfo"]
    assert [q["query"].get("taskId") for q in asked] == [task] and asked[0]["auth_ok"], asked
    # /status answers KIE's own resultUrls from the cache, never the callback's
    request(sim.port, "DELETE", "/sim/requests")
    s = request(srv.port, "GET", f"/status?task_id={task}")
    assert s.status == 200 and s.json()["data"]["resultUrls"] == [sim_result_url(sim, task)], s
    assert not [q for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/recordInfo"], "answered from the cache"
    # and the copy uses KIE's URL: on loopback, so refused with ALLOW_PRIVATE_FETCH=0
    r = request(srv.port, "GET", f"/results/{task}")
    assert error_triple(r) == (502, "result_unavailable", GENERIC), r
    assert listener.requests == [], listener.requests
    assert "fetch policy" in srv.log()


def test_callback_for_an_unknown_task_caches_nothing(sim, server_factory, listener):
    srv = make_server(server_factory, sim, "1")
    body = callback_body("task_forged_9", [f"http://127.0.0.1:{listener.port}/img.png"])
    assert request(srv.port, "POST", f"/kie/callback?token={SECRET}", body).status == 200
    wait_for(lambda: "KIE callback for task task_forged_9: recordInfo failed" in srv.log(), timeout=10)
    assert request(srv.port, "GET", "/status?task_id=task_forged_9").status == 404
    assert listener.requests == []


# ---- KIE's own answer names a hostile URL ---------------------------------------------------------------------

# (URL on the listener, ALLOW_PRIVATE_FETCH, requests the listener may see)
HOSTILE = [
    ("http://127.0.0.1:{port}/img.png", "0", []),
    ("http://0x7f.1:{port}/img.png", "0", []),
    ("http://2130706433:{port}/img.png", "0", []),
    ("http://0177.0.0.1:{port}/img.png", "0", []),
    ("http://127.1:{port}/img.png", "0", []),
    ("http://[::ffff:127.0.0.1]:{port}/img.png", "0", []),
    ("http://localhost.:{port}/img.png", "0", []),
    ("http://127.0.0.1:{port}/redir-internal", "0", []),
    # never userinfo, never another scheme, at most 3 redirects: even when private addresses are allowed
    ("http://user:pass@127.0.0.1:{port}/img.png", "1", []),
    ("http://127.0.0.1:{port}/redir-userinfo", "1", ["/redir-userinfo"]),
    ("http://127.0.0.1:{port}/redir-ftp", "1", ["/redir-ftp"]),
    ("http://127.0.0.1:{port}/redir-loop", "1", ["/redir-loop"] * 4),
]


@pytest.mark.parametrize("template,allow,seen", HOSTILE, ids=[f"{h[0][7:].replace(':{port}', '')}-allow{h[1]}"
                                                             for h in HOSTILE])
def test_hostile_result_url_is_never_fetched(sim, server_factory, listener, template, allow, seen):
    srv = make_server(server_factory, sim, allow)
    sim_config(sim, result_url=template.format(port=listener.port))
    task = generate(srv)
    d = wait_task(srv.port, task, lambda d: d["state"] == "success")
    assert d["resultUrls"] == [template.format(port=listener.port)], d  # KIE named it
    r = request(srv.port, "GET", f"/results/{task}")
    assert error_triple(r) == (502, "result_unavailable", GENERIC), r
    assert [p for p, _ in listener.requests] == seen, listener.requests
    assert all(auth is None for _, auth in listener.requests), "credentials were sent"
    # the specific reason is in the log (warn), not in the answer
    assert f"downloading task {task}'s result failed" in srv.log()


def test_allowed_when_allow_private_fetch(sim, server_factory, listener):
    # the control: the listener does serve a PNG, and ALLOW_PRIVATE_FETCH=1 gets it
    srv = make_server(server_factory, sim, "1")
    sim_config(sim, result_url=f"http://127.0.0.1:{listener.port}/img.png")
    task = generate(srv)
    wait_task(srv.port, task, lambda d: d["state"] == "success")
    r = request(srv.port, "GET", f"/results/{task}")
    assert r.status == 200 and r.body == png_bytes(8, 8), r
    assert [p for p, _ in listener.requests] == ["/img.png"]


def test_refused_address_looks_like_a_closed_port(sim, server_factory, listener):
    strict = make_server(server_factory, sim, "0")
    loose = make_server(server_factory, sim, "1")
    answers = {}
    cases = [("refused address", strict, f"http://127.0.0.1:{listener.port}/img.png"),
             ("closed port", loose, f"http://127.0.0.1:{free_port()}/img.png"),
             ("HTTP 404", loose, f"http://127.0.0.1:{listener.port}/missing.png"),
             ("refused redirect", strict, f"http://127.0.0.1:{listener.port}/redir-internal")]
    for name, srv, url in cases:
        sim_config(sim, result_url=url)
        task = generate(srv)
        wait_task(srv.port, task, lambda d: d["state"] == "success")
        answers[name] = error_triple(request(srv.port, "GET", f"/results/{task}"))
    assert len(set(answers.values())) == 1, answers
    assert answers["closed port"] == (502, "result_unavailable", GENERIC)
    assert [p for p, _ in listener.requests] == ["/missing.png"]


# ---- signed callbacks: replays refused -----------------------------------------------------------------------

def test_replayed_signed_callback_is_refused(sim, server_factory, listener):
    sim_config(sim, webhook_hmac_key=HMAC_KEY)
    srv = make_server(server_factory, sim, "1", KIE_WEBHOOK_HMAC_KEY=HMAC_KEY)
    task = generate(srv)
    sim_task_done(sim, task)
    ts = int(time.time())
    headers = sign(task, ts)
    first = request(srv.port, "POST", f"/kie/callback?token={SECRET}", callback_body(task, []), headers)
    assert first.status == 200, first
    # the same (taskId, timestamp) again, with another body: a replay
    other = callback_body(task, [f"http://127.0.0.1:{listener.port}/img.png"])
    again = request(srv.port, "POST", f"/kie/callback?token={SECRET}", other, headers)
    assert again.status == 409 and again.json()["error"]["code"] == "replayed_callback", again
    # a new timestamp, properly signed, is a new callback
    fresh = request(srv.port, "POST", f"/kie/callback?token={SECRET}", other, sign(task, ts + 1))
    assert fresh.status == 200, fresh
    wait_for(lambda: srv.log().count(f"KIE callback for task {task}: recordInfo says success") == 2, timeout=10)
    s = request(srv.port, "GET", f"/status?task_id={task}").json()["data"]
    assert s["resultUrls"] == [sim_result_url(sim, task)], s
    assert listener.requests == []
    assert "replayed" in srv.log()


# ---- the first final answer wins -----------------------------------------------------------------------------

def test_finished_result_is_not_overwritten(sim, server_factory, listener):
    srv = make_server(server_factory, sim, "1")
    task = generate(srv)
    first = wait_task(srv.port, task, lambda d: d["state"] == "success")
    assert first["resultUrls"] == [sim_result_url(sim, task)]
    # later, "KIE" (and the callback body) name another URL: the finished answer stays
    moved = f"http://127.0.0.1:{listener.port}/img.png"
    sim_config(sim, result_url=moved)
    r = request(srv.port, "POST", f"/kie/callback?token={SECRET}", callback_body(task, [moved]))
    assert r.status == 200, r
    wait_for(lambda: f"KIE callback for task {task}: recordInfo says success" in srv.log(), timeout=10)
    s = request(srv.port, "GET", f"/status?task_id={task}").json()["data"]
    assert s["resultUrls"] == [sim_result_url(sim, task)], s
    r = request(srv.port, "GET", f"/results/{task}")
    assert r.status == 200 and r.body.startswith(b"\x89PNG"), r
    assert listener.requests == [], "the copy came from the first answer's URL"
