"""Echo and minimal HTTP servers for the network benchmarks, one loop and one kind per process.

    python bench/net/server.py --loop asyncio|uvloop|rloop|goloop
                               --kind protocol|buffered|streams|sock|http [--port 0]
    python bench/net/server.py --loop goloop --probe

Prints ``READY <port>`` on stdout once listening (with ``--port 0``, the port the kernel chose)
and serves until killed. If the loop cannot serve this kind, prints ``ERROR <reason>`` instead
and exits 1, so ``bench/net/run.py`` reports the cell as failed with that reason. ``--probe``
imports the loop, runs one trivial coroutine on it and prints ``{"version": ...}``.

Kinds, all on 127.0.0.1:

- ``protocol``: ``asyncio.Protocol``, ``data_received`` -> ``transport.write``.
- ``buffered``: ``asyncio.BufferedProtocol`` reading into one server-wide 256 KiB buffer;
  ``buffer_updated`` writes a copy of the bytes read (the buffer is reused by the next read).
- ``streams``: ``asyncio.start_server``; ``reader.read`` / ``writer.write`` / ``await
  writer.drain()``.
- ``sock``: ``loop.sock_accept`` / ``loop.sock_recv`` / ``loop.sock_sendall`` on non-blocking
  sockets, one task per connection.
- ``http``: HTTP/1.1 keep-alive as a Protocol: every request (everything up to ``\\r\\n\\r\\n``;
  request bodies are not supported) gets the same small 200 response. Requests that arrive in
  one chunk (pipelining) are answered with one write, in order.

No event loop policy: each loop comes from its own factory through
``asyncio.Runner(loop_factory=...)``.
"""

import argparse
import asyncio
import json
import os
import resource
import socket
import sys
import traceback

# goloop lives in the repository root, two levels above this file.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

HOST = "127.0.0.1"

# Large enough that 1000 (or 10,000) clients dialling at once are not dropped and retried a
# second later; the kernel caps it at net.core.somaxconn (4096 on current kernels).
BACKLOG = 4096

# One read's worth for the kinds that choose their own read size. 64 KiB is what a loopback
# read returns at most in practice; transports (protocol, http) read up to 256 KiB on their own.
READ_SIZE = 64 * 1024

HTTP_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
                 b"Hello, World!")


# --- loop factories --------------------------------------------------------------------------

def _factory(name):
    if name == "asyncio":
        return asyncio.SelectorEventLoop
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop
    if name == "rloop":
        import rloop
        return rloop.new_event_loop
    if name == "goloop":
        import goloop
        return goloop.new
    raise ValueError(f"unknown loop {name!r}")


LOOPS = ("asyncio", "uvloop", "rloop", "goloop")


def _version(name):
    if name == "asyncio":
        return "stdlib " + sys.version.split()[0]
    return str(getattr(sys.modules.get(name), "__version__", "unknown"))


# --- servers ---------------------------------------------------------------------------------

class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class EchoBufferedProtocol(asyncio.BufferedProtocol):
    # One buffer for the whole server: a read fills it and buffer_updated copies the bytes out
    # before the loop can read again, so connections never see each other's data. A buffer per
    # connection would cost 256 KiB each and dominate the idle-connection RSS row.
    buffer = bytearray(256 * 1024)

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        # A bytearray slice is a copy, as it must be: the transport may keep what it could
        # not send right away, and the next read overwrites the buffer.
        self.transport.write(self.buffer[:nbytes])


class HttpProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.pending = b""

    def data_received(self, data):
        if self.pending:
            data = self.pending + data
        # Fast path first: one complete request per chunk, as a keep-alive client sends them.
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.pending = data
            return
        count, start = 0, 0
        while end >= 0:
            count += 1
            start = end + 4
            end = data.find(b"\r\n\r\n", start)
        self.pending = data[start:]
        self.transport.write(HTTP_RESPONSE * count)


async def _handle_stream(reader, writer):
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the client closed first; nothing to report
    finally:
        writer.close()


async def _handle_sock(loop, conn):
    try:
        while data := await loop.sock_recv(conn, READ_SIZE):
            await loop.sock_sendall(conn, data)
    except ConnectionError:
        pass
    finally:
        conn.close()


async def _serve_sock(port, ready):
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    # Announce READY only once the first sock_accept is waiting: a loop without sock_accept
    # then fails before READY, like one without create_server.
    accept = asyncio.ensure_future(loop.sock_accept(sock))
    await asyncio.sleep(0)
    if accept.done():
        accept.result()  # raises what the loop raised
    ready(sock.getsockname()[1])
    tasks = set()  # strong references: the loop holds tasks only weakly
    while True:
        conn, _ = await accept
        accept = asyncio.ensure_future(loop.sock_accept(sock))
        conn.setblocking(False)
        # Transports set TCP_NODELAY on their own; a bare socket must ask, or Nagle delays
        # the second write of a large echo until the client's ACK.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = loop.create_task(_handle_sock(loop, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def serve(kind, port, ready):
    loop = asyncio.get_running_loop()
    if kind == "sock":
        await _serve_sock(port, ready)
        return
    if kind == "streams":
        server = await asyncio.start_server(_handle_stream, HOST, port, backlog=BACKLOG)
    else:
        protocol = {"protocol": EchoProtocol, "buffered": EchoBufferedProtocol,
                    "http": HttpProtocol}[kind]
        server = await loop.create_server(protocol, HOST, port, backlog=BACKLOG)
    ready(server.sockets[0].getsockname()[1])
    # Not server.serve_forever(): on rloop 0.5 it starts serving a second time, and the
    # listening socket stops accepting. The server already serves; just never return.
    async with server:
        await loop.create_future()


KINDS = ("protocol", "buffered", "streams", "sock", "http")


# --- process setup ---------------------------------------------------------------------------

def raise_nofile(want=65536):
    """Make room for the 10,000-connection row: soft limit up to the hard one, and the hard
    one up to want where we may (root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            pass
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _reason(exc):
    """One line naming the exception and where it came from, e.g.
    'NotImplementedError in create_server (events.py:316)'."""
    text = type(exc).__name__ + (f": {exc}" if str(exc) else "")
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        frame = tb[-1]
        text += f" in {frame.name} ({os.path.basename(frame.filename)}:{frame.lineno})"
    return text.replace("\n", " ")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", required=True, choices=LOOPS)
    parser.add_argument("--kind", choices=KINDS, default="protocol")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--probe", action="store_true",
                        help="import the loop, run one coroutine, print its version as JSON")
    args = parser.parse_args(argv)

    try:
        factory = _factory(args.loop)
    except Exception as exc:
        _say(json.dumps({"error": f"cannot import {args.loop}: {_reason(exc)}"}) if args.probe
             else f"ERROR cannot import {args.loop}: {_reason(exc)}")
        return 1

    if args.probe:
        async def nothing():
            await asyncio.sleep(0)
        try:
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(nothing())
        except Exception as exc:
            _say(json.dumps({"error": f"{args.loop} does not run a coroutine: {_reason(exc)}"}))
            return 1
        _say(json.dumps({"version": _version(args.loop)}))
        return 0

    raise_nofile()
    listening = False

    def ready(port):
        nonlocal listening
        listening = True
        _say(f"READY {port}")

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(args.kind, args.port, ready))
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        # Also after READY: run.py looks for this line when a server dies mid-run.
        _say(f"ERROR {'while serving: ' if listening else ''}{_reason(exc)}")
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
