"""Media inspection with the FFmpeg libraries shipped in wheels (PyAV, imageio-ffmpeg)."""
