"""A seekable, read-only file object over an archive object, fetched in ranged blocks.

FFmpeg (through PyAV) seeks around a container — an MP4's index is often at the end — so
probing or grabbing a thumbnail from an S3 master needs random access, not a download. Each
miss reads one aligned block with a ranged GET; a few recent blocks are kept.
"""

from __future__ import annotations

import io
from collections import OrderedDict

from hybridvideo.archive.base import ArchiveStore

BLOCK = 1024 * 1024


class ArchiveReader(io.RawIOBase):
    def __init__(
        self, archive: ArchiveStore, key: str, size: int, *, block: int = BLOCK, keep: int = 8
    ) -> None:
        super().__init__()
        self._archive = archive
        self._key = key
        self._size = size
        self._block = block
        self._keep = keep
        self._pos = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        #: Ranged reads made so far (for tests and logs: probing must stay cheap).
        self.fetches = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        target = base + offset
        if target < 0:
            raise ValueError("negative seek position")
        self._pos = target
        return self._pos

    def _get_block(self, index: int) -> bytes:
        cached = self._blocks.get(index)
        if cached is not None:
            self._blocks.move_to_end(index)
            return cached
        start = index * self._block
        end = min(start + self._block, self._size) - 1
        data = b"".join(self._archive.open(self._key, start=start, end=end))
        self.fetches += 1
        self._blocks[index] = data
        while len(self._blocks) > self._keep:
            self._blocks.popitem(last=False)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` as far as the object goes (across blocks: no short reads)."""
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._pos < self._size:
            index, within = divmod(self._pos, self._block)
            data = self._get_block(index)
            n = min(len(view) - filled, len(data) - within)
            view[filled : filled + n] = data[within : within + n]
            filled += n
            self._pos += n
        return filled


__all__ = ["ArchiveReader"]
