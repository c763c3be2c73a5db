-- common.lua: shared by the wrk scripts of run.sh; on its own it is the script for plain GET scenarios.
-- At the end of a run it prints one machine-readable line that run.sh parses:
--   BENCHRESULT requests=N duration_us=N rps=R p50_us=N p90_us=N p99_us=N max_us=N non2xx=N connect=N read=N write=N timeout=N
-- non2xx is wrk's errors.status: responses with a status >= 400 (wrk does not count 3xx; run.sh checks 2xx first).

function read_file(path)
   assert(path and path ~= "", "read_file: no path (set BENCH_BODY)")
   local f = assert(io.open(path, "rb"))
   local data = f:read("*a")
   f:close()
   return data
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCHRESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
      "non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.status, e.connect, e.read, e.write, e.timeout))
end
