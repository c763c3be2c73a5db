#!/usr/bin/python3
"""slow_kie.py [--port N] [--delay-ms MS] -- a fake KIE upstream that answers after a fixed delay.

Asyncio, stdlib only, HTTP/1.1 keep-alive, one coroutine per connection (no thread per request), so
hundreds of requests can wait at the same time. Answers createTask and recordInfo with fixed JSON
after --delay-ms (default 1000), 401 without "Authorization: Bearer <something>", 404 elsewhere;
GET / answers 204 at once (readiness probe). Binds 127.0.0.1 only; prints "slow-kie listening on port N".
"""
import argparse
import asyncio
import sys

CREATE = (b'{"code":200,"msg":"success","data":{"taskId":"task_flux-2_1765174753676",'
          b'"recordId":"task_flux-2_1765174753676"}}')
RECORD = (b'{"code":200,"message":"success","data":{"taskId":"task_flux-2_1765174753676",'
          b'"model":"flux-2/pro-image-to-image","state":"success","param":"{}",'
          b'"resultJson":"{\\"resultUrls\\":[\\"https://tempfile.aiquickdraw.com/h/bench.png\\"]}",'
          b'"failCode":"","failMsg":"","costTime":8,"completeTime":1765174761676,'
          b'"createTime":1765174753676,"updateTime":1765174761676}}')
MAX_HEAD = 65536


def response(status: int, body: bytes) -> bytes:
    reason = {200: b"OK", 204: b"No Content", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found"}[status]
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
        status, reason, len(body))
    return head + body


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                writer.write(response(400, b"{}"))
                return
            method, target = parts[0], parts[1]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0") or "0")
            if length:
                await reader.readexactly(length)
            path = target.split("?", 1)[0]
            if method == "GET" and path == "/":
                writer.write(response(204, b""))
            elif path in ("/api/v1/jobs/createTask", "/api/v1/jobs/recordInfo"):
                if not headers.get("authorization", "").startswith("Bearer ") or \
                        len(headers.get("authorization", "")) <= 7:
                    writer.write(response(401, b'{"code":401,"msg":"You do not have access permissions"}'))
                else:
                    await asyncio.sleep(delay)
                    writer.write(response(200, CREATE if path.endswith("createTask") else RECORD))
            else:
                writer.write(response(404, b'{"code":404,"msg":"Not found"}'))
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay-ms", type=int, default=1000)
    args = ap.parse_args()
    delay = args.delay_ms / 1000.0
    server = await asyncio.start_server(lambda r, w: serve(r, w, delay), "127.0.0.1", args.port,
                                        backlog=4096, limit=MAX_HEAD)
    port = server.sockets[0].getsockname()[1]
    print(f"slow-kie listening on port {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
