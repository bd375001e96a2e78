"""``hybridvideo playback url VIDEO --user U``: a signed playback URL for operators.

It runs the same :class:`~hybridvideo.playback.service.PlaybackService` as the HTTP
endpoint, as the viewer ``U`` (so an operator sees exactly what that user would get, a
refusal included), or past the policy with ``--as-admin``. Prints the HLS URL, or the
endpoint's JSON with ``--json``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hybridvideo.cli.common import DataDir, _container, _settings, err, friendly_errors, out
from hybridvideo.errors import ConfigurationError
from hybridvideo.playback.identity import Viewer
from hybridvideo.playback.service import Reimporting

playback_app = typer.Typer(no_args_is_help=True, help="Authorized playback (signed URLs).")


@playback_app.command("url")
@friendly_errors
def playback_url(
    video_id: Annotated[str, typer.Argument(metavar="VIDEO")],
    user: Annotated[str, typer.Option("--user", help="The app's user id (JWT sub) to play as.")],
    as_admin: Annotated[
        bool, typer.Option("--as-admin", help="Skip the playback policy (operators).")
    ] = False,
    ip: Annotated[
        str | None, typer.Option(help="Viewer IP to bind (with HYBRIDVIDEO_PLAYBACK_BIND_IP).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the endpoint's JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Print a signed HLS URL of VIDEO for the viewer --user."""
    container = _container(_settings(data_dir))
    try:
        if container.playback is None:
            raise ConfigurationError("playback is not configured")
        result = container.playback.playback(
            video_id, Viewer(user, {"sub": user}), ip, skip_policy=as_admin
        )
    finally:
        container.close()
    if isinstance(result, Reimporting):
        err.print(
            f"the video was evicted; its re-import has started: try again in "
            f"{result.retry_after} s",
            highlight=False,
        )
        raise typer.Exit(3)
    if as_json:
        out.print_json(json.dumps(result.to_json()))
    else:
        out.print(result.hls, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``playback`` to the ``hybridvideo`` command line."""
    app.add_typer(playback_app, name="playback")
