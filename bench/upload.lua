-- upload.lua: POST /upload with a prebuilt multipart/form-data body (field "file", a 1 MB jpg by default).
-- run.sh builds the body file and passes it as $BENCH_BODY and its boundary as $BENCH_BOUNDARY:
--   BENCH_BODY=/tmp/bench-work/upload-1m.body BENCH_BOUNDARY=... wrk -t2 -c32 -d10s -s upload.lua http://127.0.0.1:PORT/upload
-- Every request stores a file on the server: mind its disk.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local boundary = os.getenv("BENCH_BOUNDARY")
assert(boundary and boundary ~= "", "upload.lua: set BENCH_BOUNDARY")
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = read_file(os.getenv("BENCH_BODY"))
