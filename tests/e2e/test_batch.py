"""End-to-end: `product-photo-api generate PHOTO... | DIR...` (batches) against the real server wired to the KIE
simulator with KIE's rate limit switched on (20 createTask per 10 s per key, 429 beyond). The server's own per-IP
limits are off in these servers (conftest: RATE_LIMIT_GENERATE=0), so the limit exercised is KIE's, which the CLI
must keep to by itself. The photos are made here with Pillow, each a different width (so a different SHA-256, a
different Idempotency-Key, and a width the simulator's fail_width knob can pick). Under PPA_VALGRIND the CLI runs
under valgrind too."""
import json
import os
import pty
import re
import signal
import subprocess
import time

import pytest

from conftest import (PPA_BIN, SLOW, VALGRIND, free_port, list_uploads, pil_bytes, read_pty, request, sim_config,
                      sim_requests, wait_for)

CLI_BIN = os.path.abspath(os.environ.get("PPA_CLI_BIN") or PPA_BIN)
PROMPT = "The product on white marble, soft studio light"
WINDOW_MS = 10000


def cli_env(**extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PPA_POLL_MS": "100"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "VIPS_NOVECTOR"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update(extra)
    return env


def cli_cmd(args):
    return VALGRIND + [CLI_BIN, "generate"] + [str(a) for a in args]


def run_cli(args, cwd, timeout=90, env=None):
    p = subprocess.run(cli_cmd(args), cwd=cwd, env=env or cli_env(), capture_output=True, timeout=timeout * SLOW)
    err = p.stderr.decode(errors="replace")
    assert "Sanitizer" not in err and "runtime error:" not in err, err
    return p.returncode, p.stdout.decode(errors="replace"), err


def url(srv):
    return f"http://127.0.0.1:{srv.port}"


def make_photos(d, n, first_width=20, fmt="JPEG", ext="jpg"):
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = d / f"item{i:02d}.{ext}"
        p.write_bytes(pil_bytes(fmt, w=first_width + i, h=16))
        paths.append(p)
    return paths


def request_json(proc, path):
    r = request(proc.port, "GET", path)
    assert r.status == 200, r
    return r.json()


def creates(sim):
    return [q for q in sim_requests(sim) if q["path"] == "/api/v1/jobs/createTask"]


def most_in_window(entries, window_ms=WINDOW_MS):
    """The largest number of requests the simulator received within any window_ms (its own clock)."""
    t = sorted(e["mono_ms"] for e in entries)
    return max((sum(1 for u in t[i:] if u - s < window_ms) for i, s in enumerate(t)), default=0)


def results(outdir):
    return sorted(f for f in os.listdir(outdir) if f not in ("manifest.json", ".manifest.lock"))


def manifest(outdir):
    with open(os.path.join(outdir, "manifest.json")) as f:
        return json.load(f)


def assert_all_saved(outdir, stems):
    names = results(outdir)
    assert names == sorted(f"{s}.png" for s in stems), names
    for n in names:
        with open(os.path.join(outdir, n), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", n


# ---- pacing -------------------------------------------------------------------------------

def test_batch_of_30_keeps_to_kies_rate_limit(server, sim, tmp_path):
    sim_config(sim, rate_limit=1, step_ms=50)
    photos = make_photos(tmp_path / "in", 30)
    out = tmp_path / "out"
    t0 = time.time()
    rc, stdout, stderr = run_cli([tmp_path / "in", "-p", PROMPT, "-o", out, "--jobs", 8, "--server", url(server)],
                                 cwd=tmp_path)
    wall = time.time() - t0
    assert rc == 0, stderr
    assert_all_saved(out, [p.stem for p in photos])
    sent = creates(sim)
    assert len(sent) == 30, len(sent)  # no 429 was answered (a refused create is logged too) and none retried
    assert most_in_window(sent) <= 20, most_in_window(sent)
    assert wall >= 10, wall  # 30 creates cannot be sent in under 10 s at 20 per 10 s
    # KIE was asked for each photo once, with the batch's prompt
    assert all(q["body"]["input"]["prompt"] == PROMPT for q in sent)
    m = manifest(out)
    assert len(m["photos"]) == 30 and {e["state"] for e in m["photos"]} == {"done"}
    assert all(e["task_id"] and e["credits"] == 5 and len(e["sha256"]) == 64 and e["error"] is None
               for e in m["photos"]), m["photos"][0]
    assert sorted(os.path.basename(e["output"]) for e in m["photos"]) == results(out)
    # no terminal: plain lines, one per event, no escapes; the summary table on stdout
    assert "\033[" not in stderr and "\r" not in stderr
    assert stderr.count(": saved ") == 30 and "warning" not in stderr, stderr
    assert re.search(r"30 photos: 30 done, 0 failed, 0 not finished; 150 credits", stdout), stdout
    assert len(stdout.strip().splitlines()) == 32, stdout  # header, 30 rows, total


def test_killed_batch_resumes_without_new_tasks(server, sim, tmp_path):
    sim_config(sim, rate_limit=1, step_ms=300)
    photos = make_photos(tmp_path / "in", 30)
    out = tmp_path / "out"
    args = [tmp_path / "in", "-p", PROMPT, "-o", out, "--jobs", 8, "--server", url(server)]
    p = subprocess.Popen(cli_cmd(args), cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(creates(sim)) >= 12, timeout=30, interval=0.02)
    finally:
        p.send_signal(signal.SIGKILL)  # mid-batch, as a crash would
        p.wait(30)
    first = len(creates(sim))
    assert 12 <= first < 30, first
    m = manifest(out)  # written atomically: always whole JSON
    assert len(m["photos"]) == 30 and "done" not in {e["state"] for e in m["photos"][-5:]}, m
    known = {e["path"]: e["task_id"] for e in m["photos"] if e["task_id"]}
    assert known, m
    sim_config(sim, step_ms=50)
    rc, stdout, stderr = run_cli(args, cwd=tmp_path)
    assert rc == 0, stderr
    assert_all_saved(out, [ph.stem for ph in photos])
    sent = creates(sim)
    assert len(sent) == 30, (first, len(sent))  # the tasks of the killed run were resumed, not made again
    assert most_in_window(sent) <= 20, most_in_window(sent)  # the rerun counted the killed run's creates
    # the tasks the killed run had recorded are the ones the rerun finished
    assert {e["path"]: e["task_id"] for e in manifest(out)["photos"] if e["path"] in known} == known


def test_kies_429_is_waited_out_and_retried(server, sim, tmp_path):
    # --rate above KIE's limit: KIE refuses some creates with 429, the server passes that on, the CLI waits and
    # tries again with the same key; every photo ends up with exactly one task
    sim_config(sim, rate_limit=1, rate_limit_max=5, rate_limit_window_ms=2000, step_ms=50)
    photos = make_photos(tmp_path / "in", 12)
    out = tmp_path / "out"
    rc, stdout, stderr = run_cli([tmp_path / "in", "-p", PROMPT, "-o", out, "--jobs", 6, "--rate", 100,
                                  "--server", url(server)], cwd=tmp_path)
    assert rc == 0, stderr
    assert_all_saved(out, [p.stem for p in photos])
    tasks = request_json(sim, "/sim/tasks")["count"]
    assert tasks == 12, tasks
    assert len(creates(sim)) > 12  # some were refused (logged too) and sent again


# ---- failures -----------------------------------------------------------------------------

def test_failed_photo_is_reported_and_retried_only_with_retry_failed(server, sim, tmp_path):
    photos = make_photos(tmp_path / "in", 4, first_width=30)
    bad = photos[2]  # 32 px wide
    sim_config(sim, rate_limit=1, fail_width=32, fail_code="422", fail_msg="No product found in the photo")
    out = tmp_path / "out"
    args = [tmp_path / "in", "-p", PROMPT, "-o", out, "--server", url(server)]
    rc, stdout, stderr = run_cli(args, cwd=tmp_path)
    assert rc == 1, stderr
    assert f"{bad}: the generation failed: No product found in the photo" in stderr, stderr
    assert "1 photo failed" in stderr and "--retry-failed" in stderr, stderr
    assert re.search(rf"{re.escape(str(bad))}\s+failed\s+", stdout), stdout
    assert results(out) == sorted(f"{p.stem}.png" for p in photos if p != bad)
    assert len(creates(sim)) == 4
    (entry,) = [e for e in manifest(out)["photos"] if e["path"] == str(bad)]
    assert entry["state"] == "failed" and "No product found" in entry["error"], entry

    # again without --retry-failed: nothing is sent, the failure is listed again
    sim_config(sim, fail_width=0)
    rc, stdout, stderr = run_cli(args, cwd=tmp_path)
    assert rc == 1 and len(creates(sim)) == 4, stderr
    assert "No product found in the photo" in stderr and "1 failed before" in stderr, stderr

    # with it: one new task (a new key: the old one would replay the failed task), and all done
    rc, stdout, stderr = run_cli(args + ["--retry-failed"], cwd=tmp_path)
    assert rc == 0, stderr
    assert len(creates(sim)) == 5
    assert_all_saved(out, [p.stem for p in photos])
    assert creates(sim)[-1]["body"]["input"]["prompt"] == PROMPT
    (entry,) = [e for e in manifest(out)["photos"] if e["path"] == str(bad)]
    assert entry["state"] == "done" and entry["attempt"] == 1 and entry["error"] is None, entry


def test_ctrl_c_saves_the_manifest_and_prints_the_resume_command(server, sim, tmp_path):
    sim_config(sim, rate_limit=1, step_ms=3000)
    photos = make_photos(tmp_path / "in dir", 6)
    out = tmp_path / "out"
    args = [tmp_path / "in dir", "-p", PROMPT, "-o", out, "--jobs", 2, "--server", url(server)]
    p = subprocess.Popen(cli_cmd(args), cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = b""
    deadline = time.time() + 30 * SLOW
    while b" created" not in seen and time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        seen += line
    p.send_signal(signal.SIGINT)
    t0 = time.time()
    rest_out, rest_err = p.communicate(timeout=30 * SLOW)
    stopped_in = time.time() - t0
    err = (seen + rest_err).decode(errors="replace")
    assert p.returncode == 130, err
    assert stopped_in < 10 * SLOW, stopped_in  # the waits end at once; only calls in flight are finished
    assert "To resume, run:" in err, err
    hint = err[err.index("To resume, run:"):].splitlines()[1].strip()
    assert hint == (f"product-photo-api generate '{tmp_path / 'in dir'}' -p '{PROMPT}' -o {out} --jobs 2 "
                    f"--server {url(server)}"), hint
    m = manifest(out)
    with_task = [e for e in m["photos"] if e["task_id"]]
    assert 1 <= len(with_task) <= 2 and len(m["photos"]) == 6, m  # only the 2 in flight were started
    assert all(e["state"] == "pending" for e in m["photos"] if not e["task_id"]), m
    made = len(creates(sim))
    assert made == len(with_task)

    sim_config(sim, step_ms=50)
    rc, stdout, stderr = run_cli(args, cwd=tmp_path)
    assert rc == 0, stderr
    assert len(creates(sim)) == 6  # the interrupted ones resumed: no second task for them
    assert_all_saved(out, [ph.stem for ph in photos])


# ---- dry run, names, directories ----------------------------------------------------------

def test_dry_run_spends_nothing(server, sim, tmp_path):
    photos = make_photos(tmp_path / "in", 5)
    out = tmp_path / "out"
    rc, stdout, stderr = run_cli([tmp_path / "in", "-p", PROMPT, "-o", out, "--dry-run", "--server", url(server)],
                                 cwd=tmp_path)
    assert rc == 0, stderr
    for ph in photos:
        assert re.search(rf"upload\+create\s+{re.escape(str(ph))} -> {re.escape(str(out))}/{ph.stem}\.png", stdout), \
            stdout
    assert re.search(r"Estimated cost: 5 new tasks x 5 credits \(1K\) = 25 credits", stdout), stdout
    assert "Nothing was uploaded" in stdout
    assert creates(sim) == [] and not [q for q in sim_requests(sim) if "upload" in q["path"]]
    assert list_uploads(server) == []
    assert not out.exists()  # not even the output directory


def test_same_stem_in_two_directories_gets_distinct_stable_names(server, sim, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "mug.jpg").write_bytes(pil_bytes("JPEG", w=21, h=14))
    (tmp_path / "b" / "mug.png").write_bytes(pil_bytes("PNG", w=23, h=14))
    out = tmp_path / "out"
    args = [tmp_path / "b", tmp_path / "a", "-p", PROMPT, "-o", out, "--server", url(server)]
    rc, stdout, stderr = run_cli(args, cwd=tmp_path)
    assert rc == 0, stderr
    assert results(out) == ["mug-2.png", "mug.png"]
    by_path = {e["path"]: os.path.basename(e["output"]) for e in manifest(out)["photos"]}
    assert by_path == {str(tmp_path / "a" / "mug.jpg"): "mug.png", str(tmp_path / "b" / "mug.png"): "mug-2.png"}
    first = {n: (out / n).read_bytes() for n in results(out)}
    # a third mug later: the first two keep their names (and results), the newcomer gets the next free one
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "mug.webp").write_bytes(pil_bytes("WEBP", w=25, h=14))
    rc, stdout, stderr = run_cli(args + [tmp_path / "c"], cwd=tmp_path)
    assert rc == 0, stderr
    assert results(out) == ["mug-2.png", "mug-3.png", "mug.png"]
    assert all((out / n).read_bytes() == data for n, data in first.items())
    assert len(creates(sim)) == 3 and "2 done before" in stderr, stderr


def test_directories_skip_hidden_files_outputs_and_non_photos(server, sim, tmp_path):
    src = tmp_path / "shop"
    make_photos(src, 2)
    (src / ".hidden.jpg").write_bytes(pil_bytes("JPEG", w=40, h=10))
    (src / "notes.txt").write_text("not a photo\n")
    (src / "noext").write_bytes(pil_bytes("PNG", w=41, h=10))  # an image by its content
    (src / "SHOUT.JPEG").write_bytes(pil_bytes("JPEG", w=42, h=10))
    make_photos(src / "deeper", 1, first_width=50)
    make_photos(src / ".git", 1, first_width=60)
    out = src / "studio"  # inside the scanned tree: never scanned itself
    make_photos(out, 1, first_width=70)
    base = ["-p", PROMPT, "-o", out, "--dry-run", "--server", url(server)]

    def listed(args):
        rc, stdout, stderr = run_cli(args + base, cwd=tmp_path)
        assert rc == 0, stderr
        return sorted(os.path.relpath(m, src) for m in re.findall(r"upload\+create\s+(\S+) ->", stdout))

    assert listed([src]) == ["SHOUT.JPEG", "item00.jpg", "item01.jpg", "noext"]
    assert listed([src, "--recursive"]) == ["SHOUT.JPEG", "deeper/item00.jpg", "item00.jpg", "item01.jpg", "noext"]
    # a photo named twice (or also found in a named directory) is one photo
    assert listed([src / "item00.jpg", src, src / "item00.jpg"]) == ["SHOUT.JPEG", "item00.jpg", "item01.jpg",
                                                                     "noext"]


@pytest.mark.parametrize("args,needle", [
    (["{dir}"], "--prompt is required"),
    (["{dir}", "-p", PROMPT, "--jobs", "0"], "--jobs 0"),
    (["{dir}", "-p", PROMPT, "--jobs", "65"], "--jobs 65"),
    (["{dir}", "-p", PROMPT, "--rate", "0"], "--rate 0"),
    (["{dir}", "-p", PROMPT, "-o", "{file}"], "several photos need an output directory"),
    (["{empty}", "-p", PROMPT], "no photos found"),
    (["{dir}", "{tmp}/missing", "-p", PROMPT], "cannot read"),
    (["{dir}", "-p", PROMPT, "--new"], "--new is for one photo"),
    (["{dir}", "-p", PROMPT, "-o", "{dir}"], "is one of the photo directories"),
])
def test_batch_usage_errors_exit_2(tmp_path, args, needle):
    make_photos(tmp_path / "in", 2)
    (tmp_path / "empty").mkdir()
    (tmp_path / "f.png").write_bytes(b"x")
    fill = {"dir": tmp_path / "in", "empty": tmp_path / "empty", "file": tmp_path / "f.png", "tmp": tmp_path}
    argv = ["--server", f"http://127.0.0.1:{free_port()}"] + [a.format(**fill) for a in args]
    rc, stdout, stderr = run_cli(argv, cwd=tmp_path)
    assert rc == 2, (rc, stderr)
    assert stdout == "" and stderr.startswith("error: ") and needle in stderr, stderr
    assert not (tmp_path / "studio").exists()


def test_one_photo_with_o_file_is_as_before(server, sim, tmp_path):
    (src,) = make_photos(tmp_path, 1)
    rc, stdout, stderr = run_cli([src, "-p", PROMPT, "-o", "r.png", "--server", url(server)], cwd=tmp_path)
    assert rc == 0, stderr
    assert stdout == "r.png\n"
    assert "Uploading item00.jpg" in stderr and "State: success" in stderr and "Saved r.png" in stderr, stderr
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(os.listdir(tmp_path)) == ["item00.jpg", "r.png"]  # no manifest, no studio/


def test_terminal_shows_live_lines_and_a_total(server, sim, tmp_path):
    sim_config(sim, step_ms=400)
    make_photos(tmp_path / "in", 3)
    master, slave = pty.openpty()
    p = subprocess.Popen(cli_cmd([tmp_path / "in", "-p", PROMPT, "--jobs", 3, "--server", url(server)]),
                         cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    tty = read_pty(master)
    assert p.wait(60 * SLOW) == 0
    # a live line per active photo (name, state, elapsed) and the total line, redrawn in place
    assert re.search(r"\033\[K  \S+item0[0-2]\.jpg\s+generating\s+\d+ s\r?\n", tty), tty
    assert re.search(r"\033\[K\d/3 done, 0 failed, \d queued, \d active, [\d.]+ credits, ETA ", tty), tty
    assert re.search(r"\r\033\[\d+A\033\[J", tty), tty  # moved up over the block and cleared it
    assert (tmp_path / "studio" / "item02.png").exists()  # the default OUTDIR
    assert "3 photos: 3 done" in p.stdout.read().decode()


def test_one_run_at_a_time_per_output_directory(tmp_path):
    import fcntl
    make_photos(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".manifest.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a run in progress holds it
        rc, stdout, stderr = run_cli([tmp_path / "in", "-p", PROMPT, "-o", out,
                                      "--server", f"http://127.0.0.1:{free_port()}"], cwd=tmp_path)
    assert rc == 1 and "another run of generate is using" in stderr, stderr
    assert not (out / "manifest.json").exists()


class FakeApi:
    """A stand-in server for the answers the simulator does not give on demand: POST /generate answers from a
    per-photo script (429 with Retry-After, 503, a 400), everything else succeeds at once."""

    def __init__(self, scripts):
        import http.server
        import threading

        api = self
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.calls = []  # (photo, Idempotency-Key, time) per POST /generate

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, obj, status=200, headers=(), raw=None, ctype="application/json"):
                data = raw if raw is not None else json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/upload":
                    name = re.search(rb'filename="([^"]+)"', body).group(1).decode()
                    self.reply({"url": f"/files/{name}"})
                    return
                name = json.loads(body)["input_url"].rsplit("/", 1)[1].split(".")[0]
                api.calls.append((name, self.headers.get("Idempotency-Key"), time.time()))
                step = api.scripts.get(name, []).pop(0) if api.scripts.get(name) else "ok"
                err = {"error": {"code": step, "message": f"scripted {step}", "request_id": "r"}}
                if step == "rate_limited":
                    self.reply(err, 429, [("Retry-After", "1")])
                elif step == "unavailable":
                    self.reply(err, 503)
                elif step == "invalid_prompt":
                    err["error"]["message"] = "The prompt is refused"
                    self.reply(err, 400)
                else:
                    self.reply({"code": 200, "data": {"taskId": f"task_{name}"}})

            def do_GET(self):
                if self.path.startswith("/tasks?"):
                    self.reply({"tasks": [], "next": None})
                elif self.path.startswith("/status?task_id=task_"):
                    name = self.path.rsplit("task_", 1)[1]
                    self.reply({"code": 200, "data": {"taskId": f"task_{name}", "state": "success",
                                                      "creditsConsumed": 5, "resultUrls": [f"/r/{name}.png"]}})
                elif self.path.startswith("/r/"):
                    self.reply(None, raw=pil_bytes("PNG", w=8, h=8), ctype="image/png")
                else:
                    self.reply({"error": {"code": "not_found", "message": "no such thing"}}, 404)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_429_waits_for_retry_after_5xx_retries_other_4xx_fail_that_photo_only(tmp_path):
    api = FakeApi({"item00": ["rate_limited"], "item01": ["unavailable", "unavailable"],
                   "item02": ["invalid_prompt", "invalid_prompt"]})
    try:
        photos = make_photos(tmp_path / "in", 4)
        out = tmp_path / "out"
        rc, stdout, stderr = run_cli([tmp_path / "in", "-p", PROMPT, "-o", out, "--server", url(api)], cwd=tmp_path)
    finally:
        api.close()
    assert rc == 1, stderr
    assert f"{photos[2]}: generate failed (HTTP 400, invalid_prompt): The prompt is refused" in stderr, stderr
    assert results(out) == ["item00.png", "item01.png", "item03.png"]
    by = {}
    for name, key, t in api.calls:
        by.setdefault(name, []).append((key, t))
    assert [len(by[n]) for n in ("item00", "item01", "item02", "item03")] == [2, 3, 1, 1], by
    assert len({k for k, _ in by["item00"]}) == 1 and len({k for k, _ in by["item01"]}) == 1  # the same key
    assert by["item00"][1][1] - by["item00"][0][1] >= 0.95  # Retry-After: 1
    gaps = [b[1] - a[1] for a, b in zip(by["item01"], by["item01"][1:])]
    assert all(g >= 0.45 for g in gaps), gaps  # backoff with jitter: at least half of 1 s, then 2 s


def test_results_are_named_after_the_photos_in_results_zip(server, sim, tmp_path):
    import io
    import zipfile
    src = tmp_path / "shop"
    src.mkdir()
    (src / "Teapot blue.jpg").write_bytes(pil_bytes("JPEG", w=22, h=14))
    (src / "mug.png").write_bytes(pil_bytes("PNG", w=24, h=14))
    out = tmp_path / "out"
    rc, stdout, stderr = run_cli([src, "-p", PROMPT, "-o", out, "--server", url(server)], cwd=tmp_path)
    assert rc == 0, stderr
    ids = {os.path.basename(e["path"]): e["task_id"] for e in manifest(out)["photos"]}
    for name, task in ids.items():
        assert request(server.port, "GET", f"/tasks/{task}").json()["photo_name"] == name
    z = request(server.port, "GET", "/results.zip?tasks=" + ",".join(ids.values()))
    assert z.status == 200, z
    names = zipfile.ZipFile(io.BytesIO(z.body)).namelist()
    assert sorted(os.path.splitext(n)[0] for n in names) == ["Teapot blue", "mug"], names
    # the photo renamed, the same command again: the first request (with its photo_name) is replayed, no new task
    (src / "Teapot blue.jpg").rename(src / "teapot.jpg")
    rc, stdout, stderr = run_cli([src / "teapot.jpg", "-p", PROMPT, "-o", tmp_path / "again.png", "--server",
                                  url(server)], cwd=tmp_path)
    assert rc == 0, stderr
    assert len(creates(sim)) == 2, stderr
