"""A search to watch in the browser: optuna-dashboard served on the study's storage.

``fastmlp dashboard`` (and ``fastmlp search --dashboard``, in a thread beside the search) serves
`optuna-dashboard <https://github.com/optuna/optuna-dashboard>`_, the Optuna project's own web
view of a storage: every study, each trial's validation accuracy per epoch as it is reported,
its hyperparameters (the ``hyperparameters`` attribute gives them by the homework's names),
the history, slices and importances, refreshed as the workers write. It is used as a WSGI
application (``optuna_dashboard.wsgi``) under the standard library's server, so that this
module chooses the address (127.0.0.1 by default; port 0 picks a free one), stops it cleanly,
and keeps its output:

* the storage is opened here (:func:`fastmlp.search.study.open_storage`) and handed over as an
  object, so the dashboard never sees the URL, and the URL is printed only by
  :func:`fastmlp.search.study.display_url` (password hidden);
* the server's request log is off, and whatever it or optuna-dashboard writes (an error's
  traceback, a warning) passes through :func:`fastmlp.search.study.redact` first;
* the storage is opened read-only (:func:`fastmlp.search.storage.open_rdb`): watching never
  changes a study, nor creates a table or a file, and a read-only storage file serves. What the
  page would save (a note, a trial's state) is refused, with one line on the console.

The ``dashboard`` extra installs it: ``pip install 'fastmlp[dashboard]'``.
"""

from __future__ import annotations

import io
import logging
import socket
import threading

from ..errors import UsageError
from ..extras import require
from .storage import DEAD_WRITER
from .study import display_url, open_storage, redact, storage_errors

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def require_optuna_dashboard():
    """The ``optuna_dashboard`` module, or a one-line :class:`UsageError` naming the extra to install."""
    return require("optuna_dashboard", "dashboard", "the dashboard")


class ReadOnlyNote(logging.Filter):
    """optuna-dashboard's record of a failed request (the traceback in its message) as one line: a
    refused write (Optuna's commit error), or a read that met a killed writer's SQLite journal."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        first = message.partition("\n")[0].removeprefix("Exception: ")
        if DEAD_WRITER in first:  # one read failed; the next succeeds
            record.msg, record.args = f"fastmlp: {first}", ()
        elif "An exception is raised during the commit" in message:
            record.msg, record.args = ("fastmlp: the dashboard reads the storage only: the change asked for (a note, "
                                       "a trial's state) was not saved"), ()
        return True


class RedactingStream(io.TextIOBase):
    """A text stream that writes to ``target`` with the password of ``url`` hidden."""

    def __init__(self, target, url: str):
        self.target, self.url = target, url

    def write(self, text: str) -> int:
        self.target.write(redact(text, self.url))
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def _server_class(host: str) -> type:
    """The standard library's WSGI server, a thread per request (the page asks for several things at
    once), for an IPv4 or IPv6 ``host``. (The server's modules load here, not with the command.)"""
    import socketserver
    from wsgiref.simple_server import WSGIServer

    class _Server(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    return _Server


class Dashboard:
    """optuna-dashboard on the storage ``url``, listening on ``host``:``port`` (0: any free port).

    :meth:`serve_forever` serves in this thread until :meth:`close` (or Ctrl-C); :meth:`start`
    serves in a thread of its own. Errors (no such storage, a port in use) are one line.
    """

    def __init__(self, url: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, stderr=None):
        import sys
        optuna_dashboard = require_optuna_dashboard()
        if not 0 <= port <= 65535:
            raise UsageError(f"--port must be in 0..65535; got {port}")
        self.storage_url = url
        self.stderr = RedactingStream(stderr or sys.stderr, url)
        storage = open_storage(url, heartbeat=False, read_only=True)
        log = logging.getLogger("optuna_dashboard")  # its modules' records, tracebacks too, reach this handler
        log.handlers = [logging.StreamHandler(self.stderr)]
        log.handlers[0].addFilter(ReadOnlyNote())
        log.propagate = False
        app = optuna_dashboard.wsgi(storage)
        stream = self.stderr

        from wsgiref.simple_server import WSGIRequestHandler

        class Handler(WSGIRequestHandler):
            def log_message(self, format, *args) -> None:  # no request log: the console is the search's
                pass

            def get_stderr(self):
                return stream

        try:
            self.server = _server_class(host)((host, port), Handler)
        except OSError as exc:
            raise UsageError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc}") from None
        self.server.set_app(app)
        self.host, self.port = host, self.server.server_address[1]
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/dashboard"

    def describe(self) -> str:
        """``dashboard of sqlite:///runs/search.db at http://127.0.0.1:8080/dashboard``, and a word when
        it is open to other machines."""
        text = f"dashboard of {display_url(self.storage_url)} at {self.url}"
        if self.host not in LOOPBACK:
            text += " (open to every machine that reaches this address: anyone there can read the studies)"
        return text

    def serve_forever(self) -> None:
        try:
            self.server.serve_forever(poll_interval=0.2)
        finally:
            self.server.server_close()

    def start(self) -> Dashboard:
        """Serve in a daemon thread (it never keeps the process alive); returns self."""
        self.thread = threading.Thread(target=self.serve_forever, name="fastmlp-dashboard", daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving (from another thread than :meth:`serve_forever`'s) and release the port."""
        self.server.shutdown()
        if self.thread is not None:
            self.thread.join(timeout=10)


def serve(url: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log=print) -> int:
    """Serve the dashboard of ``url`` in this thread until Ctrl-C or SIGTERM; say where, and that it
    stopped; 0 (the exit status: stopping is how it ends)."""
    import signal
    with storage_errors(url):
        dashboard = Dashboard(url, host, port)
    log(f"fastmlp: {dashboard.describe()} (Ctrl-C stops it)")

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    # SIGINT too: a shell starts a background command with SIGINT ignored, and Ctrl-C must still stop it
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        dashboard.serve_forever()
    except KeyboardInterrupt:
        log("fastmlp: dashboard stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def start(url: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log=print) -> Dashboard:
    """The dashboard of ``url``, serving in a thread of this process (a search's); say where."""
    with storage_errors(url):
        dashboard = Dashboard(url, host, port).start()
    log(f"search: {dashboard.describe()} while the search runs")
    return dashboard
