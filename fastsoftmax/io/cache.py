"""The user's cache folder: where downloaded data sets and the compiled CPU kernels of a read-only
install are kept."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(name: str) -> Path:
    """$XDG_CACHE_HOME/fastsoftmax/<name>, default ~/.cache/fastsoftmax/<name>."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # the XDG spec ignores relative paths
    return base / "fastsoftmax" / name
