"""Authorized playback (issue 6): who is watching, may they, and the signed Stream URLs.

``identity`` reads the app's viewer JWT, ``policy`` decides, ``grants`` is the store of
explicit rights, ``minter`` signs Stream playback tokens (cached briefly) and ``service``
puts them together for ``GET /api/v1/videos/{id}/playback`` and ``playback url``.
Framework-free, like ``delivery/``: the HTTP edge and the CLI are thin.
"""
