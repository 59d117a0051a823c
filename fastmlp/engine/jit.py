"""The one way the engine compiles a function: :func:`kernel`, Numba's ``njit`` with the engine's options.

Every kernel is nopython, cached on disk (``cache=True``), with NumPy's error model (a division
by zero gives inf, as in NumPy, with no check compiled in), and compiled for one signature per
argument types. That last point is not Numba's default: a call from one kernel to another with a
constant argument (``gemm(True, ...)``, an offset of ``0``) makes Numba compile a specialisation
for that literal value, so one small function used from ten call sites compiled ten times.
:func:`kernel` types every call from another kernel by the arguments' plain types instead, so a
kernel compiles once for each combination of array and scalar types it is called with.

Numba compiles every kernel as a module of its own, with every kernel it calls linked in and
optimised again, so a deep tree of small kernels costs far more to compile than the same code in
a few: the pieces of a single caller are ``inline`` (merged into it before typing).

Numba caches a kernel beside its source (``__pycache__``), or under ``NUMBA_CACHE_DIR``, or in the
user's cache folder (under ``HOME``), and refuses to define a cached function when none of them is
writable: a package installed read-only and run by a user without a usable home (a container run
by another user). :func:`ensure_cache_location` then points Numba at a folder of the temporary
folder that only this user can write, so the engine runs (and compiles once per machine and user).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from numba import config, njit, types
from numba.core.caching import FunctionCache


def kernel(fn=None, *, nogil: bool = False, fastmath=False, inline: bool = False):
    """``@njit(cache=True, error_model="numpy")`` whose calls from other kernels never specialise on
    literal values (see the module). ``nogil``: the kernel releases the GIL (the workers that
    :mod:`fastmlp.engine.pool` runs on several threads). ``fastmath`` as Numba's. ``inline``: a
    piece of one caller (or of a few), merged into the caller's code where it is called rather than
    compiled and optimised once more as a function of its own (a call from Python still compiles it
    alone, for the tests). A kernel that tests an argument ``is None`` to leave code out must not
    be inline: Numba prunes such branches by the type of a function's own arguments only."""
    def wrap(f):
        options = dict(cache=True, error_model="numpy", nogil=nogil, fastmath=fastmath)
        if inline:
            options["inline"] = "always"
        dispatcher = njit(**options)(f)
        typed_call = dispatcher.get_call_template

        def get_call_template(args, kws):
            return typed_call(tuple(types.unliteral(a) for a in args),
                              {k: types.unliteral(v) for k, v in kws.items()})

        dispatcher.get_call_template = get_call_template
        return dispatcher

    return wrap(fn) if fn is not None else wrap


ENGINE = Path(__file__).resolve().parent
STAMP = "fastmlp-engine-sources.sha1"


def _probe():  # a function of this folder, for asking Numba where the engine's kernels would be cached
    return None


def _can_cache() -> bool:
    try:
        FunctionCache(_probe)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return False
    return True


def _private_folder(path: Path) -> bool:
    """Whether ``path`` is a folder (not a link) of this user's that no one else can write into."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def ensure_cache_location() -> None:
    """Make sure Numba can cache the engine's kernels; when neither ``__pycache__``, ``NUMBA_CACHE_DIR``
    nor the user's cache folder is writable, use ``fastmlp-numba-<uid>`` in the temporary folder (or,
    when that is not this user's alone, a fresh temporary folder: cached kernels are loaded code)."""
    if _can_cache():
        return
    folder = Path(tempfile.gettempdir()) / f"fastmlp-numba-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        pass
    if not _private_folder(folder):
        try:
            folder = Path(tempfile.mkdtemp(prefix="fastmlp-numba-"))
        except OSError:
            return  # nowhere to write at all: Numba says so when it compiles
    os.environ["NUMBA_CACHE_DIR"] = str(folder)  # Numba reloads its configuration from the environment
    config.CACHE_DIR = str(folder)


ensure_cache_location()  # before any kernel is defined: Numba asks for a cache location then


def drop_stale_caches() -> None:
    """Drop the engine's compiled kernels cached on disk when any engine source file changed.

    Numba's cache of a kernel notices a change in the kernel's own file only, but the engine's
    kernels inline and link each other across files: a constant changed in one file would leave
    another file's cached kernel running the old one (buffers sized by the new rule, indexed by
    the old: a crash). So a hash of every source file of the engine is kept beside its caches (in
    ``__pycache__``, or under ``NUMBA_CACHE_DIR``), and the caches go when it changes. An installed
    release never hits this (every file is new); editing the engine does."""
    digest = hashlib.sha1()
    for path in sorted(ENGINE.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    stamp = digest.hexdigest()
    folder = ENGINE / "__pycache__"
    if config.CACHE_DIR:
        from numba.core.caching import _CacheLocator
        folder = Path(config.CACHE_DIR) / _CacheLocator.get_suitable_cache_subpath(str(ENGINE / "jit.py"))
    try:
        if (folder / STAMP).read_text() == stamp:
            return
    except OSError:
        pass
    try:
        for cached in list(folder.glob("*.nbi")) + list(folder.glob("*.nbc")):
            cached.unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{STAMP}.{os.getpid()}"
        tmp.write_text(stamp)
        os.replace(tmp, folder / STAMP)
    except OSError:  # a read-only install: Numba will not cache there either
        pass
