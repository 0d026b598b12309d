"""Entry points of the metering child process of :class:`edge.live.LiveWindows`, loaded before pandas.

The metering child only moves flow pieces (tuples) from NFStream to its parent; it never builds a table.
NFStream imports pandas, and pandas imports pyarrow whenever pyarrow is installed (pandas ≥ 3 backs its
string type with it): about 35 MiB of resident memory in this child, and again in the NFStream meter process
forked from it. A freshly spawned child unpickles its target — a function of this module — before anything
imports pandas; the module then marks pyarrow unavailable in that process (``sys.modules["pyarrow"] = None``,
Python's documented way to make an import fail, which pandas treats as "not installed"). The parent and every
other process keep pyarrow. Measured with ``benchmarks/bench_edge_flood.py`` (a 60 s flood): the
whole edge 358 → 341 MiB PSS (``docs/deploy.md``, "Under a flood").
"""

from __future__ import annotations

import multiprocessing as mp
import sys

#: Name prefix of the metering child process (given by :class:`edge.live.LiveWindows`; a spawned child takes
#: its name before it unpickles its target).
PROCESS_NAME_PREFIX = "marlids-meter-"
#: True when this process is a metering child whose pandas will run without pyarrow.
PYARROW_BLOCKED = (mp.current_process().name.startswith(PROCESS_NAME_PREFIX)
                   and "pandas" not in sys.modules and "pyarrow" not in sys.modules)
if PYARROW_BLOCKED:
    sys.modules["pyarrow"] = None  # type: ignore[assignment]


def file_child(source: str, window_ms: int, out) -> None:
    """Meter a capture file in the child (:func:`edge.live._file_child`)."""
    from edge.live import _file_child

    _file_child(source, window_ms, out)


def interface_child(iface: str, window_ms: int, out) -> None:
    """Meter a live interface in the child (:func:`edge.live._interface_child`)."""
    from edge.live import _interface_child

    _interface_child(iface, window_ms, out)
