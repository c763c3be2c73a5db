# KIE's createTask rate limit in kie-sim: sourced by test_kie_sim.sh (its
# helpers, fixtures and counters). Off by default; on, 20 per 10 s per key,
# HTTP 429 beyond, refused not queued, concurrent requests counted exactly.

start_sim ratelimit --api-key r1 --api-key r2 --step-ms 0
RL_PID=$SIM_PID
S="http://127.0.0.1:$SIM_PORT"
echo "# ratelimit: kie-sim on $SIM_PORT"
RLBODY=$(mkbody "$WWW/in.png")
# burst KEY N -> prints the HTTP status of N createTask sent one after another
burst() {
    local i
    for i in $(seq 1 "$2"); do
        curl -s -m 10 -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $1" --data-binary "$RLBODY" \
            "$S/api/v1/jobs/createTask"
    done
}
ntasks() { jv "$(curl -s -m 5 "$S/sim/tasks")" 'd["count"]'; }
# tally -> "N200 N429" from statuses on stdin
tally() { "$PY" -c 'import sys; s=sys.stdin.read().split(); print(s.count("200"), s.count("429"), len(s))'; }

eq "off by default: 25 createTask in a row all pass" "$(burst r1 25 | tally)" "25 0 25"
config '{"rate_limit":1}'
N0=$(ntasks)
eq "on: 20 pass, the next 5 get HTTP 429" "$(burst r1 25 | tally)" "20 5 25"
eq "on: refused requests make no task (not queued)" "$(( $(ntasks) - N0 ))" 20
req POST /api/v1/jobs/createTask "$RLBODY" -H "Authorization: Bearer r1"
eq "on: the answer is KIE's 429" "$CODE $(jv "$BODY" 'd["code"]')" "429 429"
req GET /api/v1/chat/credit "" -H "Authorization: Bearer r1"
eq "on: refused requests take no credits (45 tasks x 5)" "$(jv "$BODY" 'd["data"]')" $((100000000 - 45 * 5))
eq "per key: another key has its own 20" "$(burst r2 21 | tally)" "20 1 21"
req GET "/api/v1/jobs/recordInfo?taskId=x" "" -H "Authorization: Bearer r1"
eq "per key: recordInfo is not limited" "$(jv "$BODY" 'd["code"]')" 422
config '{"rate_limit":1,"rate_limit_max":3,"rate_limit_window_ms":2000}'
eq "window: setting rate_limit empties it; 3 pass, then 429" "$(burst r1 4 | tally)" "3 1 4"
sleep 2.1
eq "window: after rate_limit_window_ms, 3 again (the 429 did not count)" "$(burst r1 4 | tally)" "3 1 4"
config '{"rate_limit":1,"rate_limit_max":20,"rate_limit_window_ms":10000}'
RLS=()
for i in $(seq 1 30); do
    curl -s -m 10 -o "$T/rl.$i" -w '%{http_code}\n' -H "Authorization: Bearer r1" --data-binary "$RLBODY" \
        "$S/api/v1/jobs/createTask" >"$T/rlc.$i" &
    RLS+=("$!")
done
for j in "${RLS[@]}"; do wait "$j"; done
eq "concurrent: of 30 at once exactly 20 pass" "$(cat "$T"/rlc.* | tally)" "20 10 30"
config '{"rate_limit":0}'
eq "off again: no limit" "$(burst r1 5 | tally)" "5 0 5"
stop_sim "$RL_PID" ratelimit
