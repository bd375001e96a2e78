"""Initial engine schema: videos, signing keys, webhook and webhook deliveries.

Revision ID: e0001
Revises:
Create Date: 2026-11-23

A frozen copy of ``hybridvideo.engine.models`` at this revision (it does not import the
models, which will move on). Revision ids start with ``e`` so they can never collide with
the catalog's, even in a database that holds both histories.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIDEO_STATES = (
    "pendingupload",
    "downloading",
    "queued",
    "inprogress",
    "ready",
    "error",
    "live-inprogress",
)
DELIVERY_STATES = ("pending", "delivered", "failed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _ts(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "engine_videos",
        sa.Column("uid", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("creator", sa.String(64), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("name", sa.String(1024), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("pct_complete", sa.String(16), nullable=True),
        sa.Column("error_reason_code", sa.String(64), nullable=True),
        sa.Column("error_reason_text", sa.Text(), nullable=True),
        sa.Column("require_signed_urls", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("allowed_origins", sa.JSON(), nullable=False),
        sa.Column("thumbnail_timestamp_pct", sa.Float(), nullable=False),
        _ts("scheduled_deletion", nullable=True),
        _ts("upload_expiry", nullable=True),
        sa.Column("max_duration_seconds", sa.Integer(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("ready_to_stream", sa.Boolean(), server_default=sa.false(), nullable=False),
        _ts("ready_to_stream_at", nullable=True),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("media_manifest", sa.JSON(), nullable=True),
        _ts("created", nullable=False),
        _ts("modified", nullable=False),
        _ts("uploaded", nullable=True),
        sa.CheckConstraint(_in("state", VIDEO_STATES), name=op.f("ck_engine_videos_state")),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_engine_videos")),
    )
    op.create_index(
        "ix_engine_videos_account_id_created", "engine_videos", ["account_id", "created", "uid"]
    )
    op.create_index(op.f("ix_engine_videos_creator"), "engine_videos", ["creator"])
    op.create_index(op.f("ix_engine_videos_state"), "engine_videos", ["state"])

    op.create_table(
        "engine_keys",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("private_pem", sa.Text(), nullable=True),
        _ts("created", nullable=False),
        _ts("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_keys")),
    )
    op.create_index(op.f("ix_engine_keys_account_id"), "engine_keys", ["account_id"])

    op.create_table(
        "engine_webhooks",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("notification_url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        _ts("modified", nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_engine_webhooks")),
    )

    op.create_table(
        "engine_webhook_deliveries",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("video_uid", sa.String(32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("created", nullable=False),
        _ts("delivered_at", nullable=True),
        sa.CheckConstraint(
            _in("state", DELIVERY_STATES), name=op.f("ck_engine_webhook_deliveries_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_webhook_deliveries")),
    )
    op.create_index(
        op.f("ix_engine_webhook_deliveries_account_id"),
        "engine_webhook_deliveries",
        ["account_id"],
    )
    op.create_index(
        op.f("ix_engine_webhook_deliveries_video_uid"),
        "engine_webhook_deliveries",
        ["video_uid"],
    )


def downgrade() -> None:
    op.drop_table("engine_webhook_deliveries")
    op.drop_table("engine_webhooks")
    op.drop_table("engine_keys")
    op.drop_table("engine_videos")
