# The knobs that fail one chosen task (fail_match, fail_width) and the
# request log's timestamps in kie-sim: sourced by test_kie_sim.sh (its
# helpers, fixtures and counters).

start_sim failmatch --step-ms 0
FM_PID=$SIM_PID
S="http://127.0.0.1:$SIM_PORT"
echo "# failmatch: kie-sim on $SIM_PORT"
# task_of BODY -> prints the new task's id (CODE/BODY as req sets them)
task_of() { create "$1"; jv "$BODY" 'd["data"]["taskId"]'; }
# ends BODY -> "state failCode failMsg" of the task once it is done
ends() {
    local id
    id=$(task_of "$1")
    wait_state "$id"
    jv "$BODY" 'x=d["data"]; x["state"] + " " + (x.get("failCode") or "-") + " " + (x.get("failMsg") or "-")'
}
PNG_BODY=$(mkbody "$WWW/in.png")   # 64 x 48
JPG_BODY=$(mkbody "$WWW/in.jpg")   # 200 x 100
MARBLE_BODY=$(printf '%s' "$PNG_BODY" | sed 's/studio shot of a mug/studio shot of a mug on marble/')

eq "fail_width off by default: a task succeeds" "$(ends "$PNG_BODY")" "success - -"
config '{"fail_width":64,"fail_code":"501","fail_msg":"simulated failure of one photo"}'
eq "fail_width 64: the 64 px wide input fails with fail_code/fail_msg" "$(ends "$PNG_BODY")" \
    "fail 501 simulated failure of one photo"
eq "fail_width 64: a 200 px wide input still succeeds" "$(ends "$JPG_BODY")" "success - -"
req GET /sim/config
eq "fail_width: GET /sim/config shows it" "$(jv "$BODY" 'd["fail_width"]')" 64
config '{"fail_width":0,"fail_match":"marble"}'
eq "fail_match: a prompt containing it fails" "$(ends "$MARBLE_BODY")" "fail 501 simulated failure of one photo"
eq "fail_match: another prompt succeeds" "$(ends "$PNG_BODY")" "success - -"
config '{"fail_match":"in.jpg"}'
eq "fail_match: an input URL containing it fails" "$(ends "$JPG_BODY" | cut -d' ' -f1)" "fail"
eq "fail_match: other URLs succeed" "$(ends "$PNG_BODY" | cut -d' ' -f1)" "success"
config '{"reset":true}'
eq "reset: fail_match and fail_width off again" "$(ends "$JPG_BODY" | cut -d' ' -f1)" "success"
req POST /sim/config '{"fail_width":-1}'
eq "fail_width: a negative width is refused" "$CODE" 400

# the request log's timestamps: wall and monotonic ms, in arrival order
req GET /sim/requests
eq "request log: every entry has time_ms and mono_ms, both in order" \
    "$(jv "$BODY" 'r=d["requests"]; t=[e["time_ms"] for e in r]; m=[e["mono_ms"] for e in r]; (len(r) > 5, t == sorted(t), m == sorted(m), all(x > 1.7e12 for x in t), all(isinstance(x, (int, float)) for x in m))')" \
    "(True, True, True, True, True)"
T0=$(now_ms)
create "$PNG_BODY"
req GET /sim/requests
eq "request log: time_ms is the arrival time (ms)" \
    "$(jv "$BODY" "e=d['requests'][-1]; (e['path'], abs(e['time_ms'] - $T0) < 2000)")" "('/api/v1/jobs/createTask', True)"
"$SIM" --help >"$T/fm-help.txt"
check "fail knobs: --help documents fail_match and fail_width" grep -q -- "--fail-match" "$T/fm-help.txt"
check "fail knobs: --help documents fail_width" grep -q -- "--fail-width" "$T/fm-help.txt"
stop_sim "$FM_PID" failmatch
