"""The engine's parts, bundled for its jobs and routers (built by the composition root)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hybridvideo.engine.faults import FaultSpec
from hybridvideo.engine.store import EngineStore

#: The source file's name inside a video's folder.
SOURCE_NAME = "source"


@dataclass(frozen=True)
class EngineRuntime:
    store: EngineStore
    account_id: str
    api_token: str
    media_root: Path
    delivery_base: str
    country_header: str = "CF-IPCountry"
    preset: str = "veryfast"
    #: See bench/RESULTS.md: playable ~5x sooner, done ~10-20% later.
    early_first_rung: bool = False
    #: hls.js for the /iframe player in browsers without native HLS.
    player_script_url: str = "https://cdn.jsdelivr.net/npm/hls.js@1/dist/hls.min.js"
    #: Webhook deliveries are tried this many times (2 s, 4 s, 8 s ... apart) before giving up.
    webhook_attempts: int = 8
    #: Cloudflare's global API limit, served: requests per window (0: off). See limits.py.
    api_rate_limit: int = 0
    api_rate_window: float = 300.0
    #: Test mode: faults injected into the control API (None: off). See faults.py.
    faults: FaultSpec | None = None
    #: Test mode: videos become ready without being fetched or encoded (engine_ingest.py).
    accept_only: bool = False

    def video_dir(self, uid: str) -> Path:
        return self.media_root / uid

    def source_path(self, uid: str) -> Path:
        """The master being ingested: fetched from a URL, or moved here from a tus upload
        (same disk, so a rename); ingest deletes it once the video is finished."""
        return self.video_dir(uid) / SOURCE_NAME

    @property
    def upload_root(self) -> Path:
        """Unfinished tus uploads, on the media disk so a finished one is renamed into
        :meth:`source_path` rather than copied. Never a uid (those are 32 hex)."""
        return self.media_root / "uploads"
