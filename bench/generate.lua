-- generate.lua: POST /generate with a JSON body.
-- run.sh writes the body to $BENCH_BODY (the same bytes its curl check sent); without it a default body is used.
--   wrk -t2 -c32 -d10s -s generate.lua http://127.0.0.1:PORT/generate
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local body_file = os.getenv("BENCH_BODY")
if body_file and body_file ~= "" then
   wrk.body = read_file(body_file)
else
   wrk.body = '{"input_url":"http://127.0.0.1:9/files/bench.jpg",' ..
              '"prompt":"High-end product photography, keep props","aspect_ratio":"4:3","resolution":"1K"}'
end
