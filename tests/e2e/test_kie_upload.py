"""No tunnel needed: with only a KIE key, /generate pushes our own stored files to KIE's file-upload API and
sends KIE the downloadUrl it answers. Against the simulator, which implements that API (file-stream-upload, its
validation, both answer shapes, failure modes) and serves the pushed files at their downloadUrl, with private
input URLs refused (ALLOW_PRIVATE_INPUT_URLS=0) and no PUBLIC_BASE_URL."""
import pytest

from conftest import (KIE_KEY, error_of, png_bytes, request, sim_config, sim_requests, start_sim, upload,
                      wait_task)

PROMPT = "Studio product shot on a seamless white background"


@pytest.fixture
def sim():
    s = start_sim(step_ms=50)
    yield s
    s.stop()


def no_tunnel(server_factory, sim, **extra):
    env = {"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
           "KIE_UPLOAD_BASE_URL": f"http://127.0.0.1:{sim.port}", "ALLOW_PRIVATE_INPUT_URLS": "0",
           "KIE_TIMEOUT_SECONDS": "5"}
    env.update(extra)
    return server_factory(env)


def calls(sim, path):
    return [q for q in sim_requests(sim) if q["path"] == path]


def test_whole_flow_without_a_public_url(server_factory, sim):
    srv = no_tunnel(server_factory, sim)
    c = request(srv.port, "GET", "/config").json()
    assert c["kie_input"] == "kie_upload" and c["public_url_ok"] is True and not c["warnings"], c
    up = upload(srv.port, png_bytes(40, 30)).json()
    assert "public_url" not in up  # this server has none
    g = request(srv.port, "POST", "/generate", {"input_url": up["url"], "prompt": PROMPT})
    assert g.status == 200, g
    d = wait_task(srv.port, g.json()["data"]["taskId"])
    assert d["state"] == "success", d  # the simulator fetched the pushed copy
    pushes = calls(sim, "/api/file-stream-upload")
    assert len(pushes) == 1
    (sent,) = [q["body"]["input"]["input_urls"] for q in calls(sim, "/api/v1/jobs/createTask")]
    assert sent[0].startswith(f"http://127.0.0.1:{sim.port}/kie-files/product-photo-api/") and \
        sent[0].endswith(up["filename"]), sent
    # the same file again, relative or absolute: the pushed copy is reused, no second push
    for given in (up["url"], f"http://127.0.0.1:{srv.port}{up['url']}"):
        g = request(srv.port, "POST", "/generate", {"input_url": given, "prompt": PROMPT})
        assert g.status == 200, g
    assert len(calls(sim, "/api/file-stream-upload")) == 1
    assert all(q["body"]["input"]["input_urls"] == sent for q in calls(sim, "/api/v1/jobs/createTask"))
    assert "pushed to KIE's file upload" in srv.log()


def test_never_without_public_url_names_every_way_out(server_factory, sim):
    srv = no_tunnel(server_factory, sim, KIE_UPLOAD="never")
    up = upload(srv.port, png_bytes()).json()
    r = request(srv.port, "POST", "/generate", {"input_url": up["url"], "prompt": PROMPT})
    assert r.status == 400, r
    err = error_of(r)
    assert err["code"] == "input_url_not_public"
    for way in ("KIE_UPLOAD", "PUBLIC_BASE_URL", "USE_S3"):
        assert way in err["message"], err
    assert not calls(sim, "/api/file-stream-upload") and not calls(sim, "/api/v1/jobs/createTask")
    # someone else's private URL stays refused in every mode
    r = request(srv.port, "POST", "/generate", {"input_url": "http://192.168.1.20/p.jpg", "prompt": PROMPT})
    assert r.status == 400 and error_of(r)["code"] == "input_url_not_public"


def test_always_pushes_even_with_a_public_url(server_factory, sim):
    srv = no_tunnel(server_factory, sim, KIE_UPLOAD="always", PUBLIC_BASE_URL="https://shop.example")
    up = upload(srv.port, png_bytes()).json()
    g = request(srv.port, "POST", "/generate", {"input_url": up["url"], "prompt": PROMPT})
    assert g.status == 200, g
    assert len(calls(sim, "/api/file-stream-upload")) == 1
    assert request(srv.port, "GET", "/config").json()["kie_input"] == "kie_upload"


def test_unknown_own_file_is_refused_before_any_push(server_factory, sim):
    srv = no_tunnel(server_factory, sim)
    r = request(srv.port, "POST", "/generate",
                {"input_url": "/files/0f8fad5b-d9cb-469f-a165-70867728950e.jpg", "prompt": PROMPT})
    assert r.status == 400 and error_of(r)["code"] == "invalid_input_url", r
    assert not calls(sim, "/api/file-stream-upload")


@pytest.mark.parametrize("mode,status,code", [
    ("http401", 502, "kie_upload_unauthorized"), ("http500", 502, "kie_upload_failed"),
    ("code500", 502, "kie_upload_failed"), ("code400", 502, "kie_upload_failed"),
    ("nourl", 502, "kie_upload_bad_answer"), ("nonjson", 502, "kie_upload_failed"),
    ("reset", 502, "kie_upload_unreachable"), ("hang", 504, "kie_upload_timeout"),
])
def test_upload_errors_are_clear_and_no_task_is_created(server_factory, sim, mode, status, code):
    srv = no_tunnel(server_factory, sim, KIE_TIMEOUT_SECONDS="1")
    up = upload(srv.port, png_bytes()).json()
    sim_config(sim, upload_mode=mode)
    r = request(srv.port, "POST", "/generate", {"input_url": up["url"], "prompt": PROMPT})
    assert r.status == status, r
    err = error_of(r)
    assert err["code"] == code and "KIE's file upload" in err["message"], err
    assert not calls(sim, "/api/v1/jobs/createTask")
    # nothing was remembered: once KIE's upload works again, the same request goes through
    sim_config(sim, upload_mode="normal")
    r = request(srv.port, "POST", "/generate", {"input_url": up["url"], "prompt": PROMPT})
    assert r.status == 200, r


def test_both_documented_answer_shapes(server_factory, sim):
    srv = no_tunnel(server_factory, sim)
    sim_config(sim, upload_shape="quickstart")
    up = upload(srv.port, png_bytes()).json()
    g = request(srv.port, "POST", "/generate", {"input_url": up["url"], "prompt": PROMPT})
    assert g.status == 200, g
    assert wait_task(srv.port, g.json()["data"]["taskId"])["state"] == "success"
