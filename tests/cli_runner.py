"""Run `hybridvideo` commands in-process (typer's CliRunner) next to live servers.

A command configures logging onto the runner's stderr, which is closed once the command
returns; a server thread of the same test then logs into a closed file ("I/O operation on
closed file" noise). ``invoke`` puts the root logger back as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import typer
from click.testing import Result
from typer.testing import CliRunner

_runner = CliRunner()


def invoke(app: typer.Typer, args: Sequence[str]) -> Result:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return _runner.invoke(app, list(args))
    finally:
        root.handlers[:], root.level = handlers, level
