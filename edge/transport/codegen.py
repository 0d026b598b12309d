"""Regenerate (or check) the Python code of the wire contract from ``observation.proto``.

The generated modules ``observation_pb2.py``, ``observation_pb2.pyi`` and ``observation_pb2_grpc.py``
are committed next to the schema. Remake them after editing the schema with::

    python -m edge.transport.codegen            # rewrite the generated files
    python -m edge.transport.codegen --check    # exit 1 if the committed files are stale

which runs, from the repository root, exactly::

    python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \\
        edge/transport/observation.proto

with ``grpcio-tools`` at :data:`GRPC_TOOLS_VERSION` (pinned in the ``transport`` extra: another protoc
version writes different, equally valid code, and the check would report it as stale).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

#: Version of grpcio-tools that made the committed files.
GRPC_TOOLS_VERSION = "1.85.1"
ROOT = Path(__file__).resolve().parents[2]
PROTO = Path("edge/transport/observation.proto")
GENERATED = ("observation_pb2.py", "observation_pb2.pyi", "observation_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run protoc on :data:`PROTO`, writing the generated modules under ``out_root/edge/transport``.

    Returns
    -------
    list of Path
        The generated files.

    Raises
    ------
    RuntimeError
        If grpcio-tools is missing or protoc fails.
    """
    try:
        from grpc_tools import protoc
    except ImportError as exc:
        raise RuntimeError("grpcio-tools is not installed: pip install 'marlids[transport]'") from exc
    out_root.mkdir(parents=True, exist_ok=True)
    import importlib.resources

    include = str(importlib.resources.files("grpc_tools") / "_proto")
    args = ["grpc_tools.protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={out_root}", f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}", str(ROOT / PROTO)]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc} on {PROTO}")
    return [out_root / PROTO.parent / name for name in GENERATED]


def stale_files() -> list[str]:
    """Names of the committed generated files that differ from a fresh generation (empty = up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        return [p.name for p in fresh if not (ROOT / PROTO.parent / p.name).is_file()
                or not filecmp.cmp(p, ROOT / PROTO.parent / p.name, shallow=False)]


def main(argv: list[str] | None = None) -> int:
    """Command line: regenerate, or with ``--check`` report stale files (exit 1)."""
    parser = argparse.ArgumentParser(prog="python -m edge.transport.codegen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed files are current")
    args = parser.parse_args(argv)
    import grpc_tools

    version = getattr(grpc_tools, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("grpcio-tools")
    if version != GRPC_TOOLS_VERSION:
        print(f"warning: grpcio-tools {version} installed, the committed files were made with "
              f"{GRPC_TOOLS_VERSION}", file=sys.stderr)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale generated files: {', '.join(stale)} — run python -m edge.transport.codegen", file=sys.stderr)
            return 1
        print("generated files are up to date")
        return 0
    for path in generate(ROOT):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
