"""Where a search's trials live: the ``--storage`` value, shown without its secrets, opened for writing or read-only.

Values
    A value without ``://`` is the path of an SQLite file, taken literally: ``exp?1.db`` and
    ``my%41.db`` are file names, not URL syntax. Anything else is an SQLAlchemy URL, parsed by
    SQLAlchemy's ``make_url``; in its user info everything up to the last ``@`` before the host is
    the user and password, so a password may hold an unescaped ``@``. A URL with an ``@`` after
    that (in the host, database or query) is refused, showing nothing past the user name: its
    password may also hold a ``/`` or ``?``, and where it ends cannot be told (``%40`` writes an
    ``@``). An in-memory SQLite database is refused: nothing in it outlives the command.

Secrets
    A URL carries secrets in its user info (``user:PASSWORD@host``) and in query parameters whose
    name holds pass, pwd, secret, token or key (``?password=``, ``?sslpassword=``). Only
    :func:`display_url` shows a URL (the secrets as ``***``), and :func:`redact` removes them, in
    every spelling (as typed, percent-encoded as SQLAlchemy or urllib write them), from any text:
    an error of the database driver that echoes the DSN, a log line, a traceback of the dashboard.

Opening (:func:`open_rdb`)
    An Optuna RDB storage. An SQLite file is opened through an SQLite URI filename (``file:`` and
    the percent-encoded path), so that no character of the path is read as URL syntax whatever
    SQLAlchemy's version, and every URL reaches Optuna with its braces doubled (Optuna passes it
    through ``str.format``). Before anything is written, the tables are looked at (SQLAlchemy's
    ``inspect``): a database that holds tables and not Optuna's is another program's and is left
    untouched; one that holds only some of Optuna's is damaged.

    Read-only (``fastmlp search --status``, ``report``, ``dashboard``): SQLite is opened with
    ``mode=ro`` (no file is created, no lock file either, and a read-only file in a read-only
    folder serves), PostgreSQL with ``default_transaction_read_only``; Optuna's tables must be
    there, and none is created.

    A search killed inside an SQLite transaction leaves a hot journal beside the file; a ``mode=ro``
    connection cannot roll it back and only answers "attempt to write a readonly database". So
    before any look, :func:`roll_back_a_dead_writer` lets SQLite's own recovery run: one read by a
    connection that may write restores the file to its last committed transaction (the only write
    a read-only command makes, and only after a crash). A read-only storage kept open (the
    dashboard's) does the same when one of its reads meets such a journal: the next read succeeds.

Why SQLite is safe for the workers of one machine
    Optuna's docs warn against SQLite for parallel workers because of its lock errors. Those
    come from deferred transactions: two processes that both read, then both write, deadlock and
    one is told "database is locked" at once. Here every SQLite transaction of a writing storage
    begins with ``BEGIN IMMEDIATE`` (the write lock is taken first and waited for, up to
    SQLITE_BUSY_TIMEOUT s), so transactions from all workers run one after another and none
    fails; the tables are created under a lock file, so two searches started together on a new
    file do not collide. A trial's writes are a few small transactions an epoch, far below what
    SQLite serializes in a second. (A local file only: SQLite over a network file system is not
    safe, and several machines should share PostgreSQL.)
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

from ..errors import StorageError

CONNECT_TIMEOUT = 5         # seconds to reach a database server before giving up
SQLITE_BUSY_TIMEOUT = 60    # seconds an SQLite transaction waits for another process's lock
SQLITE_BUSY = 5             # SQLite's result code of "database is locked"
#: SQLite's extended result codes of a read-only connection that meets a dead writer's hot journal (or WAL)
SQLITE_READONLY_DEAD_WRITER = {776: "SQLITE_READONLY_ROLLBACK", 264: "SQLITE_READONLY_RECOVERY"}
#: What a read of a read-only storage kept open says when it met a dead writer's journal
DEAD_WRITER = "a process was killed while writing this storage"
#: Tables every Optuna storage has had: a database with some of them but not all is damaged.
OPTUNA_TABLES = ("studies", "trials", "version_info")
#: A query parameter whose name holds one of these carries a secret (password=, sslpassword=, ...).
SECRET_WORDS = ("pass", "pwd", "secret", "token", "key")
HIDDEN = "***"


def quiet_optuna():
    """Import Optuna with its INFO logging and experimental-feature warnings off; returns the module."""
    import warnings

    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# ----------------------------------------------------------------------------- values and URLs

def is_path(text: str) -> bool:
    """True when a ``--storage`` value is a file path (it has no ``://``)."""
    return "://" not in str(text)


def _userinfo_fixed(text: str) -> str:
    """``text`` with any ``@`` of its user info percent-encoded, so that SQLAlchemy (which ends the
    user info at the first ``@``) reads the user and password up to the last ``@`` before the host,
    as urllib and browsers do: ``u:SEC@RET@host`` has the password ``SEC@RET``."""
    scheme, sep, rest = text.partition("://")
    first = rest.find("@")
    if not sep or first < 0 or rest.startswith("/"):
        return text
    ends = [i for i in (rest.find("/", first), rest.find("?", first)) if i >= 0]
    last = rest.rfind("@", 0, min(ends, default=len(rest)))
    if last == first:
        return text
    user, colon, password = rest[:last].partition(":")
    return f"{scheme}://{user.replace('@', '%40')}{colon}{password.replace('@', '%40')}@{rest[last + 1:]}"


def _parsed(text: str):
    """SQLAlchemy's reading of the URL ``text`` (its user info fixed), or None when it has none."""
    from sqlalchemy.engine import make_url as sqlalchemy_make_url
    from sqlalchemy.exc import ArgumentError
    try:
        return sqlalchemy_make_url(_userinfo_fixed(str(text)))
    except (ArgumentError, ValueError, TypeError):
        return None


def _ambiguous(text: str) -> bool:
    """True when an ``@`` is left after the user info (in the host, database or query): the password
    may hold a ``/`` or ``?`` as well as an ``@``, and where it ends cannot be told."""
    rest = _userinfo_fixed(str(text)).partition("://")[2]
    first = -1 if rest.startswith("/") else rest.find("@")
    return first >= 0 and "@" in rest[first + 1:]


def _user_only(text: str) -> str:
    """``scheme://user:***@...``: all a URL with an ambiguous user info may show."""
    scheme, _, rest = str(text).partition("://")
    return f"{scheme}://{rest.split(':', 1)[0].split('@', 1)[0]}:***@..."


def make_url(text: str):
    """SQLAlchemy's URL of ``text`` (a URL, not a path); StorageError, the secrets hidden, when it is none."""
    url = _parsed(text)
    if url is None:
        raise StorageError(f"not a storage URL: {redact(text, text)} (expected a file path, or a URL such as "
                           f"sqlite:///runs/search.db or postgresql://user@host/database)")
    if _ambiguous(text):
        raise StorageError(f"not a storage URL: {_user_only(text)}: an @ comes after the user info (in the host, "
                           f"database or query), so where the password ends is unclear; write an @, / or ? of the "
                           f"password as %40, %2F, %3F")
    return url


def is_secret_key(name: str) -> bool:
    return any(word in str(name).lower() for word in SECRET_WORDS)


def _secrets(text: str) -> set[str]:
    """The password and secret query values of the URL ``text``, decoded and as written, as SQLAlchemy
    and urllib read them, and the longest password it may hold (up to its last ``@``)."""
    found: set[str] = set()
    fixed = _userinfo_fixed(str(text))
    url = _parsed(text)
    if url is not None:
        found.add(str(url.password or ""))
        for key, value in url.query.items():
            if is_secret_key(key):
                found.update((value,) if isinstance(value, str) else value)
    if url is None or _ambiguous(text):  # a password may run up to the last @
        found.add(str(text).partition("://")[2].rpartition("@")[0].partition(":")[2])
    with contextlib.suppress(ValueError):
        split = urlsplit(fixed)
        for password in (split.password, urlsplit(str(text)).password):
            found.update((password or "", unquote(password or "")))
        for pair in split.query.split("&"):
            key, _, value = pair.partition("=")
            if is_secret_key(unquote(key)):
                found.add(value)
        found.update(value for key, value in parse_qsl(split.query, keep_blank_values=True) if is_secret_key(key))
    return {s for s in found if s}


def _spellings(secret: str) -> set[str]:
    """``secret`` as typed and as each URL writer percent-encodes it (SQLAlchemy's own rendering included)."""
    from sqlalchemy.engine import URL
    out = {secret, quote(secret, safe=""), quote_plus(secret)}
    with contextlib.suppress(Exception):
        rendered = URL.create("x", username="u", password=secret, host="h").render_as_string(hide_password=False)
        out.add(rendered[len("x://u:"):-len("@h")])
        rendered = URL.create("x", query={"k": secret}).render_as_string(hide_password=False)
        out.add(rendered.partition("?k=")[2])
    return {s for s in out if s}


def redact(text, url: str | None = None) -> str:
    """``text`` with the secrets of ``url``, and of every URL written in ``text`` itself, replaced by ``***``.

    Every occurrence of a secret goes, wherever it stands (a driver may echo the DSN in its own
    form, ``password=...``): a word masked in passing is better than a password shown.
    """
    text = str(text)
    urls = [url] if url is not None and not is_path(url) else []
    urls += [word.strip("\"'()<>[],;") for word in text.split() if "://" in word]
    spellings = {s for u in urls for secret in _secrets(u) for s in _spellings(secret)}
    for spelling in sorted(spellings, key=len, reverse=True):
        text = text.replace(spelling, HIDDEN)
    return text


def display_url(url: str) -> str:
    """``url`` safe to print: the password and secret query values as ``***``; a path as ``sqlite:///PATH``."""
    text = str(url)
    if is_path(text):
        return f"sqlite:///{text}"
    parsed = _parsed(text)
    if parsed is None:
        return redact(text, text)
    if _ambiguous(text):
        return _user_only(text)
    if parsed.get_backend_name() == "sqlite":  # a file name, shown as it was written (no %-escapes)
        return f"{parsed.drivername}:///{parsed.database or ''}"
    marker = "fastmlp-hidden-value"  # rendered unescaped, then replaced: SQLAlchemy would escape "***"
    parsed = parsed.update_query_dict({key: marker for key in parsed.query if is_secret_key(key)})
    return parsed.render_as_string(hide_password=True).replace(marker, HIDDEN)


def storage_url(text: str) -> str:
    """The storage a ``--storage`` value names, password included: a path as given (a file, taken
    literally), or the URL as SQLAlchemy writes it.

    ``postgresql://`` without a driver gets psycopg (3) when it is installed, else psycopg2.
    """
    text = str(text)
    if is_path(text):
        if not text.strip():
            raise StorageError("--storage is empty: give a file path or a database URL")
        return text
    url = make_url(text)
    if url.drivername == "postgresql":
        if importlib.util.find_spec("psycopg") is not None:
            url = url.set(drivername="postgresql+psycopg")
        elif importlib.util.find_spec("psycopg2") is None:
            raise StorageError(f"{display_url(text)}: no PostgreSQL driver is installed "
                               f"(pip install 'fastmlp[postgres]')")
    return url.render_as_string(hide_password=False)


def sqlite_path(url: str) -> Path | None:
    """The file of a path or an SQLite URL (None for other databases and in-memory SQLite)."""
    if is_path(url):
        return Path(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if str(parsed.query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):  # an SQLite URI filename
        split = urlsplit(database)
        if "mode=memory" in split.query:
            return None
        database = unquote(split.path)
    return None if database in ("", ":memory:") else Path(database)


def is_sqlite(url: str) -> bool:
    return is_path(url) or make_url(url).get_backend_name() == "sqlite"


def sqlite_uri(path: Path, read_only: bool = False) -> str:
    """The SQLite URI filename of ``path``: absolute (after ``file:`` a relative path could read as
    an authority, ``//host/...``) and percent-encoded, so that no character of it is URI syntax."""
    return "file:" + quote(os.fsencode(Path(path).absolute()), safe="/") + ("?mode=ro" if read_only else "")


def engine_url(url: str, read_only: bool = False) -> str:
    """The URL SQLAlchemy opens for the storage ``url`` (a :func:`storage_url`): an SQLite file as an
    SQLite URI filename (``mode=ro`` when ``read_only``), so that no character of its path is URL syntax."""
    if is_sqlite(url):
        from sqlalchemy.engine import URL
        path = sqlite_path(url)
        parsed = None if is_path(url) else make_url(url)
        keep = {k: v for k, v in (parsed.query.items() if parsed else ()) if k not in ("uri", "mode")}
        database = sqlite_uri(path)
        query = {**keep, "uri": "true", **({"mode": "ro"} if read_only else {})}
        text = URL.create(parsed.drivername if parsed else "sqlite", database=database, query=query)
        return text.render_as_string(hide_password=False)
    return url


def first_line(exc: BaseException, url: str) -> str:
    """The first line of a database error, without SQLAlchemy's class prefix, the secrets hidden."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return redact(re.sub(r"^\([\w.]+\)\s*", "", first), url)


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Inside the block, a storage whose tables are damaged, or that is not an Optuna storage,
    is one :class:`StorageError` line, not a traceback from deep inside Optuna or SQLAlchemy."""
    import optuna
    import sqlalchemy.exc
    try:
        yield
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as exc:
        raise StorageError(f"{display_url(url)}: the storage is damaged or is not a fastmlp search storage "
                           f"({first_line(exc.__cause__ or exc, url)})") from None


# ----------------------------------------------------------------------------- opening

def _engine_kwargs(url: str, read_only: bool) -> dict[str, Any]:
    if is_sqlite(url):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return {}
    connect: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT}
    if read_only:  # the server refuses any write of these connections
        options = parsed.query.get("options", "")
        connect["options"] = f"{options} -c default_transaction_read_only=on".strip()
    return {"connect_args": connect, "pool_pre_ping": True}


def _check_tables(url: str, engine_text: str, kwargs: dict, read_only: bool) -> None:
    """StorageError unless the database is an Optuna storage, or (to write) a database without tables."""
    import sqlalchemy
    engine = sqlalchemy.create_engine(engine_text, poolclass=sqlalchemy.pool.NullPool, **kwargs)
    try:
        inspector = sqlalchemy.inspect(engine)
        tables = set(inspector.get_table_names()) | set(inspector.get_view_names())  # a view is content too
        ours = [t for t in OPTUNA_TABLES if t in tables]
        half_made = bool(tables) and len(ours) < len(OPTUNA_TABLES) and _half_made(engine, inspector, tables)
    finally:
        engine.dispose()
    if len(ours) == len(OPTUNA_TABLES) or not (tables or read_only) or (half_made and not read_only):
        return
    shown = display_url(url)
    if half_made:
        raise StorageError(f"{shown}: a search storage whose making was cut short (a search stopped while it "
                           f"created the tables); `fastmlp search` on it finishes it")
    if ours:
        missing = ", ".join(t for t in OPTUNA_TABLES if t not in tables)
        raise StorageError(f"{shown}: the storage is damaged or is not a fastmlp search storage (Optuna's tables "
                           f"{missing} are missing); nothing was changed")
    if not tables:
        raise StorageError(f"{shown}: no search storage here (the database holds no table); run `fastmlp search` "
                           f"first (or give --storage)")
    names = sorted(tables)
    listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    raise StorageError(f"{shown}: not a search storage: the database holds another program's tables ({listed}) "
                       f"and none of Optuna's; nothing was changed (give a new file or an empty database)")


def _half_made(engine, inspector, tables: set[str]) -> bool:
    """Whether the database holds only some of Optuna's tables, each with Optuna's columns, and no
    study: a search killed while it created them (Optuna creates them one by one). Opening it to
    write creates the others."""
    import sqlalchemy
    from optuna.storages._rdb import models
    schema = {name: set(table.columns.keys()) for name, table in models.BaseModel.metadata.tables.items()}
    schema["alembic_version"] = {"version_num"}
    if not tables <= set(schema):
        return False
    if any({c["name"] for c in inspector.get_columns(name)} != schema[name] for name in tables):
        return False
    if "studies" not in tables:
        return True
    with engine.connect() as connection:
        return connection.execute(sqlalchemy.text("SELECT count(*) FROM studies")).scalar() == 0


def open_rdb(url: str, *, read_only: bool = False, **rdb_kwargs):
    """An Optuna RDBStorage for the ``--storage`` value ``url`` (``rdb_kwargs`` go to it).

    Every failure to open it (no driver, a bad URL, a server that does not answer or refuses the
    login, no such database, no such file for reading, another program's database) is one
    :class:`StorageError` line, with the secrets hidden. ``read_only``: nothing is written, not even
    a lock file (only a killed writer's SQLite transaction is rolled back, as any SQLite reader that
    may write would), and Optuna's tables must already be there.
    """
    optuna = quiet_optuna()
    url = storage_url(url)
    shown = display_url(url)
    path = sqlite_path(url)
    if is_sqlite(url):
        if path is None:
            raise StorageError(f"{shown}: an in-memory SQLite database is gone when the command ends; give a file path")
        if path.is_dir():
            raise StorageError(f"{path}: a folder, not a storage file (give e.g. {path / 'search.db'})")
        if path.exists() and not path.is_file():
            raise StorageError(f"{path}: not a regular file (a device or a pipe), so not a storage file")
        if read_only and not path.exists():
            raise StorageError(f"{path}: no search storage here; run `fastmlp search` first (or give --storage)")
        if not read_only and path.exists() and not os.access(path, os.W_OK):
            raise StorageError(f"{path}: a read-only file; a search writes into its storage (--status, report and "
                               f"dashboard only read it)")
        if not read_only:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"{path.parent}: cannot create the storage's folder ({exc.strerror})") from None
    if path is not None and path.is_file():
        roll_back_a_dead_writer(path)
    target = engine_url(url, read_only)
    kwargs = _engine_kwargs(url, read_only)
    try:
        if not read_only and path is not None and path.exists():  # another program's file: not even a lock file beside it
            _check_tables(url, engine_url(url, read_only=True), kwargs, read_only)
        # two processes creating the tables at once would collide; reading creates none
        with contextlib.nullcontext() if read_only else storage_lock(url):
            _check_tables(url, target, kwargs, read_only)
            # Optuna passes the URL through str.format: braces (of a password, a query) are doubled
            storage = optuna.storages.RDBStorage(target.replace("{", "{{").replace("}", "}}"), engine_kwargs=kwargs,
                                                 skip_table_creation=read_only, **rdb_kwargs)
    except ImportError as exc:
        cause = exc.__cause__ or exc
        raise StorageError(f"{shown}: the database driver is not installed ({redact(cause, url)}); "
                           f"for PostgreSQL: pip install 'fastmlp[postgres]'") from None
    except StorageError:
        raise
    except Exception as exc:  # sqlalchemy errors: unreachable server, wrong password, not a database
        raise StorageError(f"cannot open the storage {shown}: {first_line(exc, url)}") from None
    if path is not None and not read_only:
        _serialize_sqlite(storage.engine)
    elif path is not None:
        _recover_when_a_writer_dies(storage.engine, path)
    return storage


def roll_back_a_dead_writer(path: Path) -> None:
    """Roll back the transaction that a process killed while writing the SQLite file ``path`` left
    in its hot journal, so that read-only connections can read the file again.

    A read-only connection that meets a hot journal fails with SQLITE_READONLY_ROLLBACK (a WAL
    file: SQLITE_READONLY_RECOVERY); one connection that may write rolls it back as it first
    reads (SQLite's own recovery, under SQLite's locks). Any other failure is left to the checks
    that follow, which name it.
    """
    import sqlite3
    try:
        with contextlib.closing(sqlite3.connect(sqlite_uri(path, read_only=True), uri=True,
                                                timeout=SQLITE_BUSY_TIMEOUT)) as connection:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_BUSY:  # waited once already: say so now
            raise StorageError(f"{path}: another process has held the storage locked for {SQLITE_BUSY_TIMEOUT} s "
                               f"(database is locked); try again when it is done") from None
        if getattr(exc, "sqlite_errorcode", None) not in SQLITE_READONLY_DEAD_WRITER:
            return
    if not os.access(path, os.W_OK):
        raise StorageError(f"{path}: {DEAD_WRITER}, and the file is read-only, so its unfinished transaction "
                           f"cannot be rolled back; make it writable and run again")
    with contextlib.suppress(sqlite3.Error), \
            contextlib.closing(sqlite3.connect(sqlite_uri(path), uri=True, timeout=SQLITE_BUSY_TIMEOUT)) as connection:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()


def _recover_when_a_writer_dies(engine, path: Path) -> None:
    """A read-only storage kept open (the dashboard's) whose writer is killed mid-transaction: the
    read that meets the hot journal is one :class:`StorageError` line, and the journal is rolled
    back so that the next read succeeds."""
    from sqlalchemy import event

    @event.listens_for(engine, "handle_error")
    def _roll_back(context):
        if getattr(context.original_exception, "sqlite_errorcode", 0) in SQLITE_READONLY_DEAD_WRITER:
            roll_back_a_dead_writer(path)
            raise StorageError(f"{path}: {DEAD_WRITER}; its unfinished transaction is rolled back now, and the "
                               f"next read sees the last commit")


def _serialize_sqlite(engine) -> None:
    """Every SQLite transaction takes the write lock when it begins (``BEGIN IMMEDIATE``).

    With SQLite's default deferred transactions, two processes that both read and then both try
    to write deadlock, and SQLite answers one of them "database is locked" at once, whatever the
    busy timeout. Taken at BEGIN, the lock is waited for (up to SQLITE_BUSY_TIMEOUT), so
    transactions from any number of processes run one after another. (SQLAlchemy's recipe for
    pysqlite: the driver's own BEGIN off, ours on the ``begin`` event.)
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection, record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners go


@contextlib.contextmanager
def storage_lock(url: str, name: str = "") -> Iterator[None]:
    """A lock shared by every process of every machine on ``url`` (and ``name``).

    SQLite: an ``flock`` on the file ``<database>.lock`` beside it (never on the database file
    itself: closing any descriptor of it would drop SQLite's own locks). PostgreSQL: an advisory
    lock held by a connection of its own, which the server releases if the holder dies. Other
    databases: no lock.
    """
    if is_sqlite(url):
        import fcntl
        path = sqlite_path(url)
        lock = path.with_name(path.name + ".lock")
        try:
            f = open(lock, "a+b")
        except OSError as exc:
            raise StorageError(f"{lock}: cannot create the storage's lock file ({exc.strerror}); a search writes "
                               f"beside its storage") from None
        with f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    elif make_url(url).get_backend_name() == "postgresql":
        import sqlalchemy
        key = zlib.crc32(f"fastmlp:{name}".encode())
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool,
                                          connect_args={"connect_timeout": CONNECT_TIMEOUT})
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        finally:
            engine.dispose()
    else:
        yield
