"""The task store (local: SQLite in UPLOAD_DIR/tasks.db): records of this server's tasks, Idempotency-Key on
POST /generate, GET /tasks, GET /tasks/<id>, GET /credits and DAILY_GENERATION_LIMIT. Against the KIE simulator,
which counts createTask calls, keeps a credit balance per key and reports creditsConsumed."""
import concurrent.futures
import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from conftest import (KIE_KEY, SLOW, error_of, free_port, png_bytes, request, sim_config, sim_requests, start_server,
                      upload, wait_for, wait_task)

PROMPT = "Studio product shot on a seamless white background"


def env_for(sim, port, **extra):
    env = {"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "ALLOW_PRIVATE_INPUT_URLS": "1", "KIE_TIMEOUT_SECONDS": "5"}
    env.update(extra)
    return env


def creates(sim):
    return [q for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/createTask"]


def gen(port, body, key=None, headers=None):
    h = dict(headers or {})
    if key is not None:
        h["Idempotency-Key"] = key
    raw = json.dumps(body).encode()
    h["Content-Type"] = "application/json"
    return request(port, "POST", "/generate", raw, h)


@pytest.fixture
def photo(server):
    return upload(server.port, png_bytes(32, 24)).json()["url"]


def test_replay_returns_the_first_answer_byte_for_byte_without_a_kie_call(server, sim, photo):
    body = {"input_url": photo, "prompt": PROMPT, "resolution": "2K"}
    first = gen(server.port, body, key="order-17-photo-3")
    assert first.status == 200, first
    assert first.header("Idempotent-Replayed") is None
    again = gen(server.port, body, key="order-17-photo-3")
    assert again.status == 200, again
    assert again.header("Idempotent-Replayed") == "true"
    assert again.body == first.body
    assert len(creates(sim)) == 1
    # another body with the same key: refused, still no KIE call
    other = gen(server.port, dict(body, prompt="something else"), key="order-17-photo-3")
    assert other.status == 422 and error_of(other)["code"] == "idempotency_key_reused", other
    # a different key is a new task
    third = gen(server.port, body, key="order-17-photo-4")
    assert third.status == 200 and third.json()["data"]["taskId"] != first.json()["data"]["taskId"]
    assert len(creates(sim)) == 2
    # without a key nothing is deduplicated
    assert gen(server.port, body).status == 200 and gen(server.port, body).status == 200
    assert len(creates(sim)) == 4


@pytest.mark.parametrize("key", ["", "tab\there", "é", "x" * 256])  # HTTP trims outer spaces itself
def test_invalid_keys_are_refused(server, sim, photo, key):
    r = gen(server.port, {"input_url": photo, "prompt": PROMPT}, key=key)
    assert r.status == 400 and error_of(r)["code"] == "invalid_idempotency_key", (key, r)
    assert creates(sim) == []


def test_a_kie_error_is_not_stored_as_the_answer(server, sim, photo):
    body = {"input_url": photo, "prompt": PROMPT}
    sim_config(sim, create_mode="http500", create_mode_times=1)
    r = gen(server.port, body, key="retry-me")
    assert r.status == 502, r
    r = gen(server.port, body, key="retry-me")
    assert r.status == 200 and r.header("Idempotent-Replayed") is None, r
    assert len(creates(sim)) == 2


def test_concurrent_duplicates_make_one_task(server, sim, photo):
    sim_config(sim, latency_ms=800)
    body = {"input_url": photo, "prompt": PROMPT}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: gen(server.port, body, key="double-click-1"), range(8)))
    ok = [a for a in answers if a.status == 200]
    busy = [a for a in answers if a.status == 409]
    assert len(ok) + len(busy) == 8, answers
    assert len(ok) >= 1 and busy, answers
    for b in busy:
        assert error_of(b)["code"] == "request_in_progress" and b.header("Retry-After") == "1", b
    assert len(creates(sim)) == 1
    assert len({a.body for a in ok}) == 1
    # once the first finished, a retry gets its answer
    r = gen(server.port, body, key="double-click-1")
    assert r.status == 200 and r.header("Idempotent-Replayed") == "true" and r.body == ok[0].body
    assert len(creates(sim)) == 1


def test_tasks_list_records_and_pagination(server, sim, photo):
    sim_config(sim, initial_credits=1000, price_1k=5, price_2k=7)
    ids = []
    for i in range(5):
        r = gen(server.port, {"input_url": photo, "prompt": f"{PROMPT} #{i}", "resolution": "1K" if i % 2 else "2K"})
        assert r.status == 200, r
        ids.append(r.json()["data"]["taskId"])
    page = request(server.port, "GET", "/tasks?limit=2").json()
    assert [t["id"] for t in page["tasks"]] == ids[::-1][:2]
    assert page["next"]
    seen = [t["id"] for t in page["tasks"]]
    while page["next"]:
        page = request(server.port, "GET", f"/tasks?limit=2&before={page['next']}").json()
        seen += [t["id"] for t in page["tasks"]]
    assert seen == ids[::-1]
    rec = request(server.port, "GET", f"/tasks/{ids[0]}").json()
    assert rec["id"] == ids[0] and rec["prompt"] == f"{PROMPT} #0" and rec["resolution"] == "2K"
    assert rec["input_urls"] == [photo] and rec["thumbnail_url"] == photo
    assert rec["sent_input_urls"][0].startswith("http://127.0.0.1:") and rec["sent_input_urls"][0].endswith(photo)
    assert rec["state"] == "waiting" and rec["credits"] is None and len(rec["request_hash"]) == 64
    # /status updates the record: state, results, KIE's creditsConsumed and costTime
    d = wait_task(server.port, ids[0])
    assert d["state"] == "success"

    def recorded():
        t = request(server.port, "GET", f"/tasks/{ids[0]}").json()
        return t if t["state"] == "success" else None
    rec = wait_for(recorded)
    assert rec["result_urls"] == d["resultUrls"] and rec["credits"] == 7 and rec["cost_time"] is not None
    assert rec["fail_code"] is None and rec["updated_at"] >= rec["created_at"]
    # refusals
    assert request(server.port, "GET", "/tasks/task_unknown_1").status == 404
    assert error_of(request(server.port, "GET", "/tasks/task_unknown_1"))["code"] == "task_not_found"
    for bad in ("limit=0", "limit=101", "limit=x", "before=abc", "before=-5"):
        r = request(server.port, "GET", f"/tasks?{bad}")
        assert r.status == 400, (bad, r)


def test_history_and_keys_survive_a_restart(sim, server_factory):
    port = free_port()
    env = env_for(sim, port)
    srv = server_factory(env, port=port)
    photo = upload(srv.port, png_bytes(20, 20)).json()["url"]
    body = {"input_url": photo, "prompt": PROMPT}
    first = gen(srv.port, body, key="after-restart")
    assert first.status == 200
    srv.stop()
    env2 = dict(srv.env)
    srv2 = server_factory(env2, port=port)
    tasks = request(srv2.port, "GET", "/tasks").json()["tasks"]
    assert [t["id"] for t in tasks] == [first.json()["data"]["taskId"]]
    again = gen(srv2.port, body, key="after-restart")
    assert again.status == 200 and again.header("Idempotent-Replayed") == "true" and again.body == first.body
    assert len(creates(sim)) == 1


def test_kill_9_during_a_burst_leaves_a_readable_store(sim, server_factory):
    port = free_port()
    srv = server_factory(env_for(sim, port), port=port)
    photo = upload(srv.port, png_bytes(20, 20)).json()["url"]
    body = {"input_url": photo, "prompt": PROMPT}
    pool = concurrent.futures.ThreadPoolExecutor(8)
    futures = [pool.submit(gen, srv.port, dict(body, prompt=f"{PROMPT} {i}"), f"burst-{i}") for i in range(200)]
    time.sleep(0.4 * SLOW)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    for f in futures:
        try:
            f.result()
        except Exception:
            pass
    pool.shutdown()
    db = os.path.join(srv.upload_dir, "tasks.db")
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n = con.execute("SELECT count(*) FROM tasks").fetchone()[0]
    con.close()
    assert n > 0, "the burst wrote nothing before the kill"
    # the server starts on it again and lists what was written
    srv2 = server_factory(dict(srv.env), port=port)
    listed = request(srv2.port, "GET", "/tasks?limit=100").json()["tasks"]
    assert len(listed) == min(n, 100)
    srv.proc.returncode = 0  # killed on purpose


def test_credits_balance_spent_and_402_before_kie(server, sim, photo):
    sim_config(sim, initial_credits=12, price_1k=5, price_2k=7)
    c = request(server.port, "GET", "/credits").json()
    assert c["balance"] == 12 and c["balance_error"] is None and c["checked_at"]
    assert c["price"] == {"1K": 5, "2K": 7} and c["price_source"] == {"1K": "price_table", "2K": "price_table"}
    assert c["images_left"] == {"1K": 2, "2K": 1}
    assert c["spent_today"] == 0 and c["generations_today"] == 0 and c["daily_limit"] == 0
    r = gen(server.port, {"input_url": photo, "prompt": PROMPT})
    assert r.status == 200
    wait_task(server.port, r.json()["data"]["taskId"])

    def spent():
        x = request(server.port, "GET", "/credits").json()
        return x if x["spent_today"] == 5 else None
    c = wait_for(spent)
    assert c["spent_total"] == 5 and c["generations_today"] == 1
    assert c["price_source"]["1K"] == "tasks"
    # the balance is now 7, known to the server (cached 30 s after the spend): 2K costs 7, fine; then 1K again
    r = gen(server.port, {"input_url": photo, "prompt": PROMPT, "resolution": "2K"})
    assert r.status == 200, r
    # KIE says 402 for the next one: the server remembers the balance is too low and refuses before calling KIE
    r = gen(server.port, {"input_url": photo, "prompt": PROMPT})
    assert r.status == 402, r
    n = len(creates(sim))
    r = gen(server.port, {"input_url": photo, "prompt": PROMPT})
    assert r.status == 402 and error_of(r)["code"] == "insufficient_credits", r
    assert "nothing was sent to KIE" in error_of(r)["message"]
    assert len(creates(sim)) == n


def test_credits_without_a_key_or_with_kie_down(sim, server_factory):
    srv = server_factory({})
    c = request(srv.port, "GET", "/credits").json()
    assert c["balance"] is None and "KIE_API_KEY" in c["balance_error"] and c["images_left"] is None
    port = free_port()
    srv2 = server_factory(env_for(sim, port), port=port)
    sim_config(sim, credit_mode="http500")
    c = request(srv2.port, "GET", "/credits").json()
    assert c["balance"] is None and "500" in c["balance_error"], c


def test_daily_generation_limit(sim, server_factory):
    port = free_port()
    srv = server_factory(env_for(sim, port, DAILY_GENERATION_LIMIT="2"), port=port)
    photo = upload(srv.port, png_bytes(20, 20)).json()["url"]
    for i in range(2):
        assert gen(srv.port, {"input_url": photo, "prompt": f"{PROMPT} {i}"}).status == 200
    r = gen(srv.port, {"input_url": photo, "prompt": PROMPT})
    assert r.status == 429, r
    e = error_of(r)
    assert e["code"] == "daily_limit_reached" and e["resets_at"].endswith("T00:00:00Z")
    assert 0 < int(r.header("Retry-After")) <= 86400
    assert len(creates(sim)) == 2
    # counted from the store: a restart does not reset it
    srv.stop()
    srv2 = server_factory(dict(srv.env), port=port)
    r = gen(srv2.port, {"input_url": photo, "prompt": PROMPT})
    assert r.status == 429, r
    c = request(srv2.port, "GET", "/credits").json()
    assert c["generations_today"] == 2 and c["daily_limit"] == 2


def test_tasks_need_the_api_token(sim, server_factory):
    port = free_port()
    srv = server_factory(env_for(sim, port, API_TOKEN="tok-123"), port=port)
    for path in ("/tasks", "/tasks/task_x", "/credits"):
        assert request(srv.port, "GET", path).status == 401, path
        assert request(srv.port, "GET", path, headers={"Authorization": "Bearer tok-123"}).status in (200, 404)


def test_callback_updates_the_record(sim, server_factory):
    port = free_port()
    srv = server_factory(env_for(sim, port), port=port)
    photo = upload(srv.port, png_bytes(20, 20)).json()["url"]
    r = gen(srv.port, {"input_url": photo, "prompt": PROMPT})
    task = r.json()["data"]["taskId"]

    # no polling: KIE's callback alone must bring the record to success (the callback is a hint: the
    # server asks recordInfo once itself and uses KIE's answer)
    def done():
        t = request(srv.port, "GET", f"/tasks/{task}").json()
        return t if t["state"] == "success" else None
    rec = wait_for(done, timeout=15)
    assert rec["result_urls"] and rec["credits"] == 5
    asked = [q for q in sim_requests(sim) if q["path"].startswith("/api/v1/jobs/recordInfo")]
    assert [q["query"].get("taskId") for q in asked] == [task], asked


def test_task_store_off(sim, server_factory, tmp_path):
    port = free_port()
    srv = server_factory(env_for(sim, port, TASK_STORE="off"), port=port)
    photo = upload(srv.port, png_bytes(20, 20)).json()["url"]
    assert gen(srv.port, {"input_url": photo, "prompt": PROMPT}).status == 200
    r = gen(srv.port, {"input_url": photo, "prompt": PROMPT}, key="k")
    assert r.status == 503 and error_of(r)["code"] == "task_store_off", r
    assert error_of(request(srv.port, "GET", "/tasks"))["code"] == "task_store_off"
    c = request(srv.port, "GET", "/credits").json()
    assert c["balance"] is not None and c["spent_today"] is None
    assert not os.path.exists(os.path.join(srv.upload_dir, "tasks.db"))
    proc, log = start_server(env_for(sim, free_port(), TASK_STORE="off", DAILY_GENERATION_LIMIT="5"), expect_fail=True)
    assert proc.returncode != 0 and "DAILY_GENERATION_LIMIT needs the task store" in log
    proc, log = start_server({"TASK_STORE": "sometimes"}, expect_fail=True)
    assert proc.returncode != 0 and "TASK_STORE must be auto or off" in log
