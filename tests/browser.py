"""Headless Chromium helpers for the report tests (skipped where Chromium is not installed)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions")


def run_chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Open ``page`` in a fresh profile with ``args`` (e.g. ``--dump-dom``); fails on a timeout."""
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM after load (scripts, if any, have run), serialised."""
    return run_chromium(page, profile, "--dump-dom", "--virtual-time-budget=2000").stdout


def screenshot(page: Path, profile: Path, out: Path, size: str = "1280,2400") -> Path:
    run_chromium(page, profile, f"--screenshot={out}", f"--window-size={size}", "--hide-scrollbars")
    return out


def png_stats(path: Path) -> tuple[int, int, int]:
    """``(width, height, distinct byte values in the decoded image data)`` of a PNG file."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    chunks, pos = [], 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    pixels = zlib.decompress(b"".join(chunks))
    return width, height, len(set(pixels[: 4_000_000]))
