"""What the desk writes on the local disk is its owner's only: ``var/`` 0700, every file in it 0600, SQLite's
``-wal`` and ``-shm`` included, and what an older version left readable is tightened when next opened."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import text

from servicekit.db import Database
from servicekit.private_files import private_directory, private_file, write_private_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_an_embedded_database_and_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    var = tmp_path / "var"
    database = Database(url=None, schema="kit", var_dir=var, service_name="kit")
    try:
        async with database.engine.begin() as connection:
            await connection.execute(text("CREATE TABLE note (body TEXT)"))
            await connection.execute(text("INSERT INTO note VALUES ('carol@example.com')"))
        async with database.engine.connect() as connection:  # open: the -wal and -shm files exist
            await connection.execute(text("SELECT body FROM note"))
            files = {path.name: mode(path) for path in var.iterdir()}
            assert files == {"kit.db": 0o600, "kit.db-wal": 0o600, "kit.db-shm": 0o600}
            assert mode(var) == 0o700
    finally:
        await database.dispose()


async def test_files_an_older_version_left_readable_are_tightened(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    for name in ("kit.db", "kit.db-wal"):
        (var / name).write_bytes(b"")
        (var / name).chmod(0o644)
    database = Database(url=None, schema="kit", var_dir=var, service_name="kit")
    await database.dispose()
    assert mode(var) == 0o700
    assert {path.name: mode(path) for path in var.iterdir()} == {"kit.db": 0o600, "kit.db-wal": 0o600}


def test_private_directories_files_and_atomic_writes(tmp_path: Path) -> None:
    nested = private_directory(tmp_path / "a" / "b")
    assert (mode(tmp_path / "a"), mode(nested)) == (0o700, 0o700)
    assert mode(private_file(nested / "empty")) == 0o600
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "open").chmod(0o755)
    assert mode(private_file(tmp_path / "open" / "db")) == 0o600
    assert mode(tmp_path / "open") == 0o755  # a directory the file goes into is not the file's to change

    target = tmp_path / "shared" / "keys.json"
    (tmp_path / "shared").mkdir(mode=0o755)
    (tmp_path / "shared").chmod(0o755)
    assert write_private_file(target, "first", replace=False)
    assert not write_private_file(target, "second", replace=False)  # the first writer wins
    assert target.read_text() == "first"
    assert write_private_file(target, b"third")
    assert (target.read_text(), mode(target)) == ("third", 0o600)
    assert mode(tmp_path / "shared") == 0o755  # an existing directory the file goes into is left alone
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["keys.json"]  # no temporary left
