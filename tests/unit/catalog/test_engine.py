"""Engine settings the catalog relies on: URL normalisation and SQLite's pragmas."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import IntegrityError

from hybridvideo.catalog.sql.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    WRITE_OPTION,
    create_catalog_engine,
    normalize_database_url,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/hv", "postgresql+psycopg://u:p@db:5432/hv"),
        ("postgresql://u@db/hv", "postgresql+psycopg://u@db/hv"),
        ("postgresql+psycopg://u@db/hv", "postgresql+psycopg://u@db/hv"),
        ("  postgres://db/hv\n", "postgresql+psycopg://db/hv"),
        ("sqlite:///var/hv.db", "sqlite:///var/hv.db"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_normalize_database_url(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_postgres_engine_uses_psycopg_and_pre_ping() -> None:
    engine = create_catalog_engine("postgres://u@127.0.0.1:1/hv")
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping is True
    finally:
        engine.dispose()


def test_sqlite_creates_parent_folder_and_sets_pragmas(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "deeper" / "catalog.db"
    engine = create_catalog_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
            assert conn.execute(text("SELECT lower('ÉTÉ')")).scalar() == "été"
        assert db.exists()
    finally:
        engine.dispose()


def test_sqlite_transactions_roll_back_and_writers_begin_immediate(tmp_path: Path) -> None:
    engine = create_catalog_engine(f"sqlite:///{tmp_path / 'tx.db'}")
    begins: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(conn: Connection, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith("BEGIN"):
            begins.append(statement)

    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with engine.connect() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            conn.rollback()
        with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT x FROM t").scalars().all() == [2]
        assert begins[:3] == ["BEGIN", "BEGIN", "BEGIN IMMEDIATE"]
    finally:
        engine.dispose()


def test_sqlite_enforces_foreign_keys(tmp_path: Path) -> None:
    engine = create_catalog_engine(f"sqlite:///{tmp_path / 'fk.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE p (id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("CREATE TABLE c (p_id INTEGER REFERENCES p(id))")
        with pytest.raises(IntegrityError, match="FOREIGN KEY"), engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO c VALUES (42)")
    finally:
        engine.dispose()
