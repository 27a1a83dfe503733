"""Page-cache control shared by the benchmark scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

import subprocess


def drop_caches() -> bool:
    """Drop the page cache so the next read comes from disk (root only); True when it worked."""
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False
