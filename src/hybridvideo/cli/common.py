"""What every ``hybridvideo`` command shares: consoles, settings, the container, errors.

Kept apart from :mod:`hybridvideo.cli.main` so command modules (``migrate``,
``reconcile`` ...) can import it while main imports them to register their commands.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from hybridvideo.config import Settings, load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.errors import HybridVideoError
from hybridvideo.logs import configure_logging

# Piped output (scripts, tests) gets wide lines so ids and hashes are never folded.
out = Console(width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 240)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Embedded state folder [env: HYBRIDVIDEO_DATA_DIR]"),
]

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HybridVideoError as exc:
            # The message may hold brackets (keys, Stream's texts): never read as markup.
            err.print("[red]error:[/red] ", end="", highlight=False, markup=True)
            err.print(exc.message, highlight=False, markup=False)
            raise typer.Exit(2 if exc.code == "CONFIG_INVALID" else 1) from None

    return wrapper  # type: ignore[return-value]


def _settings(data_dir: Path | None = None, **extra: Any) -> Settings:
    return load_settings(data_dir=data_dir, **extra)


def _container(
    settings: Settings, *, migrate: bool | None = None, serving: bool = False
) -> Container:
    fmt = settings.log_format or ("console" if sys.stderr.isatty() else "json")
    configure_logging(settings.log_level, fmt)
    return build_container(settings, migrate=migrate, serving=serving)
