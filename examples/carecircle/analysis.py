"""The CPU-heavy part of processing an uploaded care document: a checksum, a
word count and a shingle fingerprint (for spotting the same letter uploaded
twice under another name), in pure Python on purpose: it holds the CPU (and
the GIL) for as long as the document is big. Run where it cannot stall an
event loop: ``process_document`` is a sandboxed task (a child process)."""

from __future__ import annotations

import hashlib

__all__ = ["analyse"]

_SHINGLE = 8
_MASK = (1 << 61) - 1


def analyse(content: bytes) -> dict[str, str | int]:
    """sha256, words and a 64-bit minimum-hash fingerprint of ``content``."""
    words = len(content.split())
    lowest = [_MASK] * 4
    seeds = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F)
    window = 0
    for i, byte in enumerate(content):
        window = ((window << 8) | byte) & 0xFFFFFFFFFFFFFFFF
        if i + 1 >= _SHINGLE:
            for k, seed in enumerate(seeds):
                h = (window * seed) & _MASK
                if h < lowest[k]:
                    lowest[k] = h
    fingerprint = "".join(f"{h & 0xFFFF:04x}" for h in lowest)
    return {"sha256": hashlib.sha256(content).hexdigest(), "words": words,
            "fingerprint": fingerprint}
