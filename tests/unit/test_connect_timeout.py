"""libpq's `connect_timeout` in DATABASE_URL bounds asyncpg's connection attempts too (asyncpg
does not read it from the URL, and would send it to PostgreSQL as an unknown setting)."""

import pytest

from paymentd.db import DEFAULT_CONNECT_TIMEOUT_S, _without_connect_timeout


def test_connect_timeout_is_taken_out_of_the_url_and_becomes_the_timeout() -> None:
    dsn, timeout = _without_connect_timeout(
        "postgresql://u:p@db1,db2/paymentd?target_session_attrs=read-write&connect_timeout=3")
    assert (dsn, timeout) == ("postgresql://u:p@db1,db2/paymentd?target_session_attrs=read-write", 3.0)


def test_without_one_a_failover_waits_at_most_the_default_not_asyncpgs_minute() -> None:
    assert _without_connect_timeout("postgresql://u@db/paymentd") == ("postgresql://u@db/paymentd",
                                                                      DEFAULT_CONNECT_TIMEOUT_S)
    assert DEFAULT_CONNECT_TIMEOUT_S < 60


def test_zero_means_the_default_and_nonsense_is_refused() -> None:
    assert _without_connect_timeout("postgresql://u@db/p?connect_timeout=0")[1] == DEFAULT_CONNECT_TIMEOUT_S
    with pytest.raises(ValueError, match="connect_timeout"):
        _without_connect_timeout("postgresql://u@db/p?connect_timeout=soon")
