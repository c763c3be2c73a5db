# KIE's file-upload API in kie-sim: sourced by test_kie_sim.sh (uses its
# helpers, fixtures and counters). Stream, base64 and URL uploads, KIE's
# validation and answers, both answer shapes, the failure modes, the store's
# bounds and expiry, and a createTask that fetches an uploaded file.

start_sim upload --step-ms 20
UP_PID=$SIM_PID
S="http://127.0.0.1:$SIM_PORT"
AH=(-H "Authorization: Bearer $KEY")
PNG_SIZE=$(stat -c %s "$T/www/in.png")
up_stream() { req POST /api/file-stream-upload "" "${AH[@]}" "$@"; }
up_json() { req POST "/api/file-$1-upload" "$2" "${AH[@]}" -H "Content-Type: application/json"; }
# up_err NAME HTTP CODE MSG: the last answer is KIE's upload error envelope
up_err() {
    eq "$1: HTTP $2" "$CODE" "$2"
    eq "$1: success false, code $3" "$(jv "$BODY" 'd["success"], d["code"]')" "(False, $3)"
    has "$1: msg" "$(jv "$BODY" 'd["msg"]')" "$4"
}
ISO_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$'
echo "# upload: kie-sim on $SIM_PORT"

# ------------------------------------------------------ file-stream-upload
up_stream -F "file=@$T/www/in.png" -F uploadPath=images/user-uploads -F fileName=my-image.png
eq "stream: HTTP 200, success, code 200, msg" "$CODE $(jv "$BODY" 'd["success"], d["code"], d["msg"]')" \
   "200 (True, 200, 'File uploaded successfully')"
eq "stream: data has exactly the OpenAPI fields" "$(jv "$BODY" 'sorted(d["data"])')" \
   "['downloadUrl', 'fileName', 'filePath', 'fileSize', 'mimeType', 'uploadedAt']"
eq "stream: fileName, filePath, fileSize, mimeType" \
   "$(jv "$BODY" 'x=d["data"]; (x["fileName"], x["filePath"], x["fileSize"], x["mimeType"])')" \
   "('my-image.png', 'images/user-uploads/my-image.png', $PNG_SIZE, 'image/png')"
check "stream: uploadedAt is ISO 8601 UTC with ms" grep -Eq "$ISO_RE" <<<"$(jv "$BODY" 'd["data"]["uploadedAt"]')"
DL=$(jv "$BODY" 'd["data"]["downloadUrl"]')
eq "stream: downloadUrl on the sim's own host" "$DL" "$S/kie-files/images/user-uploads/my-image.png"
curl -s -m 5 -o "$T/got.png" -D "$T/got.hdr" "$DL"
check "stream: downloadUrl serves the same bytes" cmp -s "$T/got.png" "$T/www/in.png"
has "stream: downloadUrl content-type" "$(tr -d '\r' <"$T/got.hdr")" "Content-Type: image/png"
eq "stream: downloadUrl needs no key (like KIE's CDN)" "$(curl -s -m 5 -o /dev/null -w '%{http_code}' -I "$DL")" 200

up_stream -F "file=@$T/www/in.jpg" -F uploadPath=images
check "stream: no fileName -> random hex name with the type's extension" \
   grep -Eq '^[0-9a-f]{16}\.jpg$' <<<"$(jv "$BODY" 'd["data"]["fileName"]')"
eq "stream: JPEG mimeType sniffed" "$(jv "$BODY" 'd["data"]["mimeType"]')" image/jpeg

# a createTask whose input is the uploaded file: the sim fetches its own downloadUrl
req DELETE /sim/requests
create "$(mkbody "$DL")"
TIDU=$(jv "$BODY" 'd["data"]["taskId"]')
wait_state "$TIDU"
eq "stream: createTask with the downloadUrl as input succeeds" "$(jv "$BODY" 'd["data"]["state"]')" success
req GET /sim/requests
eq "stream: the task fetched the downloadUrl from the sim" \
   "$(jv "$BODY" '[r["method"] for r in d["requests"] if r["path"]=="/kie-files/images/user-uploads/my-image.png"]')" "['GET']"

# same uploadPath + fileName: the new file replaces the old one
req GET /sim/files
N_FILES=$(jv "$BODY" 'd["count"]')
up_stream -F "file=@$T/www/in.webp" -F uploadPath=images/user-uploads -F fileName=my-image.png
curl -s -m 5 -o "$T/got2" "$DL"
check "stream: same name overwrites (new bytes served)" cmp -s "$T/got2" "$T/www/in.webp"
req GET /sim/files
eq "stream: overwrite keeps the file count" "$(jv "$BODY" 'd["count"]')" "$N_FILES"

up_stream -F "file=@$T/www/in.png" -F uploadPath=/images
up_err "stream: uploadPath with leading /" 400 400 "uploadPath must not start or end with '/'"
up_stream -F "file=@$T/www/in.png" -F uploadPath=images/
up_err "stream: uploadPath with trailing /" 400 400 "uploadPath must not start or end with '/'"
up_stream -F "file=@$T/www/in.png" -F uploadPath=a/../b
up_err "stream: uploadPath with .." 400 400 "'..' segment"
up_stream -F "file=@$T/www/in.png"
up_err "stream: no uploadPath" 400 400 "Missing required parameter: uploadPath"
up_stream -F uploadPath=images
up_err "stream: no file" 400 400 "Missing required parameter: file"
up_stream -F "file=@$T/www/in.png" -F uploadPath=images -F fileName=a/b.png
up_err "stream: fileName with /" 400 400 "Invalid parameter: fileName"
req POST /api/file-stream-upload '{"uploadPath":"images"}' "${AH[@]}" -H "Content-Type: application/json"
up_err "stream: a JSON body has no file" 400 400 "Missing required parameter: file"
req POST /api/file-stream-upload "" -F "file=@$T/www/in.png" -F uploadPath=images
up_err "stream: no key" 401 401 "Authentication failed: Invalid API Key"
req POST /api/file-stream-upload "" -H "Authorization: Bearer nope" -F "file=@$T/www/in.png" -F uploadPath=images
up_err "stream: wrong key" 401 401 "Authentication failed: Invalid API Key"
req GET /api/file-stream-upload
up_err "stream: GET" 405 405 "Method not allowed"

# ------------------------------------------------------ file-base64-upload
B64=$(base64 -w0 "$T/www/in.png")
up_json base64 "{\"base64Data\":\"$B64\",\"uploadPath\":\"images/base64\",\"fileName\":\"raw.png\"}"
eq "base64: raw base64 accepted" "$CODE $(jv "$BODY" 'd["code"], d["data"]["fileSize"], d["data"]["mimeType"]')" \
   "200 (200, $PNG_SIZE, 'image/png')"
curl -s -m 5 -o "$T/got3" "$(jv "$BODY" 'd["data"]["downloadUrl"]')"
check "base64: decoded bytes served" cmp -s "$T/got3" "$T/www/in.png"
up_json base64 "{\"base64Data\":\"data:image/png;base64,$B64\",\"uploadPath\":\"images/base64\",\"fileName\":\"a b.png\"}"
eq "base64: data: URL accepted, name percent-encoded in downloadUrl" "$(jv "$BODY" 'd["data"]["downloadUrl"]')" \
   "$S/kie-files/images/base64/a%20b.png"
eq "base64: that downloadUrl is served" "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$S/kie-files/images/base64/a%20b.png")" 200
up_json base64 '{"base64Data":"data:text/plain;base64,aGVsbG8=","uploadPath":"docs"}'
eq "base64: declared type kept for unknown content, random .txt name" \
   "$(jv "$BODY" 'd["data"]["mimeType"], d["data"]["fileName"].endswith(".txt"), d["data"]["fileSize"]')" "('text/plain', True, 5)"
up_json base64 '{"base64Data":"!!!notbase64","uploadPath":"images"}'
up_err "base64: not base64" 400 400 "Base64 decoding failed: Invalid Base64 format"
up_json base64 '{"base64Data":"data:image/png,AAAA","uploadPath":"images"}'
up_err "base64: data: URL without ;base64" 400 400 "Base64 decoding failed: Invalid Base64 format"
up_json base64 '{"base64Data":"aGVsbG8=","uploadPath":"images/"}'
up_err "base64: trailing / in uploadPath" 400 400 "must not start or end with '/'"
up_json base64 '{"uploadPath":"images"}'
up_err "base64: no base64Data" 400 400 "Missing required parameter: base64Data"
up_json base64 '{"base64Data":"aGVsbG8="}'
up_err "base64: no uploadPath" 400 400 "Missing required parameter: uploadPath"
up_json base64 '{"base64Data":"aGVsbG8=","uploadPath":7}'
up_err "base64: uploadPath not a string" 400 400 "uploadPath must be a string"
up_json base64 'not json'
up_err "base64: not JSON" 400 400 "expected a JSON object"

# -------------------------------------------------------- file-url-upload
up_json url "{\"fileUrl\":\"$WWW/in.png\",\"uploadPath\":\"from/url\"}"
eq "url: fetched, name from the URL" "$CODE $(jv "$BODY" 'd["data"]["fileName"], d["data"]["fileSize"], d["data"]["mimeType"]')" \
   "200 ('in.png', $PNG_SIZE, 'image/png')"
up_json url "{\"fileUrl\":\"$WWW/in.webp\",\"uploadPath\":\"from/url\",\"fileName\":\"renamed.webp\"}"
eq "url: fileName wins" "$(jv "$BODY" 'd["data"]["fileName"], d["data"]["mimeType"]')" "('renamed.webp', 'image/webp')"
up_json url "{\"fileUrl\":\"$LST/redirect-in\",\"uploadPath\":\"from/url\"}"
eq "url: loopback redirect followed" "$(jv "$BODY" 'd["data"]["fileSize"]')" "$PNG_SIZE"
up_json url '{"fileUrl":"http://10.255.255.1/x.png","uploadPath":"from/url"}'
up_err "url: non-loopback host refused" 400 400 "File download failed: fileUrl http://10.255.255.1/x.png is not reachable"
up_json url "{\"fileUrl\":\"$LST/redirect-out\",\"uploadPath\":\"from/url\"}"
up_err "url: redirect to non-loopback refused" 400 400 "is not reachable"
up_json url "{\"fileUrl\":\"$WWW/missing.png\",\"uploadPath\":\"from/url\"}"
up_err "url: 404" 400 400 "could not be downloaded: HTTP 404"
up_json url '{"fileUrl":"ftp://127.0.0.1/x.png","uploadPath":"from/url"}'
up_err "url: not http(s)" 400 400 "fileUrl must be an http or https URL"
up_json url '{"uploadPath":"from/url"}'
up_err "url: no fileUrl" 400 400 "Missing required parameter: fileUrl"
up_json url "{\"fileUrl\":\"$WWW/in.png\"}"
up_err "url: no uploadPath" 400 400 "Missing required parameter: uploadPath"

# ------------------------------------------------------------ size limits
config "{\"upload_max_bytes\":$((PNG_SIZE - 1)),\"upload_base64_max_bytes\":$((PNG_SIZE - 1))}"
up_stream -F "file=@$T/www/in.png" -F uploadPath=images
up_err "limit: stream file 1 byte over upload_max_bytes" 400 400 "File size exceeds the limit of $((PNG_SIZE - 1)) bytes"
up_json url "{\"fileUrl\":\"$WWW/in.png\",\"uploadPath\":\"from/url\"}"
up_err "limit: url file 1 byte over upload_max_bytes" 400 400 "is larger than $((PNG_SIZE - 1)) bytes"
up_json base64 "{\"base64Data\":\"$B64\",\"uploadPath\":\"images\"}"
up_err "limit: base64 decoded 1 byte over upload_base64_max_bytes" 400 400 "File size exceeds the limit of $((PNG_SIZE - 1)) bytes"
config "{\"upload_max_bytes\":$PNG_SIZE,\"upload_base64_max_bytes\":$PNG_SIZE}"
up_stream -F "file=@$T/www/in.png" -F uploadPath=images
eq "limit: stream file of exactly upload_max_bytes accepted" "$CODE" 200
up_json base64 "{\"base64Data\":\"$B64\",\"uploadPath\":\"images\"}"
eq "limit: base64 file of exactly upload_base64_max_bytes accepted" "$CODE" 200
"$PY" -c 'print("{\"base64Data\":\"" + "A"*200000 + "\",\"uploadPath\":\"x\"}")' >"$T/big64.json"
req POST /api/file-base64-upload "@$T/big64.json" "${AH[@]}" -H "Content-Type: application/json"
up_err "limit: base64 body over the cap, refused before reading" 400 400 "request body is larger than"
config '{"reset":true}'
head -c 150000 /dev/urandom >"$T/rand150k.bin"
up_stream -F "file=@$T/rand150k.bin" -F uploadPath=blobs -F fileName=r.bin
eq "limit: 150 KB binary stream upload fits the default" \
   "$CODE $(jv "$BODY" 'd["data"]["fileSize"], d["data"]["mimeType"]')" "200 (150000, 'application/octet-stream')"
curl -s -m 5 -o "$T/got4" "$S/kie-files/blobs/r.bin"
check "limit: 150 KB file served byte for byte" cmp -s "$T/got4" "$T/rand150k.bin"

# ------------------------------------------------------- quickstart shape
config '{"upload_shape":"quickstart"}'
up_stream -F "file=@$T/www/in.png" -F uploadPath=images/qs -F fileName=q.png
eq "quickstart: data has the quickstart fields" "$(jv "$BODY" 'sorted(d["data"])')" \
   "['downloadUrl', 'expiresAt', 'fileId', 'fileName', 'fileSize', 'fileUrl', 'mimeType', 'originalName', 'uploadPath', 'uploadTime']"
QS=$BODY
eq "quickstart: fileUrl is the path URL, downloadUrl the fileId URL" \
   "$(jv "$QS" 'x=d["data"]; (x["fileUrl"], x["downloadUrl"] == "'"$S"'/kie-download/" + x["fileId"], x["originalName"], x["uploadPath"])')" \
   "('$S/kie-files/images/qs/q.png', True, 'in.png', 'images/qs')"
eq "quickstart: expiresAt is 3 days after uploadTime" \
   "$(jv "$QS" 'import datetime as t; f=lambda s: t.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ"); x=d["data"]; (f(x["expiresAt"]) - f(x["uploadTime"])).total_seconds()')" 259200.0
curl -s -m 5 -o "$T/got5" "$(jv "$QS" 'd["data"]["downloadUrl"]')"
check "quickstart: downloadUrl serves the file" cmp -s "$T/got5" "$T/www/in.png"
create "$(mkbody "$(jv "$QS" 'd["data"]["downloadUrl"]')")"
TIDQ=$(jv "$BODY" 'd["data"]["taskId"]')
wait_state "$TIDQ"
eq "quickstart: createTask with that downloadUrl succeeds" "$(jv "$BODY" 'd["data"]["state"]')" success
config '{"upload_shape":"openapi"}'

# ------------------------------------------------------------ upload modes
UPB64="{\"base64Data\":\"$B64\",\"uploadPath\":\"modes\"}"
config '{"upload_mode":"http401"}'
up_json base64 "$UPB64"
up_err "upload_mode http401" 401 401 "Authentication failed: Invalid API Key"
config '{"upload_mode":"http500"}'
up_stream -F "file=@$T/www/in.png" -F uploadPath=modes
up_err "upload_mode http500" 500 500 "Internal server error"
config '{"upload_mode":"code500"}'
up_json url "{\"fileUrl\":\"$WWW/in.png\",\"uploadPath\":\"modes\"}"
up_err "upload_mode code500: success false in an HTTP 200" 200 500 "Internal server error"
config '{"upload_mode":"code400"}'
up_json base64 "$UPB64"
up_err "upload_mode code400: success false in an HTTP 200" 200 400 "simulated"
config '{"upload_mode":"nourl"}'
up_json base64 "$UPB64"
eq "upload_mode nourl: success without downloadUrl" \
   "$CODE $(jv "$BODY" 'd["success"], d["code"], "downloadUrl" in d["data"], d["data"]["fileName"] != ""')" "200 (True, 200, False, True)"
config '{"upload_mode":"nonjson"}'
up_json base64 "$UPB64"
has "upload_mode nonjson: HTML body" "$BODY" "<html>"
config '{"upload_mode":"reset"}'
up_json base64 "$UPB64"
check "upload_mode reset: no answer (curl rc $CURL_RC)" test "$CURL_RC" = 52 -o "$CURL_RC" = 56
config '{"upload_mode":"hang"}'
t0=$(now_ms)
curl -s -m 1 -o /dev/null "${AH[@]}" -F "file=@$T/www/in.png" -F uploadPath=modes "$S/api/file-stream-upload"
rc=$?
eq "upload_mode hang: client times out (curl rc 28)" "$rc" 28
check "upload_mode hang: held for the client's timeout ($(( $(now_ms) - t0 )) ms)" test $(( $(now_ms) - t0 )) -ge 950
config '{"upload_mode":"http500","upload_mode_times":1}'
up_json base64 "$UPB64"; c1=$CODE
up_json base64 "$UPB64"; c2=$CODE
eq "upload_mode_times 1: 500 once, then normal" "$c1 $c2" "500 200"
config '{"reset":true}'

# ------------------------------------------------------------ request log
req DELETE /sim/requests
up_stream -F "file=@$T/www/in.png" -F uploadPath=log -F fileName=l.png
up_json base64 "{\"base64Data\":\"$B64$B64$B64\",\"uploadPath\":\"log\"}"
req GET /sim/requests
eq "log: stream upload logged with its form fields" \
   "$(jv "$BODY" 'r=[r for r in d["requests"] if r["path"]=="/api/file-stream-upload"][0]; (r["method"], r["auth_ok"], r["body"]["uploadPath"], r["body"]["fileName"], r["body"]["file"]["filename"], r["body"]["file"]["bytes"])')" \
   "('POST', True, 'log', 'l.png', 'in.png', $PNG_SIZE)"
eq "log: base64 upload logged, base64Data shortened" \
   "$(jv "$BODY" 'r=[r for r in d["requests"] if r["path"]=="/api/file-base64-upload"][0]; (r["body"]["uploadPath"], r["body"]["base64Data"].endswith("...(%d bytes)" % ('"${#B64}"' * 3)), len(r["body"]["base64Data"]) < 100)')" \
   "('log', True, True)"

# ---------------------------------------------------------------- expiry
config '{"upload_ttl_ms":1500}'
up_stream -F "file=@$T/www/in.png" -F uploadPath=ttl -F fileName=t.png
eq "ttl: served right after upload" "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$S/kie-files/ttl/t.png")" 200
sleep 1.6
eq "ttl: 404 after upload_ttl_ms" "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$S/kie-files/ttl/t.png")" 404
config '{"reset":true}'
eq "files: unknown path -> 404" "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$S/kie-files/nope/x.png")" 404
eq "files: unknown fileId -> 404" "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$S/kie-download/file_0")" 404
req DELETE /sim/files
req GET /sim/files
eq "files: DELETE /sim/files empties the store" "$(jv "$BODY" 'd["count"], d["bytes"]')" "(0, 0)"
stop_sim "$UP_PID" upload

# ------------------------------------------------------- store bounds
start_sim upload-cap --files-max-count 2 --files-max-bytes $((PNG_SIZE * 3))
CAP_PID=$SIM_PID
S="http://127.0.0.1:$SIM_PORT"
for n in 1 2 3; do up_stream -F "file=@$T/www/in.png" -F uploadPath=cap -F "fileName=$n.png"; done
eq "store: --files-max-count 2 drops the oldest" \
   "$(for n in 1 2 3; do curl -s -m 5 -o /dev/null -w '%{http_code} ' "$S/kie-files/cap/$n.png"; done)" "404 200 200 "
up_stream -F "file=@$T/www/big.png" -F uploadPath=cap
up_err "store: a file larger than --files-max-bytes" 500 500 "Internal server error"
stop_sim "$CAP_PID" upload-cap

mkdir -p "$T/files"
start_sim upload-dir --files-dir "$T/files"
DIR_PID=$SIM_PID
S="http://127.0.0.1:$SIM_PORT"
up_stream -F "file=@$T/www/in.png" -F uploadPath=d -F fileName=../../escape.png
up_err "dir: fileName with .. refused" 400 400 "Invalid parameter: fileName"
up_stream -F "file=@$T/www/in.png" -F uploadPath=d -F fileName=d.png
eq "dir: one file of ours in --files-dir" "$(ls "$T/files" | grep -c '^kie-sim-.*\.bin$')" 1
curl -s -m 5 -o "$T/got6" "$S/kie-files/d/d.png"
check "dir: served from the directory" cmp -s "$T/got6" "$T/www/in.png"
req GET /sim/files
eq "dir: /sim/files reports directory storage" "$(jv "$BODY" 'd["storage"], d["count"]')" "('directory', 1)"
stop_sim "$DIR_PID" upload-dir
eq "dir: files removed at exit" "$(ls -A "$T/files" | wc -l)" 0
"$SIM" --files-dir "$T/no-such-dir" >/dev/null 2>&1
eq "dir: a missing --files-dir -> exit 2" "$?" 2
