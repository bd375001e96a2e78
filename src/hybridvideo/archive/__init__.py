"""The archive: where masters and thumbnails live, forever."""
