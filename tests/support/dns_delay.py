"""A UDP relay that holds each DNS query back by a fixed time before passing it on: the
round trip to authoritative servers on the internet, for benchmarks of a local resolver
whose authoritative server is on loopback. Only ever relays 127.0.0.1 to 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, reply: asyncio.DatagramTransport, client: tuple[str, int],
                 done: asyncio.Future[None]) -> None:
        self.reply, self.client, self.done = reply, client, done

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.reply.sendto(data, self.client)
        if not self.done.done():
            self.done.set_result(None)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, target: int, delay: float) -> None:
        self.target, self.delay = target, delay
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Future[None]] = set()  # kept until done (tasks are weak)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        asyncio.get_running_loop().call_later(self.delay, self._forward, data, addr)

    def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        async def go() -> None:
            assert self.transport is not None
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Upstream(self.transport, addr, done),  # type: ignore[arg-type]
                remote_addr=("127.0.0.1", self.target))
            try:
                transport.sendto(data)
                # No answer by then: the resolver has given up too.
                await asyncio.wait([done], timeout=5)
            finally:
                transport.close()

        task = asyncio.ensure_future(go())
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)


@contextmanager
def delayed_udp(target_port: int, delay: float, port: int = 0) -> Iterator[int]:
    """Relay 127.0.0.1:PORT (yielded; `port` when given) to 127.0.0.1:target_port, `delay`
    seconds later."""
    loop = asyncio.new_event_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    port = int(sock.getsockname()[1])
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(loop.create_datagram_endpoint(
            lambda: _Listener(target_port, delay), sock=sock))
        ready.set()
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=serve, name="dns-delay", daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        sock.close()
