"""Rendering the price-math report of a calculation batch, as CSV or PDF.

The PDF is a one-page document written by hand (text lines in Helvetica), so
the example needs no PDF library; a real service would use one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from decimal import Decimal

__all__ = ["FORMATS", "Row", "render"]

#: One line of the report: contract, base price, base index, index, adjusted price.
Row = tuple[str, Decimal, Decimal, Decimal, Decimal]
FORMATS = ("csv", "pdf")
HEADER = ("contract_id", "base_price", "base_index", "index_value", "adjusted_price")


def render(fmt: str, title: str, rows: Sequence[Row]) -> bytes:
    """The report's bytes in ``fmt`` (``csv`` or ``pdf``)."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows([(c, str(b), str(bi), str(i), str(a)) for c, b, bi, i, a in rows])
        return out.getvalue().encode()
    if fmt == "pdf":
        lines = [title, "  ".join(HEADER)]
        lines += [f"{c}  {b}  {bi}  {i}  {a}" for c, b, bi, i, a in rows]
        return _pdf(lines)
    raise ValueError(f"unknown report format {fmt!r}; one of {', '.join(FORMATS)}")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _pdf(lines: Sequence[str]) -> bytes:
    text = "BT /F1 10 Tf 40 800 Td 14 TL " + " ".join(
        f"({_escape(line)}) '" for line in lines) + " ET"
    stream = text.encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)
