"""End-to-end: the real server binary over real HTTP, with the KIE simulator."""
import json
import os
import socket
import threading
import time

import pytest

from conftest import (JPEG_BYTES, KIE_KEY, SLOW, WEBP_BYTES, error_of, free_port, list_uploads, multipart, png_bytes,
                      request, sim_config, sim_requests, start_server, upload, wait_for, wait_task)


# ---- basics -----------------------------------------------------------------

def test_healthz(server):
    r = request(server.port, "GET", "/healthz")
    assert r.status == 200
    assert r.json()["status"] == "ok"
    assert r.header("Content-Type") == "application/json"
    assert r.header("X-Content-Type-Options") == "nosniff"


def test_unknown_path_404_and_wrong_method_405(server):
    r = request(server.port, "GET", "/nope")
    assert r.status == 404 and error_of(r)["code"] == "not_found"
    r = request(server.port, "GET", "/upload")
    assert r.status == 405 and error_of(r)["code"] == "method_not_allowed"
    assert r.header("Allow") == "POST"
    r = request(server.port, "DELETE", "/files/x.png")
    assert r.status == 405 and r.header("Allow") == "GET, HEAD"


def test_access_log_line_per_request(server):
    request(server.port, "GET", "/healthz?probe=1")
    request(server.port, "GET", "/missing-thing")
    log = wait_for(lambda: server.log() if "/missing-thing 404" in server.log() else None)
    line = [l for l in log.splitlines() if "/missing-thing 404" in l][0]
    assert " access " in line and " GET " in line and line.rstrip().endswith("ms")


# ---- upload and files -------------------------------------------------------

@pytest.mark.parametrize("data,mime", [(png_bytes(16, 12), "image/png"), (JPEG_BYTES, "image/jpeg"),
                                       (WEBP_BYTES, "image/webp")])
def test_upload_and_serve(server, data, mime):
    # the declared name and type lie on purpose: detection uses the bytes;
    # what is stored is the re-encoded image (opaque: JPEG), never the upload
    r = upload(server.port, data, filename="../../evil.txt", ctype="text/plain")
    assert r.status == 200, r
    body = r.json()
    name = body["filename"]
    assert name.endswith(".jpg") and len(name) == 40
    assert body["url"] == f"/files/{name}"
    assert body["public_url"] == f"http://127.0.0.1:{server.port}/files/{name}"
    assert body["content_type"] == "image/jpeg"
    assert body["original"] == {"content_type": mime, "width": 16, "height": 12, "size": len(data)}
    assert (body["width"], body["height"]) == (16, 12)
    assert list_uploads(server) == [name]
    with open(os.path.join(server.upload_dir, name), "rb") as f:
        stored = f.read()
    assert stored[:3] == b"\xff\xd8\xff" and stored != data and body["size"] == len(stored)

    g = request(server.port, "GET", body["url"])
    assert g.status == 200 and g.body == stored
    assert g.header("Content-Type") == "image/jpeg"
    assert g.header("Content-Length") == str(len(stored))
    assert "immutable" in g.header("Cache-Control")
    assert g.header("Content-Disposition") == f'inline; filename="{name}"'
    etag = g.header("ETag")
    assert etag and etag.startswith('"')
    n = request(server.port, "GET", body["url"], headers={"If-None-Match": etag})
    assert n.status == 304 and n.body == b""
    h = request(server.port, "HEAD", body["url"])
    assert h.status == 200 and h.header("Content-Length") == str(len(stored)) and h.body == b""


def test_files_byte_ranges(server):
    url = upload(server.port, png_bytes(40, 40)).json()["url"]
    full = request(server.port, "GET", url)
    data = full.body
    assert full.header("Accept-Ranges") == "bytes" and len(data) > 40
    r = request(server.port, "GET", url, headers={"Range": "bytes=0-9"})
    assert r.status == 206 and r.body == data[:10]
    assert r.header("Content-Range") == f"bytes 0-9/{len(data)}" and r.header("Content-Length") == "10"
    r = request(server.port, "GET", url, headers={"Range": "bytes=-16"})
    assert r.status == 206 and r.body == data[-16:]
    r = request(server.port, "GET", url, headers={"Range": "bytes=20-"})
    assert r.status == 206 and r.body == data[20:]
    r = request(server.port, "GET", url, headers={"Range": f"bytes={len(data)}-"})
    assert r.status == 416 and r.header("Content-Range") == f"bytes */{len(data)}"
    r = request(server.port, "GET", url, headers={"Range": "bytes=0-1,4-5"})
    assert r.status == 200 and r.body == data  # several ranges: the whole file
    r = request(server.port, "GET", url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status == 200 and r.body == data  # another version: the whole file
    r = request(server.port, "GET", url, headers={"Range": "bytes=0-9", "If-Range": full.header("ETag")})
    assert r.status == 206 and r.body == data[:10]


def test_upload_rejects_non_image_and_leaves_nothing(server):
    r = upload(server.port, b"hello, I am text pretending to be a png", filename="x.png")
    assert r.status == 415 and error_of(r)["code"] == "unsupported_media_type"
    r = upload(server.port, b"GIF89a" + b"\x00" * 40, filename="x.gif", ctype="image/gif")
    assert r.status == 415
    r = upload(server.port, b"\x89PN", filename="tiny.png")  # too short to be anything
    assert r.status == 415
    assert list_uploads(server) == []


def test_upload_too_large_by_content_length(server_factory):
    srv = server_factory({"MAX_UPLOAD_BYTES": "1000"})
    r = upload(srv.port, png_bytes() + b"\x00" * 50000)
    assert r.status == 413 and error_of(r)["code"] == "file_too_large"
    assert list_uploads(srv) == []


def test_upload_too_large_streamed_chunked(server_factory):
    """No Content-Length: the limit is enforced while streaming, and the server stops reading at once instead of
    draining the rest (libmicrohttpd 0.9.75 cannot answer in the middle of a body, so it closes)."""
    srv = server_factory({"MAX_UPLOAD_BYTES": "20000"})
    body, ct = multipart([("file", "big.png", "image/png", png_bytes() + b"\x00" * 25_000_000)])
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    sent = 0
    cut = False
    try:
        for i in range(0, len(body), 65536):
            part = body[i:i + 65536]
            s.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            sent += len(part)
        s.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        cut = True
    s.close()
    assert cut and sent < 12_000_000, f"the server read {sent} bytes of a body over a 20000-byte limit"
    wait_for(lambda: "over MAX_UPLOAD_BYTES (20000) while streaming: closing" in srv.log() and " 413 " in srv.log())
    wait_for(lambda: list_uploads(srv) == [])


def test_upload_trickle_is_cut_at_upload_timeout(server_factory):
    """A body that keeps trickling in (one byte a second, never idle for CONNECTION_TIMEOUT) is cut off after
    UPLOAD_TIMEOUT for the whole request, and its spool file is removed."""
    srv = server_factory({"UPLOAD_TIMEOUT": "2", "CONNECTION_TIMEOUT": "30"})
    body, ct = multipart([("file", "a.png", "image/png", png_bytes() + b"\x00" * 1000)])
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    t0 = time.time()
    cut = False
    try:
        for i in range(len(body)):
            s.sendall(body[i:i + 1])
            time.sleep(0.25)
            if time.time() - t0 > 10 * SLOW:
                break
    except (BrokenPipeError, ConnectionResetError):
        cut = True
    if not cut:  # the close may only show on a read
        s.settimeout(2)
        try:
            cut = s.recv(100) == b""
        except (ConnectionResetError, socket.timeout):
            cut = True
    s.close()
    took = time.time() - t0
    assert cut and took < 6 * SLOW, f"the trickle ran {took:.1f} s"
    wait_for(lambda: "still arriving after UPLOAD_TIMEOUT (2 s)" in srv.log() and " 408 " in srv.log())
    wait_for(lambda: list_uploads(srv) == [])


def test_upload_bad_requests(server):
    # not multipart
    r = request(server.port, "POST", "/upload", b'{"file":1}', {"Content-Type": "application/json"})
    assert r.status == 400 and error_of(r)["code"] == "not_multipart"
    # multipart without the field
    body, ct = multipart([("other", None, None, b"value")])
    r = request(server.port, "POST", "/upload", body, {"Content-Type": ct})
    assert r.status == 400 and error_of(r)["code"] == "missing_file"
    # empty file
    r = upload(server.port, b"")
    assert r.status == 400
    # truncated multipart: the closing boundary never comes
    body, ct = multipart([("file", "a.png", "image/png", png_bytes())])
    cut = body[: body.rindex(b"\r\n--")] 
    r = request(server.port, "POST", "/upload", cut, {"Content-Type": ct})
    assert r.status == 400, r
    # two files in one request
    body, ct = multipart([("file", "a.png", "image/png", png_bytes()), ("file", "b.png", "image/png", png_bytes())])
    r = request(server.port, "POST", "/upload", body, {"Content-Type": ct})
    assert r.status == 400 and error_of(r)["code"] == "too_many_files"
    assert list_uploads(server) == []


def test_upload_aborted_midway_leaves_nothing(server):
    body, ct = multipart([("file", "a.png", "image/png", png_bytes() + b"\x00" * 200000)])
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    s.sendall(body[:100000])
    time.sleep(0.2)
    s.close()
    wait_for(lambda: list_uploads(server) == [] and " 499 " in server.log())


def test_upload_abandoned_with_a_big_content_length_is_cleaned_within_a_second(server):
    """Content-Length 10 MB, 300 KB sent, then the client goes: the spool file is gone within a second (not at
    CONNECTION_TIMEOUT), and the connection is not left in CLOSE-WAIT. Ten times: libmicrohttpd's epoll mode
    missed the FIN in most tries."""
    body, ct = multipart([("file", "a.png", "image/png", png_bytes() + b"\x00" * 300000)])
    for i in range(10):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: 10000000\r\n\r\n".encode())
        s.sendall(body[:300000])
        wait_for(lambda: any(f.startswith(".upload-") for f in os.listdir(server.upload_dir)), timeout=5)
        s.close()
        t0 = time.time()
        wait_for(lambda: list_uploads(server) == [] and server.log().count(" 499 ") == i + 1, timeout=1, interval=0.02)
        assert time.time() - t0 < 1.0 * SLOW, i


def test_concurrent_uploads(server_factory):
    # 50 at once: 2 image workers, the rest wait in a queue long enough for all
    server = server_factory({"IMAGE_QUEUE": "64"})
    results = []
    data = png_bytes(32, 32)

    def one(i):
        results.append(upload(server.port, data + bytes([i]) * 10))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 50 and all(r.status == 200 for r in results), [r for r in results if r.status != 200]
    names = {r.json()["filename"] for r in results}
    assert len(names) == 50
    assert sorted(list_uploads(server)) == sorted(names)


@pytest.mark.parametrize("path", [
    "/files/../../etc/passwd", "/files/..%2F..%2Fetc%2Fpasswd", "/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/files/..", "/files/.upload-abcdef", "/files/x.png", "/files/%00.png",
    "/files/AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE.png", "/files/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee.png%00.txt",
    "/files/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee.gif", "/files//etc/passwd", "/files/%252e%252e%252fpasswd",
])
def test_files_traversal_is_404(server, path):
    # a real file next to the upload dir that traversal would find
    with open(os.path.join(os.path.dirname(server.upload_dir), "secret.png"), "wb") as f:
        f.write(png_bytes())
    r = request(server.port, "GET", path)
    assert r.status == 404, (path, r)
    assert r.header("Content-Type") == "application/json"


def test_files_missing_is_404(server):
    r = request(server.port, "GET", "/files/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee.png")
    assert r.status == 404 and error_of(r)["code"] == "not_found"


# ---- generate and status ------------------------------------------------------

def good_generate(url, **kw):
    body = {"input_url": url, "prompt": "A studio shot of the product on white", "aspect_ratio": "4:3",
            "resolution": "1K"}
    body.update(kw)
    return body


@pytest.mark.parametrize("body,field", [
    ({}, "input_url"),
    ({"prompt": "a nice studio photo"}, "input_url"),
    (good_generate(123), "input_url"),
    (good_generate("ftp://127.0.0.1/x.png"), "input_url"),
    (good_generate("not a url"), "input_url"),
    (good_generate("http://127.0.0.1/x.png", prompt="ab"), "prompt"),
    (good_generate("http://127.0.0.1/x.png", prompt="x" * 5001), "prompt"),
    (good_generate("http://127.0.0.1/x.png", prompt=5), "prompt"),
    (good_generate("http://127.0.0.1/x.png", aspect_ratio="5:4"), "aspect_ratio"),
    (good_generate("http://127.0.0.1/x.png", resolution="4K"), "resolution"),
    ({"input_urls": [], "prompt": "a nice studio photo"}, "input_urls"),
    ({"input_urls": ["http://127.0.0.1/%d.png" % i for i in range(9)], "prompt": "a nice studio photo"}, "input_urls"),
    ({"input_urls": "http://127.0.0.1/x.png", "prompt": "a nice studio photo"}, "input_urls"),
])
def test_generate_validation(server, sim, body, field):
    r = request(server.port, "POST", "/generate", body)
    assert r.status == 400, r
    err = error_of(r)
    assert field in err["code"] or field in err["message"], err
    assert sim_requests(sim) == [] or all(q["path"] != "/api/v1/jobs/createTask" for q in sim_requests(sim))


def test_generate_prompt_counts_characters_not_bytes(server, sim):
    r = request(server.port, "POST", "/generate", good_generate(f"http://127.0.0.1:{sim.port}/x.png", prompt="é" * 5000))
    assert r.status == 200, r  # 10000 bytes, 5000 characters


def test_generate_invalid_json_and_too_large(server):
    r = request(server.port, "POST", "/generate", b"{not json", {"Content-Type": "application/json"})
    assert r.status == 400 and error_of(r)["code"] == "invalid_json"
    r = request(server.port, "POST", "/generate", b"[" * 70000, {"Content-Type": "application/json"})
    assert r.status == 413


def full_flow(server, sim, **extra):
    up = upload(server.port, png_bytes(16, 12))
    assert up.status == 200, up
    g = request(server.port, "POST", "/generate", good_generate(up.json()["url"], **extra))
    assert g.status == 200, g
    body = g.json()
    assert body["code"] == 200
    task = body["data"]["taskId"]

    return up.json(), task, wait_task(server.port, task)


def test_full_flow_upload_generate_status(server, sim):
    up, task, data = full_flow(server, sim)
    assert data["state"] == "success", data
    assert data["taskId"] == task
    urls = data["resultUrls"]
    assert isinstance(urls, list) and len(urls) == 1
    # the result is a real PNG served by the simulator
    port = int(urls[0].split(":")[2].split("/")[0])
    path = "/" + urls[0].split("/", 3)[3]
    img = request(port, "GET", path)
    assert img.status == 200 and img.body.startswith(b"\x89PNG")
    # what the server sent KIE: the documented createTask shape
    creates = [q for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/createTask"]
    assert len(creates) == 1
    sent = creates[0]["body"]
    assert sent["model"] == "flux-2/pro-image-to-image"
    assert sent["input"]["input_urls"] == [f"http://127.0.0.1:{server.port}/files/{up['filename']}"]
    assert sent["input"]["aspect_ratio"] == "4:3" and sent["input"]["resolution"] == "1K"
    assert creates[0]["auth_ok"] is True
    # the simulator really fetched the input from our server
    assert f"GET /files/{up['filename']} 200" in server.log()


def test_status_accepts_taskId_alias_and_requires_id(server, sim):
    _, task, _ = full_flow(server, sim)
    r = request(server.port, "GET", f"/status?taskId={task}")
    assert r.status == 200 and r.json()["data"]["taskId"] == task
    r = request(server.port, "GET", "/status")
    assert r.status == 400 and error_of(r)["code"] == "missing_task_id"
    r = request(server.port, "GET", "/status?task_id=../../x")
    assert r.status == 400


def test_failed_task_reports_kie_message(server, sim):
    sim_config(sim, outcome="fail", fail_code="500", fail_msg="Internal server error")
    _, _, data = full_flow(server, sim)
    assert data["state"] == "fail" and data["failMsg"] == "Internal server error"


def test_task_fails_when_kie_cannot_fetch_input(server, sim):
    g = request(server.port, "POST", "/generate",
                good_generate(f"http://127.0.0.1:{sim.port}/missing/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee.png"))
    assert g.status == 200
    task = g.json()["data"]["taskId"]
    d = wait_task(server.port, task)
    assert d["state"] == "fail" and "404" in d["failMsg"]


def test_input_urls_several(server, sim):
    a = upload(server.port, png_bytes()).json()
    b = upload(server.port, JPEG_BYTES).json()
    r = request(server.port, "POST", "/generate", {"input_urls": [a["url"], b["public_url"]],
                                                    "prompt": "two views of one product"})
    assert r.status == 200, r
    sent = [q for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/createTask"][0]["body"]
    assert len(sent["input"]["input_urls"]) == 2
    assert sent["input"]["aspect_ratio"] == "auto" and sent["input"]["resolution"] == "1K"


@pytest.mark.parametrize("mode,status,code", [
    ("http500", 502, "upstream_error"), ("nonjson", 502, "upstream_bad_response"), ("reset", 502, None),
    ("code401", 401, "kie_error"), ("code402", 402, "kie_error"), ("code422", 422, "kie_error"),
    ("code429", 429, None), ("code455", 503, "kie_error"), ("code500", 500, "kie_error"),
])
def test_kie_failures_are_never_hidden(server, sim, mode, status, code):
    sim_config(sim, create_mode=mode)
    r = request(server.port, "POST", "/generate", good_generate(f"http://127.0.0.1:{sim.port}/x.png"))
    assert r.status == status, r
    err = error_of(r)
    if code:
        assert err["code"] == code
    if mode.startswith("code"):
        assert err["kie"]["code"] == int(mode[4:]) and err["kie"]["msg"]
    sim_config(sim, create_mode="normal", record_mode=mode)
    r = request(server.port, "GET", "/status?task_id=task_x_1")
    if mode == "code422":  # recordInfo's 422 is KIE's "recordInfo is null": no such task
        assert r.status == 404 and error_of(r)["code"] == "task_not_found", r
    else:
        assert r.status == status, r


def test_kie_timeout_is_504(sim, server_factory):
    srv = server_factory({"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
                          "ALLOW_PRIVATE_INPUT_URLS": "1", "KIE_TIMEOUT_SECONDS": "1"})
    sim_config(sim, create_mode="hang")
    t0 = time.time()
    r = request(srv.port, "POST", "/generate", good_generate(f"http://127.0.0.1:{sim.port}/x.png"))
    assert r.status == 504 and error_of(r)["code"] == "upstream_timeout"
    assert time.time() - t0 < 10 * SLOW
    sim_config(sim, create_mode="normal")


def test_kie_unreachable_is_502(server_factory):
    srv = server_factory({"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{free_port()}",
                          "ALLOW_PRIVATE_INPUT_URLS": "1"})
    r = request(srv.port, "POST", "/generate", good_generate("http://127.0.0.1:9/x.png"))
    assert r.status == 502 and error_of(r)["code"] == "upstream_unreachable"
    r = request(srv.port, "GET", "/status?task_id=abc")
    assert r.status == 502


def test_no_kie_key_503_but_uploads_work(server_factory):
    srv = server_factory({"KIE_API_KEY": None})
    r = request(srv.port, "POST", "/generate", good_generate("https://example.com/x.png"))
    assert r.status == 503 and "KIE_API_KEY" in error_of(r)["message"]
    r = request(srv.port, "GET", "/status?task_id=abc")
    assert r.status == 503 and "KIE_API_KEY" in error_of(r)["message"]
    assert upload(srv.port, png_bytes()).status == 200
    assert "KIE_API_KEY is not set" in srv.log()


# ---- public URL guidance ------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://localhost:8000/files/x.png", "http://127.0.0.1/x.png", "http://10.1.2.3/x.png",
    "http://192.168.1.20/x.png", "http://172.20.0.5/x.png", "http://[::1]/x.png", "http://169.254.169.254/latest",
    "http://api:8000/files/x.png", "http://0.0.0.0/x.png", "http://2130706433/x.png", "http://foo.localhost/x.png",
])
def test_private_input_urls_are_explained(sim, server_factory, url):
    srv = server_factory({"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}"})
    r = request(srv.port, "POST", "/generate", good_generate(url))
    assert r.status == 400, r
    err = error_of(r)
    assert err["code"] == "input_url_not_public"
    assert "PUBLIC_BASE_URL" in err["message"] and "tunnel" in err["message"]


def test_relative_input_url_needs_public_base_url_with_kie_upload_off(sim, server_factory):
    srv = server_factory({"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
                          "KIE_UPLOAD": "never"})
    name = upload(srv.port, png_bytes()).json()["filename"]
    r = request(srv.port, "POST", "/generate", good_generate(f"/files/{name}"))
    assert r.status == 400 and error_of(r)["code"] == "input_url_not_public"
    assert "PUBLIC_BASE_URL" in error_of(r)["message"] and "KIE_UPLOAD" in error_of(r)["message"]


def test_relative_input_url_resolved_against_public_base(sim, server_factory):
    srv = server_factory({"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}",
                          "PUBLIC_BASE_URL": "https://shop-demo.trycloudflare.com/"})
    up = upload(srv.port, png_bytes()).json()
    assert up["public_url"] == f"https://shop-demo.trycloudflare.com/files/{up['filename']}"
    r = request(srv.port, "POST", "/generate", good_generate(up["url"]))
    assert r.status == 200, r
    sent = [q for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/createTask"][0]["body"]
    assert sent["input"]["input_urls"] == [up["public_url"]]
    c = request(srv.port, "GET", "/config").json()
    assert c["public_url_ok"] is True and c["public_base_url"] == "https://shop-demo.trycloudflare.com"


def test_config_warns_only_when_kie_cannot_get_files(server_factory):
    # KIE_UPLOAD=auto (the default) gets files to KIE without a public URL: no warning
    c = request(server_factory({}).port, "GET", "/config").json()
    assert c["public_url_ok"] is True and c["kie_input"] == "kie_upload" and c["warnings"] == [
        "KIE_API_KEY is not set: uploads work, but generating images does not."], c
    srv = server_factory({"KIE_UPLOAD": "never"})
    c = request(srv.port, "GET", "/config").json()
    assert c["public_url_ok"] is False and c["storage"] == "local" and c["kie_input"] == "none"
    assert any("KIE cannot download files" in w and "localhost" in w for w in c["warnings"])
    assert c["aspect_ratios"] == ["1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "auto"]
    assert c["resolutions"] == ["1K", "2K"]


# ---- CORS -----------------------------------------------------------------------

def test_cors_default_star_and_preflight(server):
    r = request(server.port, "GET", "/healthz", headers={"Origin": "http://localhost:5173"})
    assert r.header("Access-Control-Allow-Origin") == "*"
    p = request(server.port, "OPTIONS", "/generate", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert p.status == 204
    assert "POST" in p.header("Access-Control-Allow-Methods")
    assert "Content-Type" in p.header("Access-Control-Allow-Headers")
    assert request(server.port, "OPTIONS", "/nowhere").status == 404


def test_cors_origin_list(server_factory):
    srv = server_factory({"CORS_ORIGINS": "https://shop.example, http://localhost:5173"})
    r = request(srv.port, "GET", "/healthz", headers={"Origin": "http://localhost:5173"})
    assert r.header("Access-Control-Allow-Origin") == "http://localhost:5173"
    assert r.header("Vary") == "Origin"
    r = request(srv.port, "GET", "/healthz", headers={"Origin": "https://evil.example"})
    assert r.header("Access-Control-Allow-Origin") is None
    p = request(srv.port, "OPTIONS", "/upload", headers={"Origin": "https://evil.example"})
    assert p.status == 204 and p.header("Access-Control-Allow-Origin") is None


# ---- configuration ----------------------------------------------------------------

@pytest.mark.parametrize("env,needle", [
    ({"PORT": "abc"}, "PORT"), ({"MAX_UPLOAD_BYTES": "-5"}, "MAX_UPLOAD_BYTES"),
    ({"KIE_BASE_URL": "api.kie.ai"}, "KIE_BASE_URL"), ({"USE_S3": "maybe"}, "USE_S3"),
    ({"USE_S3": "1"}, "S3_BUCKET"), ({"S3_PRESIGN_TTL": "604801"}, "S3_PRESIGN_TTL"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
])
def test_invalid_config_stops_startup(env, needle):
    proc, log = start_server(env, expect_fail=True)
    assert proc.returncode != 0
    assert needle in log


def test_dotenv_file_and_env_precedence(tmp_path, sim):
    (tmp_path / ".env").write_text(
        "# comment\nexport KIE_BASE_URL=http://127.0.0.1:%d\nKIE_API_KEY='%s'\nCORS_ORIGINS=https://from-dotenv.example\n"
        % (sim.port, KIE_KEY))
    srv = start_server({"CORS_ORIGINS": "https://from-env.example"}, cwd=str(tmp_path))
    try:
        r = request(srv.port, "GET", "/healthz", headers={"Origin": "https://from-env.example"})
        assert r.header("Access-Control-Allow-Origin") == "https://from-env.example"
        assert r.json()["kie_configured"] is True
    finally:
        srv.stop()
    assert KIE_KEY not in srv.log()


def test_json_logs(server_factory):
    srv = server_factory({"LOG_FORMAT": "json"})
    request(srv.port, "GET", "/healthz")
    wait_for(lambda: '"type":"access"' in srv.log())
    for line in srv.log().splitlines():
        if line.startswith("{"):
            json.loads(line)
    assert any(json.loads(l).get("path") == "/healthz" for l in srv.log().splitlines() if l.startswith("{"))


# ---- shutdown ------------------------------------------------------------------------

def test_sigterm_lets_inflight_requests_finish(sim, server_factory):
    srv = start_server({"KIE_API_KEY": KIE_KEY, "KIE_BASE_URL": f"http://127.0.0.1:{sim.port}"})
    sim_config(sim, latency_ms=1000)
    result = {}

    def call():
        result["r"] = request(srv.port, "GET", "/status?task_id=task_missing")

    t = threading.Thread(target=call)
    t.start()
    wait_for(lambda: request(srv.port, "GET", "/healthz").json()["waiting_on_upstream"] == 1)
    srv.proc.send_signal(15)
    t.join(15 * SLOW)
    srv.proc.wait(15 * SLOW)
    sim_config(sim, latency_ms=0)
    assert srv.proc.returncode == 0
    assert result["r"].status == 404  # KIE's "recordInfo is null" (no such task), delivered after SIGTERM
    assert "stopped" in srv.log()


# ---- documentation stays true --------------------------------------------------------

def config_var_names():
    import re
    import subprocess
    from conftest import PPA_BIN
    out = subprocess.run([PPA_BIN, "--help"], capture_output=True, text=True, check=True).stdout
    out = out.split("Routes:")[0]
    return set(re.findall(r"^  ([A-Z][A-Z0-9_]+) ", out, re.M))


def test_every_variable_is_documented():
    from conftest import ROOT
    names = config_var_names()
    assert len(names) > 30
    example = open(os.path.join(ROOT, ".env.example")).read()
    readme = open(os.path.join(ROOT, "README.md")).read()
    for n in names:
        assert f"\n{n}=" in example, f"{n} missing from .env.example"
        assert f"`{n}`" in readme, f"{n} missing from README.md"


def test_env_example_is_a_valid_configuration(tmp_path):
    from conftest import ROOT
    (tmp_path / ".env").write_text(open(os.path.join(ROOT, ".env.example")).read())
    srv = start_server({}, cwd=str(tmp_path))
    try:
        c = request(srv.port, "GET", "/config").json()
        assert c["storage"] == "local" and c["public_base_url"] is None
        assert c["max_upload_bytes"] == 33554432
    finally:
        srv.stop()


@pytest.mark.parametrize("body,code,words", [
    (b'{"input_url":"http://127.0.0.1:9/x.png","prompt":"studio shot","aspectRatio":"1:1"}', "unknown_field",
     ['"aspectRatio"', 'did you mean "aspect_ratio"']),
    (b'{"input_url":"http://127.0.0.1:9/x.png","prompt":"studio shot"} trailing', "invalid_json", ["more after"]),
    (b'{"input_url":"http://127.0.0.1:9/x.png","prompt":"studio\\u0000shot"}', "invalid_json", ["NUL"]),
])
def test_generate_body_is_strict(server, sim, body, code, words):
    r = request(server.port, "POST", "/generate", body, headers={"Content-Type": "application/json"})
    assert r.status == 400, r
    err = error_of(r)
    assert err["code"] == code and all(w in err["message"] for w in words), err
    assert not [q for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/createTask"]

