"""What a service's runtime role is granted on each table (``servicekit.migrations``); the grants themselves
run against PostgreSQL in order-api's tests, as its deployment uses them."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, Table

from servicekit.db import ROW_PRIVILEGES, RUNTIME_OWNS, RUNTIME_PRIVILEGES, new_metadata
from servicekit.migrations import RuntimeRoleError, runtime_privileges
from servicekit.outbox import inbox_table, outbox_table


def table(name: str, **info: object) -> Table:
    return Table(name, new_metadata(), Column("id", Integer, primary_key=True), info=info)


def test_a_table_that_declares_nothing_gets_its_rows_read_and_written() -> None:
    assert runtime_privileges(table("order")) == ROW_PRIVILEGES == ("SELECT", "INSERT", "UPDATE", "DELETE")
    assert runtime_privileges(inbox_table(new_metadata())) == ROW_PRIVILEGES


def test_a_table_may_narrow_them_or_be_handed_over() -> None:
    assert runtime_privileges(table("audit_log", **{RUNTIME_PRIVILEGES: ("SELECT", "INSERT")})) == (
        "SELECT",
        "INSERT",
    )
    assert runtime_privileges(table("nothing", **{RUNTIME_PRIVILEGES: ()})) == ()
    # the service vacuums its outbox itself, which PostgreSQL lets only the owner do
    assert runtime_privileges(outbox_table(new_metadata())) == RUNTIME_OWNS


def test_anything_but_row_privileges_is_refused() -> None:
    with pytest.raises(RuntimeRoleError, match=r"unknown runtime privileges \['TRUNCATE'\]"):
        runtime_privileges(table("audit_log", **{RUNTIME_PRIVILEGES: ("SELECT", "TRUNCATE")}))
