"""Migration run journal, an index for walking videos oldest first, and the time of the
last Stream report applied to a video (webhooks arrive out of order).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

A frozen copy of the models at this revision (see 0001 for why it does not import them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_videos_created_at_id", "videos", ["created_at", "id"])
    with op.batch_alter_table("video_specs") as batch:
        batch.add_column(sa.Column("stream_modified", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "migration_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("parent_id", sa.String(36), nullable=True),
        sa.Column("owner", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_runs")),
    )
    op.create_index(op.f("ix_migration_runs_created_at"), "migration_runs", ["created_at"])

    op.create_table(
        "migration_items",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("video_id", sa.String(36), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("stream_uid", sa.String(64), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["migration_runs.id"],
            name=op.f("fk_migration_items_run_id_migration_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_items")),
        sa.UniqueConstraint("run_id", "video_id", name=op.f("uq_migration_items_run_id_video_id")),
    )
    op.create_index("ix_migration_items_run_id_outcome", "migration_items", ["run_id", "outcome"])


def downgrade() -> None:
    op.drop_table("migration_items")
    op.drop_table("migration_runs")
    with op.batch_alter_table("video_specs") as batch:
        batch.drop_column("stream_modified")
    op.drop_index("ix_videos_created_at_id", table_name="videos")
