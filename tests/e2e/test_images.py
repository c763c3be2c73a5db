"""The image pipeline end to end: real phone and camera photos and hostile files, made in the test run by
tests/fixtures/make_images.py (Debian tools: Pillow, exiftool, heif-enc, vips), uploaded to the real
server over HTTP. What a person would check: the stored image is upright, the right size, free of GPS and
other metadata, within KIE's 10 MB, and what KIE (the simulator) gets is a type it accepts; refusals are clear,
leave nothing on disk and keep the server alive."""
import http.server
import importlib.util
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import (JPEG_BYTES, KIE_KEY, ROOT, SLOW, error_of, free_port, list_uploads, request, sim_config, sim_requests,
                      upload, wait_task)

FIXTURES = os.path.join(ROOT, "tests/fixtures/make_images.py")
KIE_MAX = 10 * 1000 * 1000


def _load_fixture_module():
    spec = importlib.util.spec_from_file_location("make_images", FIXTURES)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    out = os.environ.get("PPA_FIXTURES") or str(tmp_path_factory.getbasetemp().parent / "ppa-images")
    res = subprocess.run(["/usr/bin/python3", FIXTURES, out], check=True, capture_output=True, timeout=300)
    return json.loads(res.stdout)


@pytest.fixture(scope="session")
def fixtures_mod():
    return _load_fixture_module()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def spool_files(srv):
    return [f for f in os.listdir(srv.upload_dir) if f.startswith(".upload-")]


def upload_file(srv, images, name, filename=None, ctype="application/octet-stream"):
    return upload(srv.port, read(images[name]["path"]), filename=filename or name, ctype=ctype)


def vm_hwm_kb(srv):
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


ACCEPTED = ["phone12mp.jpg", "phone12mp.heic", "phone12mp.avif", "photo.tiff", "photo.webp", "camera48mp.jpg",
            "cmyk_icc.jpg", "alpha.png", "opaque_alpha.png", "polyglot.jpg", "small.jpg", "onemb.jpg"]
# Under valgrind (SLOW > 1) a 12 MP HEIC takes ~30 s and a 48 MP JPEG ~20 s to decode: the big ones run in the
# normal and ASan runs; valgrind checks the same code paths on the smaller files.
HEAVY = {"phone12mp.heic", "camera48mp.jpg", "photo.tiff", "alpha.png"}
if SLOW > 1:
    ACCEPTED = [n for n in ACCEPTED if n not in HEAVY]
REFUSED = ["doc.svg", "doc.pdf", "image.fits", "anim.gif", "photo.bmp", "raw.cr2", "raw.dng", "bomb.png", "bomb.jpg",
           "tiny.jpg", "truncated.jpg"]


@pytest.mark.parametrize("name", ACCEPTED)
def test_photo_is_normalised(server, images, fixtures_mod, tmp_path, name):
    entry = images[name]
    e = entry["expect"]
    r = upload_file(server, images, name)
    assert r.status == 200, r
    body = r.json()
    assert body["content_type"] == e["type"]
    assert (body["width"], body["height"]) == (e["width"], e["height"])
    orig = body["original"]
    assert orig["size"] == entry["bytes"]
    up_w, up_h = entry.get("upright", [entry["width"], entry["height"]])
    assert (orig["width"], orig["height"]) == (up_w, up_h), orig
    # what /files serves (and so what KIE gets) is the re-encoded image
    g = request(server.port, "GET", body["url"])
    assert g.status == 200 and g.header("Content-Type") == e["type"]
    assert len(g.body) == body["size"] <= KIE_MAX
    assert g.body != read(entry["path"])
    out = tmp_path / "stored"
    out.write_bytes(g.body)
    problems = fixtures_mod.verify(entry, str(out))
    assert not problems, problems
    # exiftool, independently: no GPS, no orientation, no EXIF at all by default
    meta = json.loads(subprocess.run(["exiftool", "-j", "-G", str(out)], capture_output=True, check=True).stdout)[0]
    assert not [k for k in meta if k.startswith(("EXIF:", "XMP", "IPTC:", "GPS", "Composite:GPS"))], meta
    assert list_uploads(server) == [body["filename"]] and not spool_files(server)


@pytest.mark.parametrize("name", REFUSED)
def test_hostile_or_unsupported_file_is_refused(server, images, name):
    e = images[name]["expect"]
    before = vm_hwm_kb(server)
    # the declared name and type lie: detection uses the content
    r = upload_file(server, images, name, filename="photo.jpg", ctype="image/jpeg")
    assert r.status in e["status"], (r, e)
    err = error_of(r)
    assert err["code"] in ("unsupported_media_type", "unreadable_image", "too_many_pixels"), err
    if r.status == 415:
        assert "JPEG" in err["message"], err  # says what to send instead
    if name.startswith("raw."):
        assert "export it as JPEG" in err["message"], err
    if name.startswith("bomb."):
        assert err["code"] == "too_many_pixels" and "60000" in err["message"], err
        # refused from the header: the server never allocated the 10.8 GB picture
        assert vm_hwm_kb(server) - before < 50 * 1024
    # nothing half-written left, and the server still answers
    assert list_uploads(server) == [] and not spool_files(server)
    assert request(server.port, "GET", "/healthz").status == 200


def test_keep_metadata_keeps_the_camera_but_never_the_location(server_factory, images, tmp_path):
    srv = server_factory({"KEEP_METADATA": "1"})
    r = upload_file(srv, images, "phone12mp.jpg")
    assert r.status == 200, r
    out = tmp_path / "kept.jpg"
    out.write_bytes(request(srv.port, "GET", r.json()["url"]).body)
    meta = json.loads(subprocess.run(["exiftool", "-j", "-G", "-n", str(out)], capture_output=True,
                                     check=True).stdout)[0]
    assert meta.get("EXIF:Make") == "FixturePhone" and meta.get("EXIF:Model") == "FP-12 Pro", meta
    assert meta.get("EXIF:Orientation", 1) == 1
    assert not [k for k in meta if "GPS" in k], meta
    data = out.read_bytes()
    for secret in (b"Jane Fixture-Owner", b"SN-FIXTURE-12345"):
        assert secret not in data


@pytest.mark.skipif(SLOW > 1, reason="decodes 48 MP up to five times: minutes under valgrind (the unit test covers the cap)")
def test_no_resize_still_fits_kies_limit(server_factory, images):
    # IMAGE_MAX_SIDE=0 keeps all 48 MP: the encoder lowers the quality (then the size) to stay within 10 MB
    srv = server_factory({"IMAGE_MAX_SIDE": "0"})
    r = upload_file(srv, images, "camera48mp.jpg")
    assert r.status == 200, r
    b = r.json()
    assert b["size"] <= KIE_MAX and b["original"]["size"] > KIE_MAX
    assert b["width"] * 3 == b["height"] * 4 and b["width"] >= 4000, b


def test_upload_limit_and_pixel_limit_are_configurable(server_factory, images):
    srv = server_factory({"MAX_UPLOAD_BYTES": "20000", "IMAGE_MAX_PIXELS": "100"})
    r = upload_file(srv, images, "small.jpg")  # 55 KB
    assert r.status == 413 and error_of(r)["code"] == "file_too_large"
    r = upload(srv.port, JPEG_BYTES)  # 16 x 12 = 192 pixels
    assert r.status == 413 and error_of(r)["code"] == "too_many_pixels", r
    assert "16 x 12" in error_of(r)["message"] and "IMAGE_MAX_PIXELS" in error_of(r)["message"]
    assert request(srv.port, "GET", "/config").json()["image_max_pixels"] == 100
    assert list_uploads(srv) == []


def test_full_queue_answers_503_with_retry_after(server_factory, images):
    # one worker, no queue: while a 48 MP photo is decoded, the next upload is refused at once
    srv = server_factory({"IMAGE_WORKERS": "1", "IMAGE_QUEUE": "0"})
    data = read(images["camera48mp.jpg" if SLOW == 1 else "phone12mp.jpg"]["path"])
    first = {}

    def slow():
        first["r"] = upload(srv.port, data, filename="big.jpg")

    t = threading.Thread(target=slow)
    t.start()
    deadline = time.time() + 20 * SLOW
    while time.time() < deadline:  # wait until the worker is busy with it
        h = request(srv.port, "GET", "/healthz").json()
        if h["image_workers"]["running"] == 1:
            break
        time.sleep(0.005)
    r = upload(srv.port, read(images["small.jpg"]["path"]), filename="small.jpg")
    t.join()
    assert first["r"].status == 200, first["r"]
    assert r.status == 503, r
    err = error_of(r)
    assert err["code"] == "server_busy" and int(r.header("Retry-After")) >= 1 and err["retry_after"] >= 1
    # and once the worker is free, the same upload goes through
    r = upload(srv.port, read(images["small.jpg"]["path"]), filename="small.jpg")
    assert r.status == 200, r
    assert not spool_files(srv)


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves raw fixture files on loopback, as someone else's server would."""
    root = None

    def do_GET(self):
        path = os.path.join(self.root, os.path.basename(self.path))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = read(path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def test_kie_gets_what_it_accepts(server, sim, images):
    """The simulator refuses inputs KIE refuses (not JPEG/PNG/WEBP, over 10 MB): a raw HEIC fails there, the
    same photo uploaded through us succeeds."""
    sim_config(sim, step_ms=50)
    handler = type("H", (_Files,), {"root": os.path.dirname(images["phone12mp.heic"]["path"])})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        names = ("phone12mp.heic", "camera48mp.jpg") if SLOW == 1 else ("phone12mp.avif",)
        raw = [f"http://127.0.0.1:{httpd.server_port}/{n}" for n in names]
        for url in raw:
            g = request(server.port, "POST", "/generate", {"input_url": url, "prompt": "studio product shot"})
            assert g.status == 200, g
            d = wait_task(server.port, g.json()["data"]["taskId"])
            assert d["state"] == "fail", d
        for name in names:
            up = upload_file(server, images, name).json()
            g = request(server.port, "POST", "/generate", {"input_url": up["url"], "prompt": "studio product shot"})
            assert g.status == 200, g
            d = wait_task(server.port, g.json()["data"]["taskId"])
            assert d["state"] == "success", d
    finally:
        httpd.shutdown()
    sent = [q["body"]["input"]["input_urls"][0] for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/createTask"]
    assert sent[:len(raw)] == raw and all(u.endswith(".jpg") for u in sent[len(raw):]), sent


def test_config_states_types_and_limits(server):
    c = request(server.port, "GET", "/config").json()
    assert c["max_upload_bytes"] == 32 * 1024 * 1024 and c["image_max_side"] == 2048
    assert set(c["accepted_types"]) == {"image/jpeg", "image/png", "image/webp", "image/heic", "image/avif",
                                        "image/tiff"}
    assert c["image_workers"] >= 1
    assert KIE_KEY not in json.dumps(c)
