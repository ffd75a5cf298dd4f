"""Hand-written statements with named parameters: each value reaches the column its name says."""

from __future__ import annotations

import pytest

from servicekit.statements import NamedStatement


def test_names_become_numbered_parameters_once_each_and_casts_and_quoted_text_stay() -> None:
    statement = NamedStatement(
        "INSERT INTO event (actor, status, details) "
        "SELECT 'customer:' || :customer_id, :status::varchar, '{\"at\": \":noon\"}' "
        "WHERE :status <> 'it''s :closed'"
    )
    assert statement.sql == (
        "INSERT INTO event (actor, status, details) "
        "SELECT 'customer:' || $1, $2::varchar, '{\"at\": \":noon\"}' "
        "WHERE $2 <> 'it''s :closed'"
    )
    assert statement.names == ("customer_id", "status")
    assert statement.arguments(status="queued", customer_id="c-1") == ("c-1", "queued")


def test_a_missing_or_unknown_value_is_refused_naming_it() -> None:
    statement = NamedStatement("UPDATE job SET owner = :owner WHERE id = :job_id")
    with pytest.raises(TypeError, match=r"missing \['job_id'\], unknown \['jobid'\]"):
        statement.arguments(owner="me", jobid=1)
    with pytest.raises(TypeError, match=r"missing \['job_id'\]"):
        statement.arguments(owner="me")
