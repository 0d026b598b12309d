"""Process-wide memory settings of the edge's long-running processes (standard library only at import).

Settings of a process, applied at its entry point before the imports they concern, and one call per window
slot:

* :func:`block_pyarrow` — pandas ≥ 3 imports pyarrow whenever it is installed (it backs pandas' string type),
  mapping about 47 MiB of Arrow libraries and some 13 MiB of heap into every process that imports pandas. The
  edge daemon and its metering child never build an Arrow table (only ``--windows-out`` writes Parquet), so
  they run pandas without it: Python's documented way to make an import fail, ``sys.modules[name] = None``,
  which pandas treats as "pyarrow is not installed" (strings then use pandas' Python-backed string type).
* :func:`defer_pandas` — NFStream imports pandas when it is imported, for its ``to_pandas`` alone; the
  metering child (and NFStream's meter forked from it) only moves flow pieces, so there pandas is imported on
  first use instead (a stand-in module with a PEP 562 ``__getattr__``): never.
* :func:`limit_malloc_arenas` — glibc's allocator gives each thread that allocates concurrently its own
  arena (up to 8 per core), and a freed block is reused only by its arena; the daemon's threads (metering
  feed, gRPC, disk buffer, decisions) each kept a partly empty arena. Two arenas (``mallopt(M_ARENA_MAX)``,
  the setting ``MALLOC_ARENA_MAX`` of glibc's manual, "Memory Allocation Tunables") cost no measurable speed.
* :func:`release_free_memory` — ``malloc_trim(0)`` after each window slot of the live meter, so the pages a
  closed slot's flows freed go back to the system.

With these and :meth:`edge.live.LiveWindows._start_l2` reading a file's ARP frames in a short-lived process,
``benchmarks/bench_edge_flood.py`` (10-minute spoofed flood, peak PSS of the edge's processes) went from 392.8
to 335.1 MiB, the daemon from 278 to 220 MiB; with the daemon free of pandas and NFStream and pandas deferred
in the metering child, 257.2 MiB (``docs/deploy.md``, "Under a flood").
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


def defer_pandas() -> bool:
    """Put a stand-in for pandas in ``sys.modules`` that imports the real pandas on its first attribute access
    (a module ``__getattr__``, PEP 562), so a library that imports pandas without using it (NFStream, for its
    ``to_pandas``) costs nothing. The first use replaces the stand-in by the real module; the stand-in keeps
    answering for whoever bound it (``pd.DataFrame`` works through it).

    Only before pandas is imported (a no-op after). Importing a submodule (``import pandas.api``) through the
    stand-in is not supported: use this only in a process that never does (the metering child).

    Returns
    -------
    bool
        True when pandas is now deferred in this process; False when it was already imported or is not
        installed.
    """
    import importlib.util
    import types

    if "pandas" in sys.modules or importlib.util.find_spec("pandas") is None:
        return False
    stand_in = types.ModuleType("pandas", "pandas, imported on first use (edge.footprint.defer_pandas)")

    def __getattr__(name: str):  # PEP 562
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # the import system's probes (__path__, __file__…) do not load pandas
        if sys.modules.get("pandas") is stand_in:
            del sys.modules["pandas"]
        import pandas

        return getattr(pandas, name)

    stand_in.__getattr__ = __getattr__
    sys.modules["pandas"] = stand_in
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
