#!/usr/bin/env python3
"""One request per connection, CONCURRENCY at a time, for SECONDS (loopback benchmarks).

wrk refuses a request that does not start with an HTTP method, so the PROXY protocol case
(benches/features-load.sh) is driven from here; the paired case without the header uses this
client too. Prints wrk's summary lines the scripts read: "N requests in S s" and, when any,
"Non-2xx or 3xx responses: K".

With --tls SNI each connection is a new TLS handshake sending that server name (no
certificate check): benches/passthrough.sh.

Usage: conn-per-request.py PORT HOST SECONDS CONCURRENCY [--proxy-v1] [--tls SNI]
"""
import asyncio
import ssl
import sys
import time


async def worker(port, payload, deadline, counts, tls):
    while time.monotonic() < deadline:
        try:
            if tls:
                ctx, sni = tls
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=ctx, server_hostname=sni)
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(payload)
            await writer.drain()
            data = await reader.read()  # until the server closes (Connection: close)
            writer.close()
        except (OSError, ssl.SSLError):
            counts["errors"] += 1
            continue
        counts["n"] += 1
        if not data.startswith(b"HTTP/1.1 2"):
            counts["bad"] += 1


async def main():
    port, host, secs, conc = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    payload = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    if "--proxy-v1" in sys.argv[5:]:
        payload = b"PROXY TCP4 10.0.0.1 127.0.0.1 1234 80\r\n" + payload
    tls = None
    if "--tls" in sys.argv[5:]:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        tls = (ctx, sys.argv[sys.argv.index("--tls") + 1])
    counts = {"n": 0, "bad": 0, "errors": 0}
    start = time.monotonic()
    deadline = start + secs
    await asyncio.gather(*(worker(port, payload, deadline, counts, tls) for _ in range(conc)))
    print(f"  {counts['n']} requests in {time.monotonic() - start:.2f}s")
    if counts["bad"] or counts["errors"]:
        print(f"  Non-2xx or 3xx responses: {counts['bad'] + counts['errors']}")


asyncio.run(main())
