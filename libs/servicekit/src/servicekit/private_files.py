"""Files the desk keeps on the local disk (``var/``: embedded databases, the mail drop, development keys) are
readable by their owner only: directories ``0700``, files ``0600``.

Each file is created with its mode rather than under a changed umask: a umask is process-wide, and would
also change what libraries and the other threads of a service create. SQLite creates a database's ``-wal``
and ``-shm`` files with the mode of the database file itself, so a database created ``0600`` keeps its
companions private too. What an older version left readable by others is tightened when it is next opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger("servicekit.private_files")

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
"""The files SQLite keeps next to a database (write-ahead log, its shared-memory index, rollback journal)."""


def _tighten(path: Path, mode: int) -> None:
    """``chmod`` ``path`` to ``mode`` when others (group or world) may read it; a path this process does not
    own (a mounted volume) is left as it is, with a warning."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & 0o077 == 0:
        return
    try:
        path.chmod(mode)
    except PermissionError:
        log.warning("cannot make %s private (mode %o)", path, current)


def private_directory(path: Path, *, tighten: bool = True) -> Path:
    """``path`` as a directory only its owner can enter: created ``0700`` with any missing parents (they are
    new too, so private as well), or tightened to ``0700`` when it exists (unless ``tighten`` is false)."""
    missing: list[Path] = []
    for directory in (path, *path.parents):
        if directory.exists():
            break
        missing.append(directory)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            directory.mkdir(mode=DIRECTORY_MODE)
    if tighten:
        _tighten(path, DIRECTORY_MODE)
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner can read: created empty with ``0600`` when missing, tightened to
    ``0600`` when it exists. Missing directories are created private; an existing one is left as it is."""
    private_directory(path.parent, tighten=False)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    _tighten(path, FILE_MODE)
    return path


def private_sqlite_database(path: Path) -> None:
    """A SQLite database file and its companions (``-wal``, ``-shm``, ``-journal``) private: the database is
    created ``0600`` before SQLite opens it, so SQLite gives its companions the same mode."""
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        _tighten(path.with_name(path.name + suffix), FILE_MODE)


def write_private_file(path: Path, data: bytes | str, *, replace: bool = True) -> bool:
    """Write ``path`` atomically with mode ``0600``: a temporary file, then a rename, so a reader sees the
    whole file or none of it. Missing directories are created private; an existing one is left as it is.

    With ``replace=False`` an existing file wins and nothing is written (returns False): several processes
    starting together each try, and all end up with the first one's file.
    """
    private_directory(path.parent, tighten=False)
    content = data.encode() if isinstance(data, str) else data
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        Path(temporary).unlink(missing_ok=True)
