"""hybridvideo: keep masters in S3-compatible storage, deliver through a Stream service.

The public surface is deliberately small; everything else is an implementation detail
reached through the composition root (:mod:`hybridvideo.container`).
"""

from __future__ import annotations

from hybridvideo.domain.video import StreamStatus, VideoState
from hybridvideo.errors import HybridVideoError

__version__ = "0.1.0"

__all__ = ["HybridVideoError", "StreamStatus", "VideoState", "__version__"]
