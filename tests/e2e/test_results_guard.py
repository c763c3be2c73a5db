"""Kept results cannot fill the disk: the upload disk guard (MIN_FREE_DISK_MB) applies to them, MAX_RESULT_BYTES
caps one, RESULTS_MAX_MB caps them all (oldest first), /healthz says degraded while the guard is active, and the
images carry a sandboxing CSP and CORP."""
import os
import time

from conftest import (KIE_KEY, error_of, free_port, png_bytes, request, sim_config, upload, wait_for, wait_task)


def env_for(sim, port, **extra):
    env = {"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "ALLOW_PRIVATE_INPUT_URLS": "1", "KIE_TIMEOUT_SECONDS": "5"}
    env.update(extra)
    return env


def finished_task(srv, upload_port=None):
    up = upload(upload_port or srv.port, png_bytes(16, 16)).json()
    g = request(srv.port, "POST", "/generate", {"input_url": up["url"], "prompt": "studio product photo"})
    assert g.status == 200, g
    task = g.json()["data"]["taskId"]
    wait_task(srv.port, task, lambda d: d["state"] == "success")
    return task


def results_dir(srv):
    d = os.path.join(srv.upload_dir, "results")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_low_disk_refuses_results_and_healthz_says_degraded(sim, server_factory):
    port = free_port()
    srv = server_factory(env_for(sim, port, MIN_FREE_DISK_MB="0"), port=port)
    task = finished_task(srv)
    h = request(srv.port, "GET", "/healthz").json()
    assert h["status"] == "ok" and "reason" not in h
    srv.stop()
    # the same upload dir, now with a guard no disk can satisfy
    low = server_factory(dict(srv.env, MIN_FREE_DISK_MB="10000000"), port=port)
    r = request(low.port, "GET", f"/results/{task}")
    assert r.status == 507 and error_of(r)["code"] == "insufficient_storage", r
    assert "MB" not in error_of(r)["message"], "the 507 must not tell how much disk is free"
    assert results_dir(low) == [] and not [f for f in os.listdir(low.upload_dir) if f.startswith(".upload-")]
    h = request(low.port, "GET", "/healthz")
    assert h.status == 200 and h.json()["status"] == "degraded" and "MIN_FREE_DISK_MB" in h.json()["reason"]
    u = upload(low.port, png_bytes(8, 8))
    assert u.status == 507 and "MB" not in error_of(u)["message"]


def test_a_result_over_max_result_bytes_is_refused_whole(sim, server_factory):
    port = free_port()
    srv = server_factory(env_for(sim, port, MAX_RESULT_BYTES="2048"), port=port)
    task = finished_task(srv)
    r = request(srv.port, "GET", f"/results/{task}")
    assert r.status == 502 and error_of(r)["code"] == "result_too_large", r
    assert "MAX_RESULT_BYTES" in error_of(r)["message"]
    assert results_dir(srv) == []
    assert not [f for f in os.listdir(srv.upload_dir) if f.startswith(".upload-")], "a half-written result was left"


def test_results_max_mb_evicts_the_oldest(sim, server_factory):
    port = free_port()
    srv = server_factory(env_for(sim, port, RESULTS_MAX_MB="1"), port=port)
    kept = []
    for _ in range(3):
        task = finished_task(srv)
        r = request(srv.port, "GET", f"/results/{task}")
        assert r.status == 200, r
        kept.append((task, len(r.body)))
        time.sleep(1.1)  # distinct mtimes: "oldest" is by modification time
    sizes = [s for _, s in kept]
    names = results_dir(srv)
    total = sum(os.path.getsize(os.path.join(srv.upload_dir, "results", n)) for n in names)
    assert total <= 1024 * 1024, (names, sizes)
    # the newest stays; what went, went oldest first
    assert f"{kept[-1][0]}.png" in names
    gone = [t for t, _ in kept if f"{t}.png" not in names]
    assert gone == [t for t, _ in kept][:len(gone)] and gone, (gone, names, sizes)
    assert "(RESULTS_MAX_MB)" in srv.log()


def test_files_and_results_are_sandboxed(server, sim):
    up = upload(server.port, png_bytes(16, 16)).json()
    f = request(server.port, "GET", up["url"])
    assert f.header("Content-Security-Policy") == "default-src 'none'; sandbox"
    assert f.header("Cross-Origin-Resource-Policy") == "same-site"
    task = finished_task(server)
    r = request(server.port, "GET", f"/results/{task}")
    assert r.status == 200
    assert r.header("Content-Security-Policy") == "default-src 'none'; sandbox"
    assert r.header("Cross-Origin-Resource-Policy") == "same-site"


def recordinfo_calls(sim):
    from conftest import sim_requests
    return [q for q in sim_requests(sim) if q["path"].startswith("/api/v1/jobs/recordInfo")]


def test_results_need_the_token_or_a_signed_stable_url(sim, server_factory):
    import hashlib
    import hmac
    import urllib.parse
    port = free_port()
    srv = server_factory(env_for(sim, port, API_TOKEN="tok-9", RESULTS_URL_SECRET="s3cret-for-tests"), port=port)
    auth = {"Authorization": "Bearer tok-9"}
    up = upload(srv.port, png_bytes(16, 16), headers=auth).json()
    g = request(srv.port, "POST", "/generate", {"input_url": up["url"], "prompt": "studio product photo"}, auth)
    task = g.json()["data"]["taskId"]
    wait_for(lambda: request(srv.port, "GET", f"/status?task_id={task}", headers=auth).json()["data"]["state"]
             == "success")
    assert request(srv.port, "GET", f"/results/{task}").status == 401
    assert request(srv.port, "GET", f"/results/{task}", headers=auth).status == 200
    stable = request(srv.port, "GET", f"/status?task_id={task}", headers=auth).json()["data"]["stable_url"]
    u = urllib.parse.urlsplit(stable)
    q = dict(urllib.parse.parse_qsl(u.query))
    assert u.path == f"/results/{task}" and set(q) == {"exp", "sig"}
    assert 6.9 * 86400 < int(q["exp"]) - time.time() <= 7 * 86400 + 5  # RESULTS_URL_TTL_HOURS: 7 days
    r = request(srv.port, "GET", f"{u.path}?{u.query}")  # no token: the link is the capability
    assert r.status == 200 and r.body[:4] == b"\x89PNG"
    assert request(srv.port, "GET", f"{u.path}?{u.query}&download=1&name=mug.jpg").status == 200
    # the record's stable_url is signed when answered, too
    rec = request(srv.port, "GET", f"/tasks/{task}", headers=auth).json()
    assert rec["stable_url"].split("?")[0].endswith(f"/results/{task}") and "sig=" in rec["stable_url"]
    # tampered, for another task, expired (signed correctly with the secret, but in the past): all refused
    bad_sig = q["sig"][:-1] + ("0" if q["sig"][-1] != "0" else "1")
    assert request(srv.port, "GET", f"{u.path}?exp={q['exp']}&sig={bad_sig}").status == 401
    assert request(srv.port, "GET", f"/results/task_other?exp={q['exp']}&sig={q['sig']}").status == 401
    assert request(srv.port, "GET", f"{u.path}?exp={int(q['exp']) + 1}&sig={q['sig']}").status == 401
    key = hmac.new(b"s3cret-for-tests", b"product-photo-api results v1", hashlib.sha256).digest()
    past = int(time.time()) - 10
    sig = hmac.new(key, f"{task}|{past}".encode(), hashlib.sha256).hexdigest()
    assert request(srv.port, "GET", f"{u.path}?exp={past}&sig={sig}").status == 401
    future = int(time.time()) + 60
    sig = hmac.new(key, f"{task}|{future}".encode(), hashlib.sha256).hexdigest()
    assert request(srv.port, "GET", f"{u.path}?exp={future}&sig={sig}").status == 200  # the scheme, independently


def test_unknown_results_cost_no_kie_call_and_are_rate_limited(sim, server_factory):
    port = free_port()
    srv = server_factory(env_for(sim, port, RATE_LIMIT_RESULTS="3"), port=port)
    before = len(recordinfo_calls(sim))
    for i in range(3):
        r = request(srv.port, "GET", f"/results/task_flux-2_176517475367{i}")
        assert r.status == 404 and error_of(r)["code"] == "task_not_found", r
    assert len(recordinfo_calls(sim)) == before, "an id this server never created was asked of KIE"
    r = request(srv.port, "GET", "/results/task_flux-2_1765174753679")
    assert r.status == 429 and r.header("Retry-After"), r


def test_stable_url_survives_a_restart(sim, server_factory):
    port = free_port()
    srv = server_factory(env_for(sim, port, API_TOKEN="t"), port=port)
    auth = {"Authorization": "Bearer t"}
    up = upload(srv.port, png_bytes(16, 16), headers=auth).json()
    g = request(srv.port, "POST", "/generate", {"input_url": up["url"], "prompt": "studio product photo",
                                                 "keep_result": True}, auth)
    task = g.json()["data"]["taskId"]
    stable = wait_for(lambda: request(srv.port, "GET", f"/status?task_id={task}", headers=auth)
                      .json()["data"].get("stable_url"))
    assert oct(os.stat(os.path.join(srv.upload_dir, ".results-secret")).st_mode & 0o777) == "0o600"
    srv.stop()
    srv2 = server_factory(dict(srv.env), port=port)
    path = stable[stable.index("/results/"):]
    assert request(srv2.port, "GET", path).status == 200
