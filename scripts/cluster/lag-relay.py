#!/usr/bin/env python3
"""A TCP relay that hands on what the server sends only after a lag: the client node's kube-proxy
reaches the API server through it, so that the tests can make that kube-proxy learn of every
Service and EndpointSlice change late, as the kube-proxy of a node far from a busy API server
does, and see what a drain delay buys then.

    lag-relay.py LISTEN_HOST:PORT SERVER_HOST:PORT LAG_FILE

LAG_FILE holds the lag in milliseconds (no file, or anything that is not a number, is 0); it is
read as each chunk from the server arrives, so a lag written there applies to everything the
server sends after. Bytes from the client go on at once; bytes from the server are held until the
lag after they arrived, in order. TLS passes through untouched: the relay sees only bytes.
"""

import asyncio
import sys
import time

CHUNK = 65536


def lag_seconds(path):
    try:
        with open(path, encoding="ascii") as file:
            return max(0, int(file.read().strip() or 0)) / 1000
    except (OSError, ValueError):
        return 0.0


async def pipe(reader, writer):
    """Client to server: at once."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def lagged_pipe(reader, writer, lag_file):
    """Server to client: each chunk held until its arrival plus the lag at that moment."""
    queue = asyncio.Queue()

    async def receive():
        try:
            while data := await reader.read(CHUNK):
                await queue.put((time.monotonic() + lag_seconds(lag_file), data))
        finally:
            await queue.put((time.monotonic(), b""))

    receiving = asyncio.ensure_future(receive())
    try:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        receiving.cancel()
        writer.close()


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main():
    listen, server, lag_file = sys.argv[1:4]
    server_host, server_port = address(server)

    async def relay(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(server_host, server_port)
        except OSError:
            client_writer.close()
            return
        # Either side closing ends the connection: kube-proxy's connections are long-lived
        # HTTP/2, closed as a whole.
        directions = {
            asyncio.ensure_future(pipe(client_reader, server_writer)),
            asyncio.ensure_future(lagged_pipe(server_reader, client_writer, lag_file)),
        }
        _, pending = await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        server_writer.close()
        client_writer.close()

    host, port = address(listen)
    listener = await asyncio.start_server(relay, host, port, reuse_address=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    asyncio.run(main())
