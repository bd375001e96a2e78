"""Initial catalog: videos, their technical spec, uploads, jobs and events.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

A frozen copy of the schema in ``hybridvideo.catalog.sql.models`` at this revision: it
deliberately does not import the models, which will move on while this file must not.
Constraint names follow the models' naming convention.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STREAM_STATUSES = ("NOT_DELIVERED", "PROCESSING", "READY", "ERROR", "EVICTED")


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _video_fk(table: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["video_id"], ["videos.id"], name=op.f(f"fk_{table}_video_id_videos"), ondelete=ondelete
    )


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(128), nullable=True),
        sa.Column("pinned", sa.Boolean(), server_default=sa.false(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_videos")),
    )
    op.create_index(op.f("ix_videos_collection"), "videos", ["collection"])
    op.create_index(op.f("ix_videos_owner_id"), "videos", ["owner_id"])

    statuses = ", ".join(f"'{s}'" for s in STREAM_STATUSES)
    op.create_table(
        "video_specs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("video_id", sa.String(36), nullable=False),
        sa.Column("archive_bucket", sa.String(255), nullable=False),
        sa.Column("archive_key", sa.String(1024), nullable=False),
        sa.Column("thumbnail_url", sa.String(2048), nullable=True),
        sa.Column("stream_uid", sa.String(64), nullable=True),
        sa.Column("stream_status", sa.String(32), server_default="NOT_DELIVERED", nullable=False),
        sa.Column("stream_error", sa.Text(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("format", sa.String(64), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            f"stream_status IN ({statuses})", name=op.f("ck_video_specs_stream_status")
        ),
        _video_fk("video_specs", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_video_specs")),
        sa.UniqueConstraint(
            "archive_bucket",
            "archive_key",
            name=op.f("uq_video_specs_archive_bucket_archive_key"),
        ),
        sa.UniqueConstraint("sha256", name=op.f("uq_video_specs_sha256")),
        sa.UniqueConstraint("stream_uid", name=op.f("uq_video_specs_stream_uid")),
        sa.UniqueConstraint("video_id", name=op.f("uq_video_specs_video_id")),
    )
    op.create_index(op.f("ix_video_specs_stream_status"), "video_specs", ["stream_status"])

    op.create_table(
        "uploads",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("archive_key", sa.String(1024), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("video_id", sa.String(36), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        _video_fk("uploads", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("video_id", sa.String(36), nullable=True),
        *_timestamps(),
        _video_fk("jobs", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_kind"), "jobs", ["kind"])
    op.create_index(op.f("ix_jobs_key"), "jobs", ["key"])

    op.create_table(
        "video_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("video_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _video_fk("video_events", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_video_events")),
    )
    op.create_index(op.f("ix_video_events_video_id"), "video_events", ["video_id"])


def downgrade() -> None:
    op.drop_table("video_events")
    op.drop_table("jobs")
    op.drop_table("uploads")
    op.drop_table("video_specs")
    op.drop_table("videos")
