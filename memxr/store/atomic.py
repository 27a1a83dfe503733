"""Putting a new file or folder into place atomically: the one way memxr publishes an output.

Every output memxr writes (a cube store, a result store, a table, a netCDF file, a catalog,
a report, a run's state) is built complete under a temporary sibling name and renamed onto
its final name, so a reader sees either the old output or the complete new one, never a half
one, also when the writer is killed.

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
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "fsync_path", "partial_path", "publish", "remove_path", "write_text"]


def partial_path(target: str | os.PathLike, tag: str | None = None) -> Path:
    """The temporary sibling of ``target``: ``.NAME.partial-TAG`` (TAG: the process id)."""
    target = Path(target)
    return target.parent / f".{target.name}.partial-{os.getpid() if tag is None else tag}"


def remove_path(path: str | os.PathLike) -> None:
    """Remove a file or a folder (a store) if it exists."""
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


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """A temporary sibling path to write ``target`` into; published when the block succeeds.

    Nothing is created at the yielded path: the block writes a file or a folder there. On
    an exception the temporary is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(target)
    remove_path(tmp)
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
