# Credits in kie-sim: sourced by test_kie_sim.sh (its helpers, fixtures and
# counters). A balance per API key, prices per resolution, 402 when it runs
# out, refunds for failed tasks, creditsConsumed in recordInfo and the
# callback, GET /api/v1/chat/credit and its failure modes.

start_sim credits --api-key k1 --api-key k2 --initial-credits 20 --price-1k 5 --price-2k 7 --step-ms 0
CR_PID=$SIM_PID
S="http://127.0.0.1:$SIM_PORT"
echo "# credits: kie-sim on $SIM_PORT"
# balance KEY -> prints data of GET /api/v1/chat/credit; sets CODE, BODY
balance() { req GET /api/v1/chat/credit "" -H "Authorization: Bearer $1"; jv "$BODY" 'd["data"]'; }
# createk KEY BODY
createk() { req POST /api/v1/jobs/createTask "$2" -H "Authorization: Bearer $1" -H "Content-Type: application/json"; }
recordk() { req GET "/api/v1/jobs/recordInfo?taskId=$2" "" -H "Authorization: Bearer $1"; }
# waitk KEY TASKID -> BODY is the final recordInfo
waitk() {
    local i
    for i in $(seq 1 250); do
        recordk "$1" "$2"
        case "$(jv "$BODY" 'd["data"]["state"]')" in success|fail) return 0;; esac
        sleep 0.02
    done
    return 1
}

balance k1 >/dev/null
eq "credit: HTTP 200, KIE's shape {code, msg, data}" "$CODE $(jv "$BODY" 'sorted(d), d["code"], d["msg"], d["data"]')" \
   "200 (['code', 'data', 'msg'], 200, 'success', 20)"
req GET /api/v1/chat/credit
eq "credit: no key -> HTTP 401, code 401" "$CODE $(jv "$BODY" 'd["code"], d["msg"]')" "401 (401, 'You do not have access permissions')"
req GET /api/v1/chat/credit "" -H "Authorization: Bearer test-key"
eq "credit: the default key is replaced by --api-key" "$CODE" 401

createk k1 "$(mkbody "$WWW/in.png")"
T1=$(jv "$BODY" 'd["data"]["taskId"]')
eq "charge: 1K createTask takes price_1k (20 -> 15)" "$(balance k1)" 15
createk k1 "$(RES=2K mkbody "$WWW/in.png")"
T2=$(jv "$BODY" 'd["data"]["taskId"]')
eq "charge: 2K createTask takes price_2k (15 -> 8)" "$(balance k1)" 8
eq "charge: the other key's balance is its own" "$(balance k2)" 20
waitk k1 "$T1"
eq "record: success reports creditsConsumed 5 and a costTime" \
   "$(jv "$BODY" 'x=d["data"]; x["state"], x["creditsConsumed"], isinstance(x["costTime"], (int, float))')" "('success', 5, True)"
waitk k1 "$T2"
eq "record: 2K task consumed 7" "$(jv "$BODY" 'd["data"]["creditsConsumed"]')" 7
createk k1 '{"model":"flux-2/pro-image-to-image","input":{"prompt":"no urls","aspect_ratio":"1:1","resolution":"1K"}}'
eq "charge: a refused (422) request takes nothing" "$(jv "$BODY" 'd["code"]') $(balance k1)" "422 8"
createk k1 "$(RES=2K mkbody "$WWW/in.png")"
eq "charge: 2K with exactly enough left (8 -> 1)" "$(jv "$BODY" 'd["code"]') $(balance k1)" "200 1"
req GET /sim/tasks
NT=$(jv "$BODY" 'd["count"]')
createk k1 "$(mkbody "$WWW/in.png")"
eq "402: too few credits -> HTTP 200, code 402 Insufficient credits" "$CODE $(jv "$BODY" 'd["code"], d["msg"]')" \
   "200 (402, 'Insufficient credits')"
req GET /sim/tasks
eq "402: no task made, balance kept" "$(jv "$BODY" 'd["count"]') $(balance k1)" "$NT 1"
createk k2 "$(mkbody "$WWW/in.png")"
eq "402: another key with credits still works" "$(jv "$BODY" 'd["code"]') $(balance k2)" "200 15"
req GET /sim/tasks
eq "tasks: apiKeyIndex and creditsCharged" \
   "$(jv "$BODY" 't=d["tasks"][-1]; t["apiKeyIndex"], t["creditsCharged"], t["creditsRefunded"]')" "(1, 5, False)"

# a running task has no creditsConsumed yet; failed ones give their credits back
config '{"step_ms":60000}'
createk k2 "$(mkbody "$WWW/in.png")"
TR=$(jv "$BODY" 'd["data"]["taskId"]')
recordk k2 "$TR"
eq "record: running task has creditsConsumed null" "$(jv "$BODY" 'd["data"]["state"], d["data"]["creditsConsumed"]')" "('waiting', None)"
config '{"step_ms":0,"outcome":"fail"}'
B0=$(balance k2)
CB="$LST/cb/credits" createk k2 "$(CB="$LST/cb/credits" mkbody "$WWW/in.png")"
TF=$(jv "$BODY" 'd["data"]["taskId"]')
waitk k2 "$TF"
eq "refund: failed task reports creditsConsumed 0" "$(jv "$BODY" 'd["data"]["state"], d["data"]["creditsConsumed"]')" "('fail', 0)"
eq "refund: its credits are back" "$(balance k2)" "$B0"
CBL=$(wait_cb "$TF") || CBL=""
eq "callback: carries creditsConsumed" "$(jv "$CBL" 'json.loads(d["body"])["data"]["creditsConsumed"]')" 0
config '{"refund_failed":0}'
createk k2 "$(mkbody "$WWW/in.png")"
TF2=$(jv "$BODY" 'd["data"]["taskId"]')
waitk k2 "$TF2"
eq "refund_failed 0: the failed task keeps its price" "$(jv "$BODY" 'd["data"]["creditsConsumed"]') $(balance k2)" "5 $((B0 - 5))"
config '{"outcome":"success","refund_failed":1}'
createk k2 "$(mkbody "$WWW/missing.png")"
TF3=$(jv "$BODY" 'd["data"]["taskId"]')
waitk k2 "$TF3"
eq "refund: a failed download gives the credits back too" "$(jv "$BODY" 'd["data"]["failCode"], d["data"]["creditsConsumed"]') $(balance k2)" \
   "('422', 0) $((B0 - 5))"

# the knobs
config '{"initial_credits":1000}'
eq "knob: setting initial_credits resets every balance" "$(balance k1) $(balance k2)" "1000 1000"
config '{"price_1k":0,"initial_credits":0}'
createk k1 "$(mkbody "$WWW/in.png")"
eq "knob: price_1k 0 makes 1K free (balance 0)" "$(jv "$BODY" 'd["code"]') $(balance k1)" "200 0"
createk k1 "$(RES=2K mkbody "$WWW/in.png")"
eq "knob: ... while 2K still costs" "$(jv "$BODY" 'd["code"]')" 402
config '{"reset":true}'
eq "knob: reset restores the start-up balances" "$(balance k1) $(balance k2)" "20 20"
for m in http500:500:- code455:200:455 code429:429:429 code401:200:401; do
    IFS=: read -r mode http code <<<"$m"
    config "{\"credit_mode\":\"$mode\"}"
    req GET /api/v1/chat/credit "" -H "Authorization: Bearer k1"
    eq "credit_mode $mode: HTTP $http" "$CODE" "$http"
    [ "$code" = - ] || eq "credit_mode $mode: code $code" "$(jv "$BODY" 'd["code"]')" "$code"
done
config '{"credit_mode":"hang"}'
curl -s -m 0.5 -o /dev/null -H "Authorization: Bearer k1" "$S/api/v1/chat/credit"
eq "credit_mode hang: client times out" "$?" 28
config '{"credit_mode":"http500","credit_mode_times":1}'
req GET /api/v1/chat/credit "" -H "Authorization: Bearer k1"; c1=$CODE
req GET /api/v1/chat/credit "" -H "Authorization: Bearer k1"; c2=$CODE
eq "credit_mode_times 1: 500 once, then normal" "$c1 $c2" "500 200"
config '{"reset":true}'
req DELETE /sim/requests
balance k2 >/dev/null
req GET /sim/requests
eq "log: credit requests are logged" "$(jv "$BODY" '[(r["method"], r["auth_ok"]) for r in d["requests"] if r["path"]=="/api/v1/chat/credit"]')" \
   "[('GET', True)]"
stop_sim "$CR_PID" credits

start_sim credits-default
CD_PID=$SIM_PID
S="http://127.0.0.1:$SIM_PORT"
eq "default: test-key starts with 100000000 credits" "$(balance "$KEY")" 100000000
req GET /sim/config
eq "default: prices 5 (1K) and 7 (2K), refunds on" "$(jv "$BODY" 'd["price_1k"], d["price_2k"], d["refund_failed"]')" "(5, 7, 1)"
stop_sim "$CD_PID" credits-default
"$SIM" --api-key 1 --api-key 2 --api-key 3 --api-key 4 --api-key 5 --api-key 6 --api-key 7 --api-key 8 --api-key 9 >/dev/null 2>&1
eq "cli: a 9th --api-key -> exit 2" "$?" 2
