"""Playback grants and QoE beacons (issue 6).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

A frozen copy of the models at this revision (see 0001 for why it does not import them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "playback_grants",
        _id(),
        sa.Column("video_id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
            name=op.f("fk_playback_grants_video_id_videos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playback_grants")),
        sa.UniqueConstraint(
            "video_id", "subject", name=op.f("uq_playback_grants_video_id_subject")
        ),
    )
    op.create_index(op.f("ix_playback_grants_video_id"), "playback_grants", ["video_id"])
    op.create_index(op.f("ix_playback_grants_subject"), "playback_grants", ["subject"])

    op.create_table(
        "qoe_beacons",
        _id(),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("video_id", sa.String(36), nullable=True),
        sa.Column("viewer", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("cohort", sa.JSON(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qoe_beacons")),
    )
    op.create_index(op.f("ix_qoe_beacons_received_at"), "qoe_beacons", ["received_at"])
    op.create_index(op.f("ix_qoe_beacons_session_id"), "qoe_beacons", ["session_id"])
    op.create_index(
        "ix_qoe_beacons_video_id_received_at", "qoe_beacons", ["video_id", "received_at"]
    )


def downgrade() -> None:
    op.drop_table("qoe_beacons")
    op.drop_table("playback_grants")
