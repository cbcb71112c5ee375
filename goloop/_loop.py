"""goloop.Loop: asyncio's event loop API over the Go core.

The native base (_goloop.LoopBase) owns scheduling: call_soon, the timers,
the ready queue, fd watching and the run step are in Go. This class adds the
orchestration asyncio writes in Python: run_forever's set-up, tasks and
futures, the exception handler, debug mode, async generators, executors and
signals. Where asyncio's own BaseEventLoop method needs nothing but the
attributes set in __init__, it is reused as is, so that messages, warnings
and per-version behaviour stay exactly asyncio's; the methods that touch
the selector, _ready or _scheduled are written here against the Go core.
"""

import asyncio
import contextvars
import errno
import inspect
import os
import signal
import sys
import threading
import time
import warnings
import weakref
import selectors
import socket
from asyncio import (
    base_events,
    constants,
    coroutines,
    events,
    format_helpers,
    futures,
    protocols,
    selector_events,
    sslproto,
    streams,
    tasks,
    trsock,
    unix_events,
)

from . import _goloop

__all__ = ("Loop",)

_Base = base_events.BaseEventLoop
_Selector = selector_events.BaseSelectorEventLoop
_Unix = unix_events._UnixSelectorEventLoop
_logger = base_events.logger

_FORMAT_HAS_DEBUG = "debug" in inspect.signature(format_helpers._format_callback_source).parameters
# Server._attach() and _detach() take the transport from 3.13 on; 3.12 added
# the fd check to _make_socket_transport.
_ATTACH_TAKES_TRANSPORT = sys.version_info >= (3, 13)
_CHECK_FD_ON_MAKE = sys.version_info >= (3, 12)
_SockOp = _goloop._SockOp
# _accept_connection takes up to backlog connections per readiness, and one
# more from 3.14 on.
_ACCEPTS_PER_ROUND_EXTRA = 1 if sys.version_info >= (3, 14) else 0
_iscoroutinefunction = getattr(coroutines, "_iscoroutinefunction", coroutines.iscoroutinefunction)


class Loop(_goloop.LoopBase, asyncio.AbstractEventLoop):
    """An asyncio event loop whose scheduling core is written in Go."""

    def __init__(self):
        # The attributes asyncio's BaseEventLoop.__init__ sets, for the
        # methods reused from it below.
        self._default_executor = None
        self._thread_id = None
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        self._exception_handler = None
        self.set_debug(coroutines._is_debug_mode())
        # In debug mode, a callback that runs longer than this many seconds
        # is logged.
        self.slow_callback_duration = 0.1
        self._current_handle = None
        self._task_factory = None
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._executor_shutdown_called = False
        self._old_agen_hooks = None
        self._signal_handlers = {}
        self._saved_wakeup_fd = None
        # fd -> transport, for _ensure_fd_no_transport (as selector loops)
        self._transports = weakref.WeakValueDictionary()
        # listening Unix socket -> inode of its file, which _stop_serving
        # removes (create_unix_server's cleanup_socket, 3.13+)
        self._unix_server_sockets = {}

    __repr__ = _Base.__repr__
    __del__ = _Base.__del__

    # Running and stopping the event loop.

    def run_forever(self):
        """Run until stop() is called."""
        self._run_forever_setup()
        try:
            self._run()
        finally:
            self._run_forever_cleanup()

    def _run_forever_setup(self):
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        self._old_agen_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter_hook, finalizer=self._asyncgen_finalizer_hook
        )
        events._set_running_loop(self)
        self._install_wakeup_fd()

    def _run_forever_cleanup(self):
        self._restore_wakeup_fd()
        self._thread_id = None
        events._set_running_loop(None)
        self._set_coroutine_origin_tracking(False)
        if self._old_agen_hooks is not None:
            sys.set_asyncgen_hooks(*self._old_agen_hooks)
            self._old_agen_hooks = None

    run_until_complete = _Base.run_until_complete
    is_running = _Base.is_running
    _check_closed = _Base._check_closed
    _check_running = _Base._check_running

    def close(self):
        """Close the event loop.

        This clears the queues and shuts down the executor, but does not
        wait for the executor to finish. The event loop must not be running.
        """
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        if self._debug:
            _logger.debug("Close %r", self)
        self._remove_signal_handlers()
        self._closed = True
        self._close()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    shutdown_asyncgens = _Base.shutdown_asyncgens
    shutdown_default_executor = _Base.shutdown_default_executor
    _do_shutdown = _Base._do_shutdown
    _asyncgen_firstiter_hook = _Base._asyncgen_firstiter_hook
    _asyncgen_finalizer_hook = _Base._asyncgen_finalizer_hook

    # Methods scheduling callbacks (call_soon, call_later, call_at, time and
    # call_soon_threadsafe are native). Future and task creation.

    _check_callback = _Base._check_callback
    _check_thread = _Base._check_thread

    # create_task is native; it calls _create_task_slow with a task factory
    # or in debug mode.
    if sys.version_info >= (3, 14):
        _create_task_slow = _Base.create_task
    else:

        def _create_task_slow(self, coro, *, name=None, context=None, **kwargs):
            """Schedule a coroutine object.

            Return a task object. Extra keyword arguments go to the Task (or
            the task factory), as on Python 3.14.
            """
            if not kwargs:
                task = _Base.create_task(self, coro, name=name, context=context)
            else:
                self._check_closed()
                if self._task_factory is None:
                    task = tasks.Task(coro, loop=self, name=name, context=context, **kwargs)
                else:
                    task = self._task_factory(self, coro, context=context, **kwargs)
                    if name is not None:
                        task.set_name(name)
            # Drop this frame too, as asyncio drops create_task's own (a task
            # factory may return an object without the attribute).
            if self._task_factory is None and task._source_traceback:
                del task._source_traceback[-1]
            try:
                return task
            finally:
                del task

    set_task_factory = _Base.set_task_factory
    get_task_factory = _Base.get_task_factory

    # Methods for interacting with threads.

    run_in_executor = _Base.run_in_executor
    set_default_executor = _Base.set_default_executor
    _check_default_executor = _Base._check_default_executor

    # Network I/O methods. The sock_* coroutines but sock_connect and
    # sock_sendfile try the call at once from C and, if the socket is not
    # ready, park a native op as the fd's reader or writer (pybridge/sock.c);
    # where that would differ from asyncio (debug mode, SSL or blocking
    # sockets, unusual arguments) the *_start method returns NotImplemented
    # and asyncio's own coroutine runs. sock_connect (address resolution,
    # once per connection) and sock_sendfile are asyncio's, over
    # _add_reader/_add_writer, which here register with the Go poller. getaddrinfo and getnameinfo run in the default executor, as
    # in asyncio, and return exactly what the socket module does.

    getaddrinfo = _Base.getaddrinfo
    getnameinfo = _Base.getnameinfo
    _getaddrinfo_debug = _Base._getaddrinfo_debug
    _ensure_resolved = _Base._ensure_resolved

    async def sock_recv(self, sock, n):
        op = self._sock_recv_start(sock, n)
        if op is NotImplemented:
            return await _Selector.sock_recv(self, sock, n)
        if op.__class__ is not _SockOp:
            return op
        try:
            return await op
        except BaseException:
            op._detach()
            raise

    async def sock_recv_into(self, sock, buf):
        op = self._sock_recv_into_start(sock, buf)
        if op is NotImplemented:
            return await _Selector.sock_recv_into(self, sock, buf)
        if op.__class__ is not _SockOp:
            return op
        try:
            return await op
        except BaseException:
            op._detach()
            raise

    sock_recv.__doc__ = _Selector.sock_recv.__doc__
    sock_recv_into.__doc__ = _Selector.sock_recv_into.__doc__
    _sock_recv = _Selector._sock_recv
    _sock_recv_into = _Selector._sock_recv_into
    async def sock_recvfrom(self, sock, bufsize):
        op = self._sock_recvfrom_start(sock, bufsize)
        if op is NotImplemented:
            return await _Selector.sock_recvfrom(self, sock, bufsize)
        if op.__class__ is not _SockOp:
            return op
        try:
            return await op
        except BaseException:
            op._detach()
            raise

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        op = self._sock_recvfrom_into_start(sock, buf, nbytes)
        if op is NotImplemented:
            return await _Selector.sock_recvfrom_into(self, sock, buf, nbytes)
        if op.__class__ is not _SockOp:
            return op
        try:
            return await op
        except BaseException:
            op._detach()
            raise

    sock_recvfrom.__doc__ = _Selector.sock_recvfrom.__doc__
    sock_recvfrom_into.__doc__ = _Selector.sock_recvfrom_into.__doc__
    _sock_recvfrom = _Selector._sock_recvfrom
    _sock_recvfrom_into = _Selector._sock_recvfrom_into
    async def sock_sendall(self, sock, data):
        op = self._sock_sendall_start(sock, data)
        if op is NotImplemented:
            return await _Selector.sock_sendall(self, sock, data)
        if op is None:
            return None
        try:
            return await op
        except BaseException:
            op._detach()
            raise

    sock_sendall.__doc__ = _Selector.sock_sendall.__doc__
    _sock_sendall = _Selector._sock_sendall
    async def sock_sendto(self, sock, data, address):
        op = self._sock_sendto_start(sock, data, address)
        if op is NotImplemented:
            return await _Selector.sock_sendto(self, sock, data, address)
        if op.__class__ is not _SockOp:
            return op
        try:
            return await op
        except BaseException:
            op._detach()
            raise

    sock_sendto.__doc__ = _Selector.sock_sendto.__doc__
    _sock_sendto = _Selector._sock_sendto
    sock_connect = _Selector.sock_connect
    _sock_connect = _Selector._sock_connect
    _sock_connect_cb = _Selector._sock_connect_cb
    async def sock_accept(self, sock):
        op = self._sock_accept_start(sock)
        if op is NotImplemented:
            return await _Selector.sock_accept(self, sock)
        if op.__class__ is not _SockOp:
            return op
        try:
            return await op
        except BaseException:
            op._detach()
            raise

    sock_accept.__doc__ = _Selector.sock_accept.__doc__
    _sock_accept = _Selector._sock_accept
    _sock_read_done = _Selector._sock_read_done
    _sock_write_done = _Selector._sock_write_done

    sock_sendfile = _Base.sock_sendfile
    _check_sendfile_params = _Base._check_sendfile_params
    _sock_sendfile_fallback = _Base._sock_sendfile_fallback
    _sock_sendfile_native = _Unix._sock_sendfile_native
    _sock_sendfile_native_impl = _Unix._sock_sendfile_native_impl
    _sock_sendfile_update_filepos = _Unix._sock_sendfile_update_filepos
    _sock_add_cancellation_callback = _Unix._sock_add_cancellation_callback

    # Connections, servers, datagrams, TLS and pipes: asyncio's own
    # orchestration (address resolution, happy eyeballs, Server, sslproto).
    # TCP and Unix stream sockets get goloop's native transport
    # (_goloop._SocketTransport: reads, writes, buffering and flow control in
    # Go); TLS is asyncio's sslproto layered over that transport. UDP and
    # Unix datagram sockets get _goloop._DatagramTransport. Pipes still use
    # asyncio's selector transports, which run on the Go poller through
    # _add_reader/_add_writer.

    create_connection = _Base.create_connection
    _connect_sock = _Base._connect_sock
    _create_connection_transport = _Base._create_connection_transport
    create_server = _Base.create_server
    _create_server_getaddrinfo = _Base._create_server_getaddrinfo
    connect_accepted_socket = _Base.connect_accepted_socket
    create_datagram_endpoint = _Base.create_datagram_endpoint
    sendfile = _Base.sendfile
    _sendfile_fallback = _Base._sendfile_fallback
    start_tls = _Base.start_tls
    create_unix_connection = _Unix.create_unix_connection
    create_unix_server = _Unix.create_unix_server

    def _make_socket_transport(
        self, sock, protocol, waiter=None, *, extra=None, server=None, context=None
    ):
        if _CHECK_FD_ON_MAKE:
            self._ensure_fd_no_transport(sock)
        return _socket_transport(self, sock, protocol, waiter, extra, server, context)

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
        context=None,
    ):
        if _CHECK_FD_ON_MAKE:
            self._ensure_fd_no_transport(rawsock)
        ssl_protocol = sslproto.SSLProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        _socket_transport(self, rawsock, ssl_protocol, None, extra, server, context)
        return ssl_protocol._app_transport

    async def _sendfile_native(self, transp, file, offset, count):
        # asyncio's selector loop's, plus _lend_fd(): the Go core owns a
        # native transport's fd, and sock_sendfile watches it with
        # add_writer, so the core lets go of it for the length of the
        # sendfile (the transport is idle meanwhile: reading paused,
        # buffer flushed, write() refused).
        if not isinstance(transp, _goloop._SocketTransport):
            return await _Selector._sendfile_native(self, transp, file, offset, count)
        resume_reading = transp.is_reading()
        transp.pause_reading()
        await transp._make_empty_waiter()
        try:
            transp._lend_fd()
            return await self.sock_sendfile(transp._sock, file, offset, count, fallback=False)
        finally:
            transp._reset_empty_waiter()
            if resume_reading:
                transp.resume_reading()

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        if _CHECK_FD_ON_MAKE:
            self._ensure_fd_no_transport(sock)
        if sock.family not in _NATIVE_DATAGRAM_FAMILIES:
            # The native transport converts the address families that
            # create_datagram_endpoint makes; a socket of another family
            # given as sock= gets asyncio's selector transport.
            return selector_events._SelectorDatagramTransport(
                self, sock, protocol, address, waiter, extra
            )
        return _datagram_transport(self, sock, protocol, address, waiter, extra)

    def _start_serving(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
        context=None,
    ):
        # 3.15 passes the server's context, which each connection copies
        # as its own.
        more = () if context is None else (context,)
        if sslcontext:
            # TLS servers are accepted by asyncio's _accept_connection (a
            # reader on the Go poller and a Task per connection), which
            # sets up sslproto over the native transport.
            _Selector._start_serving(
                self, protocol_factory, sock, sslcontext, server, backlog,
                ssl_handshake_timeout, ssl_shutdown_timeout, *more,
            )
            return
        # The Go core accepts, and for each connection listener.c does
        # what _accept_connection and _accept_connection2 do, in a copy of
        # this context as asyncio's reader and Task have it (or of the
        # server's).
        _goloop._serve(
            self, sock, protocol_factory, server,
            backlog + _ACCEPTS_PER_ROUND_EXTRA,
            contextvars.copy_context() if context is None else context,
            (protocol_factory, sock, sslcontext, server, backlog,
             ssl_handshake_timeout, ssl_shutdown_timeout, *more),
            context is not None,
        )

    _accept_connection = _Selector._accept_connection
    _accept_connection2 = _Selector._accept_connection2

    def _stop_serving(self, sock):
        # _UnixSelectorEventLoop's (3.13+; the dict stays empty before):
        # remove the socket file create_unix_server made, unless it was
        # replaced since.
        if sock in self._unix_server_sockets:
            path = sock.getsockname()
        else:
            path = None
        # BaseSelectorEventLoop's, for either accept path.
        if not _goloop._unserve(self, sock.fileno()):
            self._remove_reader(sock.fileno())
        sock.close()
        if path is not None:
            prev_ino = self._unix_server_sockets[sock]
            del self._unix_server_sockets[sock]
            try:
                if os.stat(path).st_ino == prev_ino:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                _logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    connect_read_pipe = _Base.connect_read_pipe
    connect_write_pipe = _Base.connect_write_pipe
    _make_read_pipe_transport = _Unix._make_read_pipe_transport
    _make_write_pipe_transport = _Unix._make_write_pipe_transport

    @property
    def _selector(self):
        # The selector transports' __repr__ asks it which events their fd
        # is polled for. asyncio's close() drops its selector, and a pipe
        # transport that outlives the loop then says it is "open".
        return None if self._closed else _WatchView(self)

    # Ready-based callback registration methods (_add_reader & co. are
    # native).

    add_reader = _Selector.add_reader
    remove_reader = _Selector.remove_reader
    add_writer = _Selector.add_writer
    remove_writer = _Selector.remove_writer

    def _ensure_fd_no_transport(self, fd):
        # asyncio's, for its own transports in _transports; a native one is
        # found through the Go core, which knows the fd its stream owns
        # (_transport_of). The core lets go of the fd when the stream is
        # lost, or lent for a sendfile, which is when asyncio's entry
        # would be gone or closing.
        _Selector._ensure_fd_no_transport(self, fd)
        transport = self._transport_of(fd if isinstance(fd, int) else int(fd.fileno()))
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    # Signal handling.

    def add_signal_handler(self, sig, callback, *args):
        """Add a handler for a signal.  UNIX only.

        Raise ValueError if the signal number is invalid or uncatchable.
        Raise RuntimeError if there is a problem setting up the handler.
        """
        if coroutines.iscoroutine(callback) or _iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # set_wakeup_fd() raises ValueError if this is not the main
            # thread: a loop in another thread cannot add a handler.
            signal.set_wakeup_fd(self._signal_fd(), warn_on_full_buffer=False)
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))

        handle = self._handle(callback, *args)
        self._signal_handlers[sig] = handle
        try:
            # The no-op handler makes CPython write the signal number to the
            # wake-up fd; the Go core reads it and _process_self_data
            # schedules the handle.
            signal.signal(sig, unix_events._sighandler_noop)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                try:
                    signal.set_wakeup_fd(-1)
                except (ValueError, OSError) as nexc:
                    _logger.info("set_wakeup_fd(-1) failed: %s", nexc)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise

    remove_signal_handler = _Unix.remove_signal_handler
    _check_signal = _Unix._check_signal
    _handle_signal = _Unix._handle_signal
    _process_self_data = _Unix._process_self_data

    def _add_callback_signalsafe(self, handle):
        self._add_callback(handle)
        self._write_to_self()

    def _remove_signal_handlers(self):
        if not self._signal_handlers:
            return
        if not sys.is_finalizing():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        else:
            warnings.warn(
                f"Closing the loop {self!r} on interpreter shutdown stage, "
                f"skipping signal handlers removal",
                ResourceWarning,
                source=self,
            )
            self._signal_handlers.clear()

    def _install_wakeup_fd(self):
        # A signal may be delivered to one of the Go runtime's threads, so
        # epoll_wait on this one is not interrupted: CPython's wake-up fd
        # (the Go core's signal pipe) is what makes Ctrl-C stop the loop at
        # once. Only the main thread may set it.
        if self._signal_handlers or threading.current_thread() is not threading.main_thread():
            return
        try:
            self._saved_wakeup_fd = signal.set_wakeup_fd(
                self._signal_fd(), warn_on_full_buffer=False
            )
        except (ValueError, OSError):
            self._saved_wakeup_fd = None

    def _restore_wakeup_fd(self):
        saved, self._saved_wakeup_fd = self._saved_wakeup_fd, None
        if saved is None or self._signal_handlers:
            return
        try:
            signal.set_wakeup_fd(saved)
        except (ValueError, OSError):
            pass

    # Error handlers.

    get_exception_handler = _Base.get_exception_handler
    set_exception_handler = _Base.set_exception_handler
    default_exception_handler = _Base.default_exception_handler
    call_exception_handler = _Base.call_exception_handler

    # Debug flag management.

    set_debug = _Base.set_debug
    _set_coroutine_origin_tracking = _Base._set_coroutine_origin_tracking


class _WatchView:
    """The one piece of the selectors API asyncio's transports read: which
    events the poller watches an fd for."""

    def __init__(self, loop):
        self._loop = loop

    def get_key(self, fd):
        events = self._loop._watching(fd)
        if not events:
            raise KeyError(f"{fd!r} is not registered")
        return selectors.SelectorKey(fd, fd, events, None)


def _socket_transport(loop, sock, protocol, waiter, extra, server, context):
    """The native transport for a connected stream socket, set up as
    asyncio's _SelectorSocketTransport.__init__ sets itself up, but for
    what an idle connection need not keep: the transport makes the extra
    dict when it is asked for (transport.c, make_extra), and the Go core, not
    loop._transports, knows which fd it owns. context is the connection's
    own (3.15 passes one), or None: its callbacks then run in contexts
    copied as asyncio's handles copy them."""
    # Registers the fd with the Go core: from here the transport owns it.
    transport = _goloop._new_socket_transport(loop, sock, protocol, extra, server, context)
    if server is not None:
        if _ATTACH_TAKES_TRANSPORT:
            server._attach(transport)
        else:
            server._attach()
    # Disable the Nagle algorithm: small writes go out without waiting for
    # the peer's ACK.
    base_events._set_nodelay(sock)
    loop.call_soon(protocol.connection_made, transport, context=context)
    # only start reading when connection_made() has been called
    loop.call_soon(transport._start, context=context)
    if waiter is not None:
        # only wake up the waiter when connection_made() has been called
        loop.call_soon(futures._set_result_unless_cancelled, waiter, None, context=context)
    return transport


_NATIVE_DATAGRAM_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6, socket.AF_UNIX})


def _datagram_transport(loop, sock, protocol, address, waiter, extra):
    """The native transport for a datagram socket, set up as asyncio's
    _SelectorDatagramTransport.__init__ sets itself up."""
    if extra is None:
        extra = {}
    extra["socket"] = trsock.TransportSocket(sock)
    try:
        extra["sockname"] = sock.getsockname()
    except OSError:
        extra["sockname"] = None
    if "peername" not in extra:
        try:
            extra["peername"] = sock.getpeername()
        except socket.error:
            extra["peername"] = None
    # Registers the fd with the Go core: from here the transport owns it.
    transport = _goloop._new_datagram_transport(loop, sock, protocol, extra, address)
    loop._transports[sock.fileno()] = transport
    loop.call_soon(protocol.connection_made, transport)
    # only start reading when connection_made() has been called
    loop.call_soon(transport._start)
    if waiter is not None:
        # only wake up the waiter when connection_made() has been called
        loop.call_soon(futures._set_result_unless_cancelled, waiter, None)
    return transport


# What asyncio's _SelectorSocketTransport has as class attributes.
_goloop._SocketTransport._start_tls_compatible = True
_goloop._SocketTransport._sendfile_compatible = constants._SendfileMode.TRY_NATIVE


# The Python halves of native cold paths.


def _format_callback(handle):
    if _FORMAT_HAS_DEBUG:
        return format_helpers._format_callback_source(
            handle._callback, handle._args, debug=handle._loop.get_debug()
        )
    return format_helpers._format_callback_source(handle._callback, handle._args)


def _callback_failed(handle, exc):
    # The except branch of asyncio.events.Handle._run.
    context = {
        "message": f"Exception in callback {_format_callback(handle)}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


def _log_slow(handle, seconds):
    _logger.warning("Executing %s took %.3f seconds", base_events._format_handle(handle), seconds)


def _extract_stack():
    # Frame 1 is the code that called call_soon & co. (the native method
    # has no frame), which is where asyncio's trimmed traceback ends too.
    return format_helpers.extract_stack(sys._getframe(1))


def _transport_fatal_error(transport, exc, message):
    # The report half of asyncio's _SelectorTransport._fatal_error; the
    # native side force-closes the transport with exc afterwards.
    loop = transport._loop
    if isinstance(exc, OSError):
        if loop is not None and loop.get_debug():
            _logger.debug("%r: %s", transport, message, exc_info=exc)
    elif loop is not None:
        loop.call_exception_handler(
            {
                "message": message,
                "exception": exc,
                "transport": transport,
                "protocol": transport._protocol,
            }
        )


def _transport_callback_failed(transport, exc, message):
    # _FlowControlMixin: a failing pause_writing()/resume_writing().
    transport._loop.call_exception_handler(
        {
            "message": message,
            "exception": exc,
            "transport": transport,
            "protocol": transport._protocol,
        }
    )


def _accept_failed(loop, exc, protocol):
    # The except branch of asyncio's _accept_connection2, in debug mode
    # (listener.c checks it): the protocol factory or the transport's set-up
    # failed, and the accepted socket is closed.
    context = {
        "message": "Error on transport creation for incoming connection",
        "exception": exc,
    }
    if protocol is not None:
        context["protocol"] = protocol
    loop.call_exception_handler(context)


def _accept_error(loop, exc, args):
    # What asyncio's _accept_connection does with an accept() failure that
    # the Go core does not retry silently. args are its own arguments.
    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
        # The core has stopped accepting, and resumes after
        # constants.ACCEPT_RETRY_DELAY.
        loop.call_exception_handler(
            {
                "message": "socket.accept() out of system resource",
                "exception": exc,
                "socket": trsock.TransportSocket(args[1]),
            }
        )
    else:
        # Raised out of asyncio's reader callback, which the loop reports
        # as a failing callback; accepting goes on at the next readiness.
        _callback_failed(events.Handle(loop._accept_connection, args, loop), exc)


def _accept_slow(loop, args, seconds):
    # Debug mode: the slow-callback warning for asyncio's reader handle,
    # _accept_connection, which a native accept round stands for. The
    # round has no handle, so none shows where it was created.
    handle = events.Handle(loop._accept_connection, args, loop)
    handle._source_traceback = None
    _log_slow(handle, seconds)


def _connection_lost_failed(loop, transport, arg, exc):
    # asyncio calls _call_connection_lost through call_soon, so a failing
    # connection_lost() reaches the handler as a failing callback.
    if loop is None:
        return
    loop.call_exception_handler(
        {
            "message": f"Exception in callback {type(transport).__name__}"
            f"._call_connection_lost({arg!r})",
            "exception": exc,
            "transport": transport,
        }
    )


def _datagram_callback_failed(transport, exc, method):
    # asyncio runs _read_ready and _sendto_ready as the fd's reader and
    # writer handles, so an exception a protocol callback raises there
    # reaches the handler as a failing callback's; the transport stays open.
    loop = transport._loop
    if loop is None:
        return
    loop.call_exception_handler(
        {
            "message": f"Exception in callback {type(transport).__name__}.{method}()",
            "exception": exc,
            "transport": transport,
            "protocol": transport._protocol,
        }
    )


def _datagram_sendto_slow(transport, data, addr, queued):
    """sendto() to an address the native side does not convert itself (a
    host name, '<broadcast>', a wrong type...). With nothing queued, the
    datagram is sent here, as asyncio sends it, so every error is the socket
    module's; returns None then, or when the error was handled. Otherwise
    returns the address resolved to the numeric form the native side queues
    the datagram with."""
    sock = transport._sock
    try:
        if not queued:
            try:
                sock.sendto(data, addr)
                return None
            except (BlockingIOError, InterruptedError):
                pass
        return _numeric_address(sock, addr)
    except OSError as exc:
        transport._protocol.error_received(exc)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        _transport_fatal_error(transport, exc, "Fatal write error on datagram transport")
        transport._force_close(exc)
    return None


def _numeric_address(sock, addr):
    # What the socket module's address parsing resolves addr to, for the
    # queue: '' and '<broadcast>' are its special names, the rest
    # getaddrinfo's.
    if sock.family == socket.AF_UNIX:
        return addr if isinstance(addr, str) else bytes(addr)
    host, port = addr[0], addr[1]
    if host == "":
        host = "0.0.0.0" if sock.family == socket.AF_INET else "::"
    elif host == "<broadcast>":
        host = "255.255.255.255"
    resolved = socket.getaddrinfo(host, port, sock.family, socket.SOCK_DGRAM)[0][4]
    if sock.family == socket.AF_INET6:
        return resolved[:2] + tuple(addr[2:4]) + resolved[2 + len(addr[2:4]):]
    return resolved


_goloop._set_helpers(
    _callback_failed, _log_slow, _extract_stack, futures, tasks, selectors._fileobj_to_fd
)
_goloop._set_transport_helpers(
    protocols.BufferedProtocol,
    _transport_fatal_error,
    _transport_callback_failed,
    _connection_lost_failed,
    _logger,
    trsock.TransportSocket,
)
_goloop._set_reader_helpers(streams.StreamReaderProtocol, streams.StreamReader)
_goloop._set_datagram_helpers(_datagram_callback_failed, _datagram_sendto_slow)
_goloop._set_listener_helpers(socket.socket, _accept_failed, _accept_error, _accept_slow, _logger)
