"""The rules a dashboard token follows, checked in one place for ``create_app``,
``serve``/``check_listen`` and ``conveyor dashboard`` (the page's dialog checks
the same rules in ``static/api.js``).

A token travels in ``Authorization: Bearer <token>``. A browser's ``fetch()``
sends a header value as Latin-1 and throws on anything beyond it; curl and
httpx send what the terminal or the code gives them, UTF-8 or ASCII. Only
printable ASCII is spelled the same by all of them, so a token is made of the
characters from ``!`` to ``~`` and inner spaces: no control characters, no
letters beyond ASCII. A leading or trailing space is refused rather than
trimmed, as it is almost always a copy-and-paste slip that would make the
token differ from the one the clients send.
"""

from __future__ import annotations

from .._util import is_loopback

__all__ = ["MIN_LENGTH_BEYOND_LOOPBACK", "check_token", "is_loopback"]

#: Beyond loopback anyone on the network can try tokens: 16 characters drawn at
#: random are out of reach of online guessing.
MIN_LENGTH_BEYOND_LOOPBACK = 16

_PRINTABLE_ASCII = frozenset(chr(code) for code in range(0x20, 0x7F))


def check_token(token: object, *, host: str | None = None) -> str:
    """Return ``token`` if clients can send it and, when ``host`` is beyond
    loopback, it is long enough; else raise ValueError with one line saying why.
    ``host=None`` (not known yet) skips the length rule."""
    if not isinstance(token, str):
        raise ValueError(f"the token must be a string, not {type(token).__name__}")
    if not token.strip():
        raise ValueError("the token is blank")
    if token != token.strip():
        raise ValueError("the token starts or ends with whitespace (a copy-and-paste slip?); "
                         "remove it")
    odd = sorted({char for char in token if char not in _PRINTABLE_ASCII})
    if odd:
        shown = ", ".join(repr(char) for char in odd[:3])
        raise ValueError(f"the token holds {shown}: it may hold only printable ASCII "
                         "(letters, digits, punctuation, inner spaces), which every client "
                         "sends alike in an HTTP header")
    if host is not None and not is_loopback(host) and len(token) < MIN_LENGTH_BEYOND_LOOPBACK:
        raise ValueError(f"the token has {len(token)} characters; listening on {host!r}, "
                         f"beyond loopback, it needs at least {MIN_LENGTH_BEYOND_LOOPBACK} so "
                         "that it cannot be guessed by trying")
    return token
