"""Option parsing shared by the command-line tools."""

from __future__ import annotations

import click


def parse_size(ctx: click.Context | None, param: click.Parameter | None, value: str) -> tuple[int, int]:
    """click callback: "HEIGHTxWIDTH" -> (height, width)."""
    try:
        height, width = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not HEIGHTxWIDTH, e.g. 1080x1920") from None
    return height, width


def parse_optional_size(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> tuple[int, int] | None:
    """click callback for a size option without a default: None stays None."""
    return None if value is None else parse_size(ctx, param, value)
