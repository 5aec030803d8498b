"""What ``conveyor dashboard`` serves, read from its options: the tokens with
their roles (``--token``, ``--token-file`` with one ``role:token`` a line, the
environment) and the Redis instances (``--redis [NAME=]URL`` and ``--prefix
[NAME=]PREFIX``, both repeatable). Every mistake is one line of error."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..connection import DEFAULT_URL
from .support import Target, check_url, fail

if TYPE_CHECKING:
    from ..web.roles import Role

__all__ = ["TOKEN_VARIABLES", "dashboard_tokens", "instance_options", "parse_instances"]

T = TypeVar("T")

#: Where the dashboard's token may come from besides --token/--token-file, in order;
#: the second is the older name.
TOKEN_VARIABLES = ("CONVEYOR_TOKEN", "CONVEYOR_DASHBOARD_TOKEN")


def dashboard_tokens(token: str | None, token_file: Path | None) -> list[tuple[Role, str]]:
    """The ``(role, token)`` pairs from --token, --token-file or the environment,
    checked (one line of error naming where it came from); empty for none."""
    from ..web.roles import parse_token_file
    from ..web.tokens import check_token

    if token is not None and token_file is not None:
        fail("--token and --token-file do not go together: give one")
    if token_file is not None:
        source = f"--token-file {token_file}"
        try:
            text = token_file.read_text("utf-8")
        except OSError as exc:
            fail(f"cannot read the token: {source}: {exc.strerror}")
        except UnicodeDecodeError:
            fail(f"cannot read the token: {source}: not UTF-8 text")
        try:
            return parse_token_file(text)
        except ValueError as exc:
            fail(f"{source}: {exc}")
    if token is not None:
        source = "--token"
    else:
        found = next(((name, os.environ[name]) for name in TOKEN_VARIABLES
                      if name in os.environ), None)
        if found is None:
            return []
        source, token = f"${found[0]}", found[1]
    try:
        return [("admin", check_token(token))]
    except ValueError as exc:
        fail(f"{source}: {exc}")


def instance_options(command: Callable[..., T]) -> Callable[..., T]:
    """``--redis [NAME=]URL`` and ``--prefix [NAME=]PREFIX``, both repeatable;
    the command receives ``redis`` and ``prefix`` as tuples of what was given."""
    command = click.option(
        "--prefix", "prefix", multiple=True, metavar="[NAME=]PREFIX",
        help="Key prefix the queues were created with [default: conveyor]; NAME=PREFIX "
             "for one instance only (repeatable).",
    )(command)
    return click.option(
        "--redis", "redis", multiple=True, metavar="[NAME=]URL",
        help="Redis URL [default: $CONVEYOR_REDIS_URL, else redis://localhost:6379/0]. "
             "Repeat as NAME=URL to show several Redis instances, with a switcher.",
    )(command)


def parse_instances(redis: tuple[str, ...], prefix: tuple[str, ...]) -> dict[str, Target]:
    """Each instance's URL and prefix by name, in the order given; one URL
    without a name is the instance ``default``."""
    from ..web.instances import DEFAULT_INSTANCE, check_name

    given = redis or (os.environ.get("CONVEYOR_REDIS_URL") or DEFAULT_URL,)
    urls: dict[str, str] = {}
    for value in given:
        name, url = _split_named(value)
        if name is None:
            name = DEFAULT_INSTANCE
        else:
            _checked(check_name, name, "--redis")
        if name in urls:
            fail(f"--redis: the instance {name!r} is given twice"
                 + ("; name each with NAME=URL" if name == DEFAULT_INSTANCE else ""))
        try:
            urls[name] = check_url(url)
        except click.BadParameter as exc:
            fail(f"--redis: {exc.message}")
    default_prefix, prefixes = "conveyor", {}
    for value in prefix:
        name, rest = _split_named(value)
        if name is not None and name in urls:
            if name in prefixes:
                fail(f"--prefix: the instance {name!r} is given two prefixes")
            prefixes[name] = rest
        else:
            default_prefix = value
    return {name: Target(url, prefixes.get(name, default_prefix)) for name, url in urls.items()}


def _split_named(value: str) -> tuple[str | None, str]:
    """``'billing=redis://h'`` -> ``('billing', 'redis://h')``; a value with no
    ``=`` before its ``://`` has no name."""
    name, sep, rest = value.partition("=")
    if not sep or "://" in name or "/" in name:
        return None, value
    return name, rest


def _checked(check: Callable[..., Any], value: str, option: str) -> None:
    try:
        check(value, option)
    except ValueError as exc:
        fail(str(exc))
