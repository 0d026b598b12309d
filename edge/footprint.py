"""Process-wide memory settings of the edge's long-running processes (standard library only at import).

Settings of a process, applied at its entry point before the imports they concern, and one call per window
slot:

* :func:`block_pyarrow` — pandas ≥ 3 imports pyarrow whenever it is installed (it backs pandas' string type),
  mapping about 47 MiB of Arrow libraries and some 13 MiB of heap into every process that imports pandas. The
  edge daemon and its metering child never build an Arrow table (only ``--windows-out`` writes Parquet), so
  they run pandas without it: Python's documented way to make an import fail, ``sys.modules[name] = None``,
  which pandas treats as "pyarrow is not installed" (strings then use pandas' Python-backed string type).
* :func:`limit_malloc_arenas` — glibc's allocator gives each thread that allocates concurrently its own
  arena (up to 8 per core), and a freed block is reused only by its arena; the daemon's threads (metering
  feed, gRPC, disk buffer, decisions) each kept a partly empty arena. Two arenas (``mallopt(M_ARENA_MAX)``,
  the setting ``MALLOC_ARENA_MAX`` of glibc's manual, "Memory Allocation Tunables") cost no measurable speed.
* :func:`release_free_memory` — ``malloc_trim(0)`` after each window slot of the live meter, so the pages a
  closed slot's flows freed go back to the system.

With these and :meth:`edge.live.LiveWindows._start_l2` reading a file's ARP frames in a short-lived process,
``benchmarks/bench_edge_flood.py`` (10-minute spoofed flood, peak PSS of the edge's processes) went from 392.8
to 335.1 MiB, the daemon from 278 to 220 MiB (``docs/deploy.md``, "Under a flood").
"""

from __future__ import annotations

import ctypes
import platform
import sys

#: glibc's ``mallopt`` parameter number of ``M_ARENA_MAX`` (malloc.h).
M_ARENA_MAX = -8
#: Allocator arenas of an edge process (:func:`limit_malloc_arenas`).
EDGE_MALLOC_ARENAS = 2


def block_pyarrow() -> bool:
    """Make ``import pyarrow`` fail in this process, so pandas runs without it (module docstring).

    Only before pandas or pyarrow are imported — later it would change nothing for pandas and could break a
    caller that already holds Arrow objects — so this is a no-op in a process that has imported either
    (a test process, say).

    Returns
    -------
    bool
        True when pyarrow is now blocked in this process.
    """
    if "pandas" in sys.modules or ("pyarrow" in sys.modules and sys.modules["pyarrow"] is not None):
        return False
    sys.modules["pyarrow"] = None  # type: ignore[assignment]
    return True


def release_free_memory() -> bool:
    """Hand the allocator's free pages back to the system (glibc's ``malloc_trim(0)``: the heap's top and
    every whole free page inside it), so a burst — a flood's slot of flows — does not stay resident after its
    objects are gone. A few milliseconds; the live meter calls it after each window slot.

    Returns
    -------
    bool
        True when memory was released; False where the C library is not glibc or nothing was released.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False


def limit_malloc_arenas(arenas: int = EDGE_MALLOC_ARENAS) -> bool:
    """Cap glibc's allocator at ``arenas`` arenas for this process (module docstring); call it before threads
    start.

    Returns
    -------
    bool
        True when set; False where the C library is not glibc (musl, macOS) or refuses the value.

    Raises
    ------
    ValueError
        For ``arenas`` < 1.
    """
    if arenas < 1:
        raise ValueError(f"arenas must be ≥ 1, got {arenas!r}")
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, int(arenas)))
    except (OSError, AttributeError):
        return False
