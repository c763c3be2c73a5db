#!/usr/bin/python3
"""burst.py URL N [TIMEOUT_S] -- send N GET requests at once, each on its own connection; time them all.

Stdlib asyncio client (127.0.0.1 URLs only). Opens all N connections, sends one request on each,
reads each answer (Content-Length bodies), and prints one line:
  BURST n=N ok=<2xx> non2xx=<other status> errors=<failed> wall_s=<first send to last answer>
        p50_s=.. max_s=..
Exit status 0 even when requests fail: the caller judges the numbers.
"""
import asyncio
import sys
import time
from urllib.parse import urlsplit


async def one(host: str, port: int, target: str, timeout: float, start: asyncio.Event, ready: list) -> tuple:
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        ready[0] += 1
        return ("error", 0.0)
    ready[0] += 1
    try:
        await start.wait()
        t0 = time.monotonic()
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await asyncio.wait_for(reader.readexactly(length), timeout)
        return ("ok" if 200 <= status < 300 else "non2xx", time.monotonic() - t0)
    except (OSError, ValueError, IndexError, asyncio.TimeoutError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError):
        return ("error", time.monotonic() - t0)
    finally:
        writer.close()


async def main() -> None:
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    url = urlsplit(sys.argv[1])
    n = int(sys.argv[2])
    timeout = float(sys.argv[3]) if len(sys.argv) == 4 else 60.0
    if url.hostname != "127.0.0.1":
        sys.exit("burst.py: 127.0.0.1 URLs only")
    target = url.path + ("?" + url.query if url.query else "")
    start = asyncio.Event()
    ready = [0]                     # connections opened (or failed) so far
    tasks = [asyncio.create_task(one(url.hostname, url.port or 80, target, timeout, start, ready))
             for _ in range(n)]
    for _ in range(500):            # connect everything first (at most 5 s), then send all requests at once
        await asyncio.sleep(0.01)
        if ready[0] >= n:
            break
    t0 = time.monotonic()
    start.set()
    results = await asyncio.gather(*tasks)
    wall = time.monotonic() - t0
    lat = sorted(d for kind, d in results if kind != "error")
    count = {k: sum(1 for kind, _ in results if kind == k) for k in ("ok", "non2xx", "error")}
    p50 = lat[len(lat) // 2] if lat else 0.0
    mx = lat[-1] if lat else 0.0
    print(f"BURST n={n} ok={count['ok']} non2xx={count['non2xx']} errors={count['error']} "
          f"wall_s={wall:.2f} p50_s={p50:.2f} max_s={mx:.2f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
