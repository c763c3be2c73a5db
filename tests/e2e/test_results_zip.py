"""GET /results.zip?tasks=...: one stored ZIP of our kept copies, named after the photos (POST /generate
photo_name), with results not kept yet kept first and MISSING.txt for what has no image. Read back with
Python's zipfile (CRC-32 checked by testzip), against the KIE simulator."""
import io
import json
import os
import re
import zipfile

from conftest import (KIE_KEY, error_of, free_port, png_bytes, request, sim_config, sim_requests, upload, wait_task)

PROMPT = "Studio product shot on a seamless white background"


def env_for(sim, port, **extra):
    env = {"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "ALLOW_PRIVATE_INPUT_URLS": "1", "KIE_TIMEOUT_SECONDS": "5"}
    env.update(extra)
    return env


def generate(port, url, name=None, headers=None, **extra):
    body = {"input_url": url, "prompt": PROMPT}
    if name is not None:
        body["photo_name"] = name
    body.update(extra)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    r = request(port, "POST", "/generate", json.dumps(body).encode(), h)
    assert r.status == 200, r
    return r.json()["data"]["taskId"]


def results_zip(port, ids, headers=None):
    return request(port, "GET", "/results.zip?tasks=" + ",".join(ids), headers=headers, timeout=60)


def kept_files(srv):
    d = os.path.join(srv.upload_dir, "results")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_zip_of_finished_tasks_named_after_the_photos(server, sim):
    names = ["mug.heic", "K\u00fcche 2.jpg", "mug.png", "../../etc/passwd.jpg"]
    ids = []
    for i, name in enumerate(names):
        url = upload(server.port, png_bytes(24 + i, 16)).json()["url"]
        ids.append(generate(server.port, url, None if name.startswith("../") else name))
    for t in ids:
        assert wait_task(server.port, t)["state"] == "success"
    assert kept_files(server) == [], "nothing kept before the ZIP asks"
    r = results_zip(server.port, ids + [ids[0]])  # a repeated id is one entry
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/zip"
    assert r.header("Content-Disposition") == 'attachment; filename="studio-results.zip"'
    assert int(r.header("Content-Length")) == len(r.body)
    z = zipfile.ZipFile(io.BytesIO(r.body))
    assert z.testzip() is None, "every CRC-32 matches"
    infos = z.infolist()
    ext = os.path.splitext(kept_files(server)[0])[1]
    assert [i.filename for i in infos] == ["mug" + ext, "K\u00fcche 2" + ext, "mug (2)" + ext, ids[3] + ext]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
    assert "MISSING.txt" not in z.namelist()
    assert len(kept_files(server)) == 4, "the results were kept first"
    for info, t in zip(infos, ids):
        one = request(server.port, "GET", f"/results/{t}")
        assert one.status == 200, one
        assert z.read(info) == one.body, f"{info.filename} is task {t}'s kept result"
    # the second archive comes from the kept copies: no recordInfo, no result download
    before = len(sim_requests(sim))
    again = results_zip(server.port, ids)
    assert again.status == 200 and again.body[:4] == b"PK\x03\x04"
    assert zipfile.ZipFile(io.BytesIO(again.body)).namelist() == z.namelist()[:4]
    assert len(sim_requests(sim)) == before


def test_missing_failed_and_unfinished_tasks_are_listed_not_fatal(server, sim):
    url = upload(server.port, png_bytes(20, 20)).json()["url"]
    good = generate(server.port, url, "shoe.jpg")
    assert wait_task(server.port, good)["state"] == "success"
    sim_config(sim, outcome="fail", fail_msg="content policy")
    failed = generate(server.port, url, "bag.jpg")
    assert wait_task(server.port, failed)["state"] == "fail"
    sim_config(sim, outcome="success", step_ms=60000)
    running = generate(server.port, url, "hat.jpg")
    unknown = "not-a-task-of-ours"
    r = results_zip(server.port, [good, failed, running, unknown])
    assert r.status == 200, r
    z = zipfile.ZipFile(io.BytesIO(r.body))
    assert z.testzip() is None
    assert [n for n in z.namelist() if n != "MISSING.txt"][0].startswith("shoe.")
    assert z.namelist()[-1] == "MISSING.txt"
    missing = z.read("MISSING.txt").decode()
    assert "3 of the 4 tasks" in missing, missing
    lines = {re.split(r"[ :]", ln)[0]: ln for ln in missing.splitlines() if ln and not ln.startswith("3 of")}
    assert "failed" in lines[failed] and "content policy" in lines[failed] and "(bag.jpg)" in lines[failed], missing
    assert "not finished" in lines[running] and "(hat.jpg)" in lines[running], missing
    assert "no such task" in lines[unknown], missing
    assert good not in missing


def test_bad_task_lists_are_refused(server):
    for query, why in [("", "empty"), ("tasks=", "empty"), ("tasks=a,,b", "empty entry"), ("tasks=a,", "trailing"),
                       ("tasks=" + "%2F..%2Fx", "not an id"), ("tasks=" + ",".join(f"t{i}" for i in range(501)),
                                                               "too many")]:
        r = request(server.port, "GET", "/results.zip?" + query)
        assert r.status == 400 and error_of(r)["code"] == "invalid_tasks", (why, r)
    ok = request(server.port, "GET", "/results.zip?tasks=" + ",".join(f"t{i}" for i in range(500)))
    assert ok.status == 200, "500 ids are allowed (all missing here)"
    assert len(zipfile.ZipFile(io.BytesIO(ok.body)).read("MISSING.txt").decode().splitlines()) == 502


def test_zip_needs_the_api_token_like_status(sim, server_factory):
    port = free_port()
    srv = server_factory(env_for(sim, port, API_TOKEN="s3cret-token"), port=port)
    auth = {"Authorization": "Bearer s3cret-token"}
    url = upload(srv.port, png_bytes(), headers=auth).json()["url"]
    t = generate(srv.port, url, "a.png", headers=auth)
    r = results_zip(srv.port, [t])
    assert r.status == 401, r
    r = results_zip(srv.port, [t], headers=auth)
    assert r.status == 200 and zipfile.ZipFile(io.BytesIO(r.body)).testzip() is None


def test_photo_name_is_validated_and_recorded(server):
    url = upload(server.port, png_bytes()).json()["url"]
    for bad in ["", "a/b.jpg", "a\\b.jpg", "tab\there", "x" * 256, 7]:
        r = request(server.port, "POST", "/generate",
                    json.dumps({"input_url": url, "prompt": PROMPT, "photo_name": bad}).encode(),
                    {"Content-Type": "application/json"})
        assert r.status == 400 and error_of(r)["code"] == "invalid_photo_name", (bad, r)
    t = generate(server.port, url, "Bild \u00e4.HEIC")
    rec = request(server.port, "GET", f"/tasks/{t}").json()
    assert rec["photo_name"] == "Bild \u00e4.HEIC"
