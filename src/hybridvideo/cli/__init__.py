"""The ``hybridvideo`` command."""
