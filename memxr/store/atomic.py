"""Writing an output: under a writer lock, into a partial, published by one rename.

Every output memxr writes (a cube store, a result store, a table, a netCDF file, a catalog,
a report, a run's state, a run folder) follows one protocol:

1. its writer takes the output's **writer lock** (:func:`output_lock`); a second writer of
   the same output is refused with one line naming the holder (:class:`OutputLockedError`),
   before it touches anything;
2. the output is built complete under a temporary sibling name (:func:`partial_path`);
3. it is renamed onto its final name (:func:`publish`), so a reader sees either the old
   output or the complete new one, never a half one, also when the writer is killed (a
   store on an object store: published by its root metadata, written last; see
   *Publication on an object store*);
4. the lock is released (and its file removed).

Whatever a killed writer leaves (its partial, its lock file) is resumed or removed by the
next writer of the same output, and listed and removed by :func:`leftovers` and
:func:`clean` (``memxr info``, ``memxr clean``).

Writer locks
------------
A lock belongs to one output (a store, a file or a run folder) and is held for the whole
write. :class:`OutputLock` is the interface, :class:`FileLock` its implementation on a
local (or NFS) file system:

* the lock is ``fcntl.flock`` on ``.NAME.lock`` beside the output, which also holds the
  holder (:class:`Holder`: host, pid and start time, as JSON). The operating system
  releases it when the holder dies, however it dies (``kill -9``, the OOM killer), so a
  lock never outlives its writer: the next writer takes it over and resumes the partial;
* acquiring is never blocking by default (``wait=0``): a writer that finds the lock held
  fails at once (after a grace of :data:`LOCK_GRACE` seconds, which rides over a probe by
  ``memxr info`` and over a holder that is releasing);
* after locking, the writer checks that ``.NAME.lock`` is still the file it locked (a
  holder removes the file when it releases, so a writer that opened the old file retries
  on the new one), which makes the lock safe with its removal;
* the lock is re-entrant within a thread (:func:`write_cube` holds a store's lock and
  publishes it with :func:`publish`; :func:`atomic_path` inside a block holding the same
  lock does not lock again); another thread of the same process is another writer;
* file descriptors are not inherited by programs a writer starts (``O_CLOEXEC``), and
  Dask starts its worker processes by spawning, so workers never hold a lock.

An object store (S3) cannot lock a file; there the lock is a **lease object**
(:class:`LeaseLock`): ``.NAME.lock`` beside the output holding the same :class:`Holder`
JSON plus the lease time and a random token. ``acquire`` creates it with a conditional
write (``PutObject`` with ``If-None-Match: *``), or, when the lease found there has
expired, replaces it with ``If-Match: <its ETag>`` (so of two writers taking over a dead
holder's lease exactly one wins) and reads it back to check its token; a heartbeat thread
of the holder renews it (``If-Match``) every third of the lease time (:func:`lease_seconds`,
60 s unless ``MEMXR_LEASE_SECONDS`` says otherwise); :meth:`LeaseLock.holder` reads the
object (alive: not expired); ``release`` deletes it (``DeleteObject`` with ``If-Match``).
Expiry is judged on the server's clock (its ``Date`` against the lease's
``Last-Modified``), so the clocks of the writers' hosts do not matter. A dead holder stops
renewing, so its lease expires: that is the object-store counterpart of the operating
system releasing an ``flock``. A holder that could not renew in time, or whose lease was
taken over, has lost the lock: :meth:`OutputLock.verify` then raises, and
:func:`memxr.store.write_cube` calls it after every region and before publishing. An S3
server that refuses conditional requests (``501``) gets no store written. AWS S3 and
moto's S3 server (>= 5) honour both conditions on ``PutObject`` and ``If-Match`` on
``DeleteObject``; s3fs passes them through ``call_s3`` (and raises ``FileExistsError`` or
``OSError`` with the ``PreconditionFailed`` cause when one fails). Each class is
registered in :data:`LOCKS` under its URL protocol and :func:`output_lock` picks it for
targets of that protocol.

Publication on an object store
------------------------------
An object store has no rename. A store there is published by its metadata
(:func:`publish` with URL arguments): its data chunks are already at their final keys
(written there by :class:`memxr.store.chunks.ChunkWriter`), its metadata and coordinates
in the partial ``.NAME.partial-TAG/`` beside it; they are copied on the server, the root
metadata last (:data:`ROOT_DOCUMENTS`), and the partial is removed. Until that last
``PUT``, no metadata exist under ``NAME/``, so every Zarr reader (and :func:`published`)
finds no store there; after it, the complete store. :func:`remove_path` removes a store's
root metadata first, so that it disappears at once. Files other than stores (tables,
reports, netCDF) are written to local folders only (:func:`atomic_path` refuses a URL).
See :mod:`memxr.store.write` for the whole protocol and what a reader sees when.

Durability policy
-----------------
By default :func:`publish` also makes the new output *durable* before and after the rename:
every file of the new output and every folder in it is ``fsync``-ed, the rename is done, and
the parent folder is ``fsync``-ed so that the rename itself survives a power loss. A writer
whose bulk data are already on disk, or cheap to resume, passes ``durable=False`` and then
only the rename happens (a write killed by a signal is still safe: the operating system keeps
what was written). :func:`memxr.store.write_cube` does so unless asked for ``durable=True``:
its progress log makes a re-run resume where it stopped, and waiting for the disk after an
ingest of several GB would make it disk-bound.

Temporary names are ``.NAME.partial-TAG`` beside the target (same folder, same file
system, so the rename is atomic); a failed write removes its temporary.

Examples
--------
>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with atomic_path(d / "table.csv") as tmp:
...     _ = tmp.write_text("a,b\\n1,2\\n")
>>> (d / "table.csv").read_text()
'a,b\\n1,2\\n'
>>> sorted(p.name for p in d.iterdir())
['table.csv']
>>> with atomic_path(d / "table.csv") as tmp:
...     _ = tmp.write_text("half")
...     raise RuntimeError("writer failed")
Traceback (most recent call last):
...
RuntimeError: writer failed
>>> (d / "table.csv").read_text(), sorted(p.name for p in d.iterdir())
('a,b\\n1,2\\n', ['table.csv'])

A second writer of an output that is being written is refused, naming the holder:

>>> with output_lock(d / "c.zarr") as lock:
...     holder = lock.holder()
...     seen = sorted(p.name for p in d.iterdir())
...     FileLock(d / "c.zarr").acquire()
Traceback (most recent call last):
...
memxr.store.atomic.OutputLockedError: c.zarr: out: being written by pid ... on ... since ...
>>> holder.pid == os.getpid(), holder.alive, seen
(True, True, ['.c.zarr.lock', 'table.csv'])
>>> sorted(p.name for p in d.iterdir())
['table.csv']
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..provenance import now_utc
from .layout import is_remote, protocol, url_fs

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None

__all__ = [
    "LOCKS",
    "LOCK_GRACE",
    "FileLock",
    "Holder",
    "OutputLock",
    "OutputLockedError",
    "atomic_path",
    "clean",
    "fsync_path",
    "leftovers",
    "lock_path",
    "output_lock",
    "LeaseLock",
    "ROOT_DOCUMENTS",
    "lease_seconds",
    "partial_path",
    "publish",
    "published",
    "remove_path",
    "write_text",
]

LOCK_GRACE = 0.25
"""Seconds a writer keeps trying a held lock before it is refused (see *Writer locks*)."""


# --------------------------------------------------------------------------- names


def _split(target: str) -> tuple[str, str]:
    """A URL as (parent URL, name): ``s3://b/p/c.zarr`` -> (``s3://b/p``, ``c.zarr``)."""
    parent, _, name = target.rstrip("/").rpartition("/")
    return parent, name


def partial_path(target: str | os.PathLike, tag: str | None = None) -> Path | str:
    """The temporary sibling of ``target``: ``.NAME.partial-TAG`` (TAG: the process id).

    A URL target gives a URL (a prefix beside it on the object store).

    Examples
    --------
    >>> partial_path("s3://bucket/stores/c.zarr", "ab12")
    's3://bucket/stores/.c.zarr.partial-ab12'
    """
    tag = os.getpid() if tag is None else tag
    if is_remote(target):
        parent, name = _split(str(target))
        return f"{parent}/.{name}.partial-{tag}"
    target = Path(target)
    return target.parent / f".{target.name}.partial-{tag}"


def lock_path(target: str | os.PathLike) -> Path | str:
    """The lock file of an output: ``.NAME.lock`` beside it (the name of ``.`` is resolved).

    For a URL target, the lease object's URL (see *Writer locks*).

    Examples
    --------
    >>> lock_path("/data/stores/c.zarr").as_posix()
    '/data/stores/.c.zarr.lock'
    >>> lock_path("s3://bucket/stores/c.zarr")
    's3://bucket/stores/.c.zarr.lock'
    """
    if is_remote(target):
        parent, name = _split(str(target))
        return f"{parent}/.{name}.lock"
    target = Path(os.path.abspath(target))
    return target.parent / f".{target.name}.lock"


def partials(target: Path | str) -> list[Path] | list[str]:
    """Every partial of ``target`` beside it (of any writer, live or dead)."""
    if is_remote(target):
        parent, name = _split(str(target))
        prefix = f".{name}.partial-"
        return [f"{parent}/{n}" for n in _remote_names(parent) if n.startswith(prefix)]
    target = Path(target)
    prefix = f".{target.name}.partial-"
    if not target.parent.is_dir():
        return []
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefix))


def _remote_names(parent: str) -> list[str]:
    """Names of the objects and prefixes directly under a URL (empty when there is none)."""
    fs, root = url_fs(parent)
    try:
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(root, detail=False))
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------- locks


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) the writer lock of an output.

    Attributes
    ----------
    host, pid : str, int
        Where the writer runs.
    since : str
        When it took the lock (ISO 8601 UTC).
    alive : bool
        Whether it holds the lock now (False: it died and left the lock file behind).
    """

    host: str
    pid: int
    since: str
    alive: bool = True

    def describe(self) -> str:
        """``pid 4242 on node1 since 2026-11-30T10:00:00Z``."""
        if not self.pid:
            return "a writer that has not yet recorded itself"
        return f"pid {self.pid} on {self.host} since {self.since}"

    def to_json(self) -> str:
        return json.dumps({"host": self.host, "pid": self.pid, "since": self.since})

    @classmethod
    def from_json(cls, text: str, alive: bool) -> Holder:
        try:
            d = json.loads(text)
            return cls(str(d["host"]), int(d["pid"]), str(d["since"]), alive)
        except (ValueError, KeyError, TypeError):
            return cls("?", 0, "?", alive)


class OutputLockedError(InputError):
    """Another writer holds the output's lock: one line naming the output and the holder."""

    def __init__(self, target: str | os.PathLike, holder: Holder | None):
        self.target, self.holder = str(target), holder
        who = holder.describe() if holder else "another writer"
        super().__init__(
            target,
            "out",
            f"being written by {who}; wait for it to finish, or stop it and rerun to resume",
        )

    def __reduce__(self):
        return type(self), (self.target, self.holder)


class OutputLock(abc.ABC):
    """The writer lock of one output (see *Writer locks* in this module's docstring).

    Implementations: :class:`FileLock` (local and NFS file systems) and :class:`LeaseLock`
    (S3: a lease object).
    """

    def __init__(self, target: str | os.PathLike):
        self.target = target

    @property
    def name(self) -> str:
        """The output's name, as error messages show it."""
        return Path(os.path.abspath(self.target)).name

    @property
    def key(self) -> str:
        """What identifies the lock within a process (re-entrancy of :func:`output_lock`)."""
        return os.fspath(self.target)

    @abc.abstractmethod
    def acquire(self, wait: float = 0.0) -> Holder:
        """Take the lock, trying for ``wait`` seconds (at least :data:`LOCK_GRACE`).

        Returns the new :class:`Holder` (this process); raises :class:`OutputLockedError`
        naming the current holder when another writer keeps it.
        """

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock up and remove its trace (nothing of the lock stays behind)."""

    @abc.abstractmethod
    def holder(self) -> Holder | None:
        """Who holds or last held the lock (``alive`` says which), None if no trace is left.

        Only reads: never takes the lock for longer than a probe.
        """

    @property
    @abc.abstractmethod
    def held(self) -> bool:
        """Whether this object holds the lock."""

    @abc.abstractmethod
    def verify(self) -> None:
        """Raise :class:`memxr.errors.InputError` if the lock was lost while held.

        An ``flock`` cannot be lost; a lease can (its holder could not renew it in time,
        and another writer took it over): a writer calls this before each step that must
        not happen without the lock (a region logged as done, the publication).
        """

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class FileLock(OutputLock):
    """:class:`OutputLock` as ``fcntl.flock`` on ``.NAME.lock`` beside the output."""

    def __init__(self, target: str | os.PathLike):
        super().__init__(target)
        self.path = lock_path(target)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def key(self) -> str:
        return str(self.path)

    def acquire(self, wait: float = 0.0) -> Holder:
        if fcntl is None:  # pragma: no cover - not a POSIX system
            raise InputError(self.path, "lock", "writer locks need a POSIX system (fcntl)")
        if self._fd is not None:
            raise RuntimeError(f"{self.name}: lock already held by this object")
        deadline = time.monotonic() + max(float(wait), LOCK_GRACE)
        pause = 0.01
        while True:
            fd = self._open_locked()
            if fd is not None:
                break
            if time.monotonic() >= deadline:
                raise OutputLockedError(self.target, self.holder())
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        holder = Holder(socket.gethostname(), os.getpid(), now_utc())
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.to_json().encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return holder

    def verify(self) -> None:
        """Nothing to check: the operating system keeps an ``flock`` until it is released."""

    def _open_locked(self) -> int | None:
        """The locked descriptor of the current ``.NAME.lock``, or None when it is held."""
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                msg = f"cannot create its lock file {self.path.name}: {e.strerror}"
                raise InputError(self.target, "out", msg) from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except OSError as e:
                os.close(fd)
                raise InputError(self.path, "lock", f"the file system refuses locks: {e}") from e
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # the holder removed the file after we opened it: try the new one

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(self.path)  # while still locked: see _open_locked
        finally:
            os.close(fd)

    def holder(self) -> Holder | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            if self._fd is not None:
                alive = True
            else:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    alive = False
                except BlockingIOError:
                    alive = True
        finally:
            os.close(fd)
        return Holder.from_json(text, alive)


def lease_seconds() -> float:
    """How long a lease lives without renewal: ``MEMXR_LEASE_SECONDS``, else 60."""
    try:
        value = float(os.environ.get("MEMXR_LEASE_SECONDS", "60"))
    except ValueError:
        raise InputError("MEMXR_LEASE_SECONDS", "value", "is not a number of seconds") from None
    if not value > 0:
        raise InputError("MEMXR_LEASE_SECONDS", "value", "must be positive")
    return value


def _s3_code(error: BaseException) -> str:
    """The S3 error code behind an error of s3fs (``PreconditionFailed``...), or ``""``."""
    for e in (error, error.__cause__, error.__context__):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
    return ""


_LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_UNSUPPORTED = {"NotImplemented", "501"}


class LeaseLock(OutputLock):
    """:class:`OutputLock` on S3: a lease object ``.NAME.lock`` beside the output.

    The object holds the :class:`Holder` JSON plus the lease time and a random token.
    Every change is a conditional write, so that of two writers exactly one wins:

    * ``acquire``: ``PutObject`` with ``If-None-Match: *`` (created only where there is
      none). If a lease is there, it is read (one ``GetObject``: body, ETag, its
      ``Last-Modified`` and the server's ``Date``); when it has expired (the server's
      clock: ``Date - Last-Modified`` beyond the holder's lease time, so clocks of the
      writers' hosts do not matter) it is replaced with ``If-Match: <its ETag>``. The new
      lease is then read back and its token checked (a server that ignored the condition
      is caught here in all but a simultaneous race);
    * a heartbeat thread renews it every third of the lease time (``If-Match``: only
      our own version is replaced); a renewal refused by the condition, or none for a
      whole lease time, marks the lock lost, and :meth:`verify` then fails;
    * ``release``: ``DeleteObject`` with ``If-Match`` (never another writer's lease);
    * :meth:`holder`: the lease read, ``alive`` while not expired.

    A writer killed, however, stops renewing: its lease expires after
    :func:`lease_seconds` and the next writer takes it over (and resumes the partial).
    An S3 server refusing conditional requests (``501 NotImplemented``) is reported: memxr
    writes no store there rather than write without a lock.
    """

    def __init__(self, target: str | os.PathLike, storage_options: dict | None = None):
        super().__init__(target)
        self.url = str(lock_path(target))
        self.fs, path = url_fs(self.url, storage_options)
        self.bucket, _, self.object_key = path.partition("/")
        self._etag: str | None = None
        self._body = b""
        self._lost: str | None = None
        self._renewed = 0.0
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._etag is not None

    @property
    def key(self) -> str:
        return self.url

    # -- requests

    def _put(self, body: bytes, **condition) -> str:
        try:
            r = self.fs.call_s3(
                "put_object", Bucket=self.bucket, Key=self.object_key, Body=body, **condition
            )
        except Exception as e:
            if _s3_code(e) in _UNSUPPORTED:
                raise InputError(
                    self.target, "out", "the object store refuses conditional writes "
                    "(If-None-Match/If-Match): no writer lock can be taken there"
                ) from e
            raise
        return str(r["ETag"])

    def _get(self) -> tuple[dict, str, float] | None:
        """(lease JSON, ETag, seconds since it was last written) or None when absent."""
        from email.utils import parsedate_to_datetime

        from fsspec.asyn import sync

        async def get():
            r = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.object_key)
            async with r["Body"] as body:
                data = await body.read()
            return data, r

        try:
            data, r = sync(self.fs.loop, get)
        except FileNotFoundError:
            return None
        date = r.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = parsedate_to_datetime(date).timestamp() if date else time.time()
        try:
            lease = json.loads(data.decode("utf-8", "replace"))
        except ValueError:
            lease = {}
        age = now - r["LastModified"].timestamp()
        return (lease if isinstance(lease, dict) else {}), str(r["ETag"]), age

    @staticmethod
    def _expired(lease: dict, age: float) -> bool:
        try:
            seconds = float(lease.get("lease", 60))
        except (TypeError, ValueError):
            seconds = 60.0
        return age > seconds

    # -- the interface

    def acquire(self, wait: float = 0.0) -> Holder:
        if self._etag is not None:
            raise RuntimeError(f"{self.url}: lock already held by this object")
        import uuid

        seconds = lease_seconds()
        holder = Holder(socket.gethostname(), os.getpid(), now_utc())
        token = uuid.uuid4().hex
        body = json.dumps(
            {**json.loads(holder.to_json()), "lease": seconds, "token": token}
        ).encode()
        deadline = time.monotonic() + max(float(wait), LOCK_GRACE)
        pause = 0.05
        while True:
            try:
                self._put(body, IfNoneMatch="*")
                break
            except InputError:
                raise
            except Exception as e:
                if _s3_code(e) not in _LOST_RACE and not isinstance(e, FileExistsError):
                    raise
            found = self._get()
            if found is not None and self._expired(found[0], found[2]):
                try:
                    self._put(body, IfMatch=found[1])
                    break
                except InputError:
                    raise
                except Exception as e:
                    if _s3_code(e) not in _LOST_RACE:
                        raise
            if time.monotonic() >= deadline:
                raise OutputLockedError(self.target, self.holder())
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        mine = self._get()
        if mine is None or mine[0].get("token") != token:
            raise OutputLockedError(self.target, self.holder())
        self._etag, self._body, self._lost = mine[1], body, None
        self._renewed = time.monotonic()
        self._stop.clear()
        self._beat = threading.Thread(
            target=self._heartbeat, args=(seconds,), name=f"lease {self.url}", daemon=True
        )
        self._beat.start()
        return holder

    def _heartbeat(self, seconds: float) -> None:
        while not self._stop.wait(seconds / 3):
            etag = self._etag
            if etag is None:
                return
            try:
                self._etag = self._put(self._body, IfMatch=etag)
                self._renewed = time.monotonic()
            except Exception as e:  # noqa: BLE001 - recorded, raised by verify()
                if _s3_code(e) in _LOST_RACE:
                    self._lost = "another writer took the lease over"
                    return
                if time.monotonic() - self._renewed > seconds:
                    self._lost = f"not renewed for {seconds:.0f} s ({type(e).__name__})"
                    return

    def verify(self) -> None:
        if self._etag is None:
            return
        lost = self._lost
        if lost is None and time.monotonic() - self._renewed > lease_seconds():
            lost = "not renewed in time"
        if lost is not None:
            raise InputError(
                self.target, "out", f"the writer lock was lost ({lost}); stopped, nothing "
                "published; rerun to resume"
            )

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()  # after its last renewal: self._etag is the lease's
            self._beat = None
        etag, self._etag = self._etag, None
        if etag is None or self._lost is not None:
            return
        with contextlib.suppress(FileNotFoundError):
            try:
                self.fs.call_s3(
                    "delete_object", Bucket=self.bucket, Key=self.object_key, IfMatch=etag
                )
            except Exception as e:
                if _s3_code(e) not in _LOST_RACE:
                    raise

    def holder(self) -> Holder | None:
        found = self._get()
        if found is None:
            return None
        lease, _, age = found
        alive = self.held or not self._expired(lease, age)
        return Holder.from_json(json.dumps(lease), alive)


LOCKS: dict[str, type[OutputLock]] = {"file": FileLock, "s3": LeaseLock}
"""Lock implementations by the protocol of the output (``file``: local paths, ``s3``)."""

_HELD: dict[str, tuple[int, OutputLock, int]] = {}  # lock path -> (thread, lock, depth)
_HELD_GUARD = threading.Lock()


def _lock_for(target: str | os.PathLike) -> OutputLock:
    text = os.fspath(target)
    kind = protocol(text)
    if kind not in LOCKS:
        raise InputError(text, "out", f"no writer lock for {kind}:// outputs")
    return LOCKS[kind](text.removeprefix("file://"))


@contextlib.contextmanager
def output_lock(target: str | os.PathLike, *, wait: float = 0.0) -> Iterator[OutputLock]:
    """Hold the writer lock of ``target`` for the block (re-entrant within a thread).

    Parameters
    ----------
    target : str or path
        The output (store, file or run folder), existing or not.
    wait : float
        Seconds to keep trying while another writer holds it (0: refuse at once, after
        :data:`LOCK_GRACE`).

    Raises
    ------
    OutputLockedError
        When another writer holds the lock: one line naming the output and the holder.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with output_lock(d / "run") as lock, output_lock(d / "run") as again:
    ...     print(lock is again, lock.holder().pid == os.getpid())
    True True
    """
    lock = _lock_for(target)
    key = lock.key
    me = threading.get_ident()
    with _HELD_GUARD:
        entry = _HELD.get(key)
        if entry is not None and entry[0] == me:
            _HELD[key] = (me, entry[1], entry[2] + 1)
            lock = None
    if lock is None:
        try:
            yield entry[1]
        finally:
            with _HELD_GUARD:
                thread, held, depth = _HELD[key]
                _HELD[key] = (thread, held, depth - 1)
        return
    lock.acquire(wait)
    with _HELD_GUARD:
        _HELD[key] = (me, lock, 1)
    try:
        yield lock
    finally:
        with _HELD_GUARD:
            del _HELD[key]
        lock.release()


# --------------------------------------------------------------------------- leftovers


def _age(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.5 h``, ``2.0 d``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _tree_bytes(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    return sum(
        (Path(folder) / f).stat().st_size for folder, _, files in os.walk(path) for f in files
    )


def leftovers(target: str | os.PathLike) -> list[dict]:
    """The partials (and a lock file) beside an output, with their holder and age.

    Returns
    -------
    list of dict
        One per partial or lock file: ``name``, ``kind`` ("partial" or "lock"),
        ``bytes``, ``age`` (since last modified, e.g. ``"12 min"``), ``age_seconds``
        and ``holder`` (the :class:`Holder` of the output's lock, None if unknown).
        A partial whose holder is alive is being written; any other is debris of a
        killed or refused write (resumed by the next write, or removed by :func:`clean`).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / ".c.zarr.partial-0123").mkdir()
    >>> [(x["name"], x["kind"], x["holder"]) for x in leftovers(d / "c.zarr")]
    [('.c.zarr.partial-0123', 'partial', None)]
    """
    if is_remote(target):
        return _remote_leftovers(str(target))
    target = Path(target)
    holder = FileLock(target).holder()
    found = partials(target)
    lock_file = lock_path(target)
    if lock_file.exists():
        found.append(lock_file)
    now = time.time()
    out = []
    for p in found:
        try:
            age = max(0.0, now - p.stat().st_mtime)
            size = _tree_bytes(p)
        except FileNotFoundError:  # finished or removed meanwhile
            continue
        out.append(
            {
                "name": p.name,
                "kind": "lock" if p == lock_file else "partial",
                "bytes": size,
                "age": _age(age),
                "age_seconds": round(age, 1),
                "holder": holder,
            }
        )
    return out


def _remote_leftovers(target: str) -> list[dict]:
    """:func:`leftovers` of an output on an object store: its partials, the chunks of an
    unpublished store under its own name, and its lease."""
    holder = _lock_for(target).holder()
    found = [(p, "partial") for p in partials(target)]
    if not published(target) and _remote_names(target):
        found.append((target, "unpublished"))
    lease = str(lock_path(target))
    now = time.time()
    out = []
    for url, kind in found:
        fs, root = url_fs(url)
        objects = fs.find(root, detail=True)
        if not objects:
            continue
        newest = max(_modified(o) for o in objects.values())
        out.append(_leftover(url, kind, sum(o.get("size", 0) for o in objects.values()),
                             now - newest, holder))
    if holder is not None:
        fs, root = url_fs(lease)
        with contextlib.suppress(FileNotFoundError):
            info = fs.info(root)
            out.append(_leftover(lease, "lock", info.get("size", 0), now - _modified(info), holder))
    return out


def _modified(info: dict) -> float:
    """Seconds since the epoch at which an object (fsspec ``info``) was last written."""
    value = info.get("LastModified") or info.get("last_modified") or info.get("mtime")
    return value.timestamp() if hasattr(value, "timestamp") else float(value or 0)


def _leftover(url: str, kind: str, size: int, age: float, holder: Holder | None) -> dict:
    age = max(0.0, age)
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return {
        "name": name,
        "kind": kind,
        "bytes": int(size),
        "age": _age(age),
        "age_seconds": round(age, 1),
        "holder": holder,
    }


def published(target: str | os.PathLike) -> bool:
    """Whether an output exists under its final name (a store on an object store: whether
    its root metadata, the last object of its publication, is there).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> published(pathlib.Path(tempfile.mkdtemp()) / "c.zarr")
    False
    """
    if not is_remote(target):
        target = Path(target)
        return target.exists() or target.is_symlink()
    fs, root = url_fs(str(target))
    return any(fs.exists(f"{root}/{name}") for name in ("zarr.json", ".zgroup")) or fs.isfile(
        root
    )


def remove_stale(target: str | os.PathLike, keep: Path | str | None = None) -> list:
    """Remove the partials of ``target`` but ``keep`` (call with the output's lock held)."""
    target = target if is_remote(target) else Path(target)
    removed = []
    for p in partials(target):
        if p != keep:
            remove_path(p)
            removed.append(p)
    return removed


def clean(target: str | os.PathLike) -> list[Path]:
    """Remove the debris of killed or refused writes of an output, and inside a folder output.

    Takes the output's lock (so nothing is removed while a writer is alive), removes every
    partial beside the output, then, for a folder (a run folder), the debris of the
    outputs inside it whose own lock is free; releasing the lock removes the lock file a
    dead writer left.

    Returns
    -------
    list of pathlib.Path
        What was removed.

    Raises
    ------
    OutputLockedError
        When a live writer holds the output (nothing is removed).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / ".c.zarr.partial-0123").mkdir()
    >>> [p.name for p in clean(d / "c.zarr")], list(d.iterdir())
    (['.c.zarr.partial-0123'], [])
    """
    if is_remote(target):
        return _clean_remote(str(target))
    target = Path(target)
    if not target.parent.is_dir():
        return []
    stale_lock = lock_path(target) if lock_path(target).exists() else None
    with output_lock(target):  # taken: a lock file found there was a dead writer's
        removed = remove_stale(target)
        if target.is_dir():
            removed += _clean_inside(target)
    return removed + ([stale_lock] if stale_lock and not stale_lock.exists() else [])


def _clean_remote(target: str) -> list[str]:
    """:func:`clean` on an object store: partials, an unpublished store's chunks, a dead lease."""
    stale_lock = _lock_for(target).holder() is not None
    with output_lock(target):  # taken: a lease found there had expired
        removed = remove_stale(target)
        if not published(target) and _remote_names(target):
            remove_path(target)
            removed.append(target)
    return removed + ([str(lock_path(target))] if stale_lock else [])


def _clean_inside(folder: Path) -> list[Path]:
    """Debris inside a folder output, output by output (a held output is skipped)."""
    outputs: set[Path] = set()
    for parent, dirs, files in os.walk(folder):
        for name in list(dirs) + files:
            if name.startswith(".") and (".partial-" in name or name.endswith(".lock")):
                stem = name[1:].split(".partial-")[0] if ".partial-" in name else name[1:-5]
                outputs.add(Path(parent) / stem)
        dirs[:] = [d for d in dirs if ".partial-" not in d]  # do not descend into debris
    removed = []
    for output in sorted(outputs):
        with contextlib.suppress(OutputLockedError):
            removed += clean(output)
    return removed


# --------------------------------------------------------------------------- publication


ROOT_DOCUMENTS = (".zattrs", ".zgroup", ".zmetadata", "zarr.json")
"""The root metadata of a Zarr store (format 2, then 3), in the order of publication: the
last one written makes the store exist for its readers (``zarr.json``; in format 2
``.zgroup``, then the consolidated ``.zmetadata``)."""

_METADATA = {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"}


def remove_path(path: str | os.PathLike) -> None:
    """Remove a file or a folder (a store) if it exists.

    On an object store, the root metadata of a store goes first: from the first request
    on, readers see no store (rather than one losing its chunks).
    """
    if is_remote(path):
        fs, root = url_fs(str(path))
        for name in reversed(ROOT_DOCUMENTS):
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(f"{root}/{name}")
        with contextlib.suppress(FileNotFoundError):
            objects = fs.find(root)
            if objects:
                fs.rm(objects)
        return
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or a folder (errors of file systems that cannot are ignored)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(path: Path) -> None:
    """fsync every file of a folder (or the file itself), then the folders, deepest first."""
    if not path.is_dir():
        fsync_path(path)
        return
    for folder, _, files in os.walk(path, topdown=False):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


def publish(tmp: str | os.PathLike, target: str | os.PathLike, *, durable: bool = True) -> Path:
    """Rename a complete file or folder ``tmp`` onto ``target`` (replacing what is there).

    The caller holds the output's lock (:func:`output_lock`).

    Parameters
    ----------
    tmp : str or path
        The new output, complete, in the same folder as ``target``.
    target : str or path
        Its final name. An existing file or folder there is replaced; a folder is first
        moved aside and removed only after the new one is in place.
    durable : bool
        fsync the new output before the rename and the parent folder after it (see the
        durability policy in this module's docstring).

    Returns
    -------
    pathlib.Path
        ``target``.
    """
    if is_remote(target):
        return _publish_remote(str(tmp), str(target))
    tmp, target = Path(tmp), Path(target)
    if durable:
        _fsync_tree(tmp)
    if target.is_dir() and not target.is_symlink():
        old = partial_path(target, f"old-{os.getpid()}")
        remove_path(old)
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)
            raise
        remove_path(old)
    else:
        os.replace(tmp, target)
    if durable:
        fsync_path(target.parent)
    return target


def _publish_remote(tmp: str, target: str) -> str:
    """Copy a partial store into place on an object store, its root metadata last.

    The objects of ``tmp`` (metadata and coordinates; data chunks are already in place,
    written there by :class:`memxr.store.chunks.ChunkWriter`) are copied on the server
    under ``target``: chunks first, then the arrays' metadata, then the root metadata in
    the order of :data:`ROOT_DOCUMENTS`. The last of them publishes the store; ``tmp`` is
    removed after it.
    """
    fs, src = url_fs(tmp)
    _, dst = url_fs(target)
    names = sorted(o[len(src) + 1 :] for o in fs.find(src))
    root = [n for n in ROOT_DOCUMENTS if n in names]
    meta = [n for n in names if n.rsplit("/", 1)[-1] in _METADATA and n not in root]
    data = [n for n in names if n not in root and n not in meta]
    for group in (data, meta):
        if group:
            fs.copy([f"{src}/{n}" for n in group], [f"{dst}/{n}" for n in group])
    for name in root:
        fs.copy(f"{src}/{name}", f"{dst}/{name}")
    remove_path(tmp)
    return target


@contextlib.contextmanager
def atomic_path(
    target: str | os.PathLike, *, durable: bool = True, wait: float = 0.0
) -> Iterator[Path]:
    """A temporary sibling path to write ``target`` into; published when the block succeeds.

    The block runs holding the output's lock (:func:`output_lock`, trying for ``wait``
    seconds; already held by the caller is fine), and partials left beside ``target`` by
    killed writers are removed first. Nothing is created at the yielded path: the block
    writes a file or a folder there. On an exception the temporary is removed and
    ``target`` is left as it was.

    Raises
    ------
    OutputLockedError
        When another writer holds ``target`` (before anything is written).
    """
    if is_remote(target):
        raise InputError(
            target, "out", "files are written to local folders; object storage holds stores"
        )
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target, wait=wait):
        tmp = partial_path(target)
        remove_stale(target)
        try:
            yield tmp
            publish(tmp, target, durable=durable)
        finally:
            remove_path(tmp)


def write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> Path:
    """Write a text file (UTF-8, ``\\n`` line ends) atomically."""
    path = Path(path)
    with atomic_path(path, durable=durable) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return path
