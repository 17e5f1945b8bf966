"""Benchmark: parse() on the worst messages we know of, one case per child process.

Each case builds one hostile (but deliverable) message and times `gateway.parse.parse` on
it in its own process, so a case that runs away is stopped at the time limit without
stopping the rest. Run by hand:

    .venv/bin/python bench/parse_worst.py [--limit 120] [--root DIR] [CASE ...]

`--root DIR` imports the `gateway` package from another checkout (e.g. an export of an
older commit, for before/after numbers). Goal (issue 11): every case is linear in the
message size, so none takes more than a fraction of a second.
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEAD = (
    b"Return-Path: <kim@customer.example>\r\n"
    b"From: Kim Customer <kim@customer.example>\r\n"
    b"To: support@shop.example\r\n"
    b"Subject: Question about my order\r\n"
    b"Date: Fri, 20 Nov 2026 16:40:00 +0100\r\n"
    b"Message-ID: <bench@customer.example>\r\n"
    b"MIME-Version: 1.0\r\n"
)


def _text(body: bytes, ctype: bytes = b"text/plain; charset=utf-8") -> bytes:
    return HEAD + b"Content-Type: " + ctype + b"\r\n\r\n" + body + b"\r\n"


def _stray_html(size: int) -> bytes:
    # Every <span> stays open and every </b> closes nothing: each end tag used to rescan
    # the whole stack of open tags.
    unit = b"<span>Paket</b>\r\n"
    return _text(b"<html><body>" + unit * (size // len(unit)), b"text/html; charset=utf-8")


def _deep_multipart(levels: int) -> bytes:
    nest = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(levels)
    )
    return HEAD + nest + b"Content-Type: text/plain\r\n\r\nhello\r\n"


def _depth_and_lines(levels: int, lines: int) -> bytes:
    nest = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(levels)
    )
    return HEAD + nest + b"Content-Type: text/plain\r\n\r\n" + b"\n" * lines


def _big_attachment(size: int) -> bytes:
    photo = base64.encodebytes(bytes(range(256)) * (size * 3 // 4 // 256))
    return (
        HEAD + b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"--outer\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Here is the photo of the damaged parcel.\r\n"
        b'--outer\r\nContent-Type: image/jpeg; name="parcel.jpg"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + photo + b"--outer--\r\n"
    )


def _tiny_parts(size: int) -> bytes:
    part = b"--b\r\n\r\nx\r\n"
    return HEAD + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + part * (size // len(part))


def _header(name: bytes, value: bytes) -> bytes:
    return (
        HEAD.replace(b"Subject: Question about my order\r\n", b"")
        + name
        + b": "
        + value
        + b"\r\n\r\nhello\r\n"
    )


CASES: dict[str, Callable[[], bytes]] = {
    "html-176k-stray-end-tags": lambda: _stray_html(176_000),
    "html-350k-stray-end-tags": lambda: _stray_html(350_000),
    "html-128k-unclosed-tag-starts": lambda: _text(b"<a" * 64_000, b"text/html"),
    "line-400k-am-schrieb-bait": lambda: _text(b"Am 9. Nov. 2026" + b" schrieb Anna" * 30_000),
    "line-400k-on-wrote-bait": lambda: _text(b"On Mon, 9 Nov 2026" + b" wrote:    x" * 33_000),
    "text-25m-lines": lambda: _text(b"Hello, where is my parcel? It is late.\r\n" * 625_000),
    "mixed-25m-photo-attachment": lambda: _big_attachment(25_000_000),
    "mixed-25m-tiny-parts": lambda: _tiny_parts(25_000_000),
    "multipart-1000-nested": lambda: _deep_multipart(1000),
    "multipart-50-nested-1m-lines": lambda: _depth_and_lines(50, 1_000_000),
    "from-400-nested-comments": lambda: _header(b"Subject", b"x").replace(
        b"From: Kim Customer <kim@customer.example>",
        b"From: kim@customer.example " + b"(" * 400 + b")" * 400,
    ),
    "subject-64k-space-run": lambda: _header(b"Subject", b"a" + b" " * 64_000 + b"b"),
    "subject-128k-open-encoded-words": lambda: _header(
        b"Subject", (b"=?utf-8?q?" + b"x" * 10) * 8_000
    ),
    "content-type-128k-quoted-semicolons": lambda: (
        HEAD + b'Content-Type: text/plain; name="' + b";" * 128_000 + b"\r\n\r\nhello\r\n"
    ),
}


def _child(name: str) -> None:
    from gateway.parse import parse

    raw = CASES[name]()
    start = time.perf_counter()
    parsed = parse(raw)
    elapsed = time.perf_counter() - start
    print(f"{elapsed:.3f} {len(raw)} {len(parsed.text)} {','.join(parsed.defects)[:80]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds per case")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to import from")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    if args.child:
        _child(args.child)
        return
    names = args.cases or list(CASES)
    print(f"{'case':40} {'size':>10} {'seconds':>9}  text chars, defects")
    for name in names:
        command = [sys.executable, __file__, "--root", str(args.root), "--child", name]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=args.limit, check=False
            )
        except subprocess.TimeoutExpired:
            print(f"{name:40} {'':>10} {'>' + format(args.limit, 'g'):>9}  (stopped)")
            continue
        if done.returncode != 0:
            error = (done.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{name:40} {'':>10} {'raised':>9}  {error[:90]}")
            continue
        seconds, size, chars, defects = [*done.stdout.split(" ", 3), ""][:4]
        print(f"{name:40} {int(size):>10,} {float(seconds):>9.3f}  {chars}, {defects.strip()}")


if __name__ == "__main__":
    main()
