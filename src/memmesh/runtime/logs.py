"""Structured logs for the daemon: structlog, rendered as JSON lines or for a console.

Every line carries the node id; callers add the peer, envelope id and reason where they have
them, so an operator can filter rejections by reason code rather than by message text.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["make_logger"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def make_logger(settings: Any, node: str = "") -> Callable[..., None]:
    """A ``log(event, **fields)`` function at info level for the node's settings."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    logger = structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            _LEVELS.get(settings.log_level, logging.ERROR)
        ),
    )
    bound = logger.bind(node=node) if node else logger

    def log(event: str, **fields: Any) -> None:
        bound.info(event, **fields)

    return log
