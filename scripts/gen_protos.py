#!/usr/bin/env python3
"""Regenerates fusedfs/rpc/*_pb2*.py from protos/ (run: python scripts/gen_protos.py).

The generated code is committed so that installing fusedfs needs no protoc; a test regenerates it
into a temporary folder and fails when the committed copy is stale.
"""

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generate(out_dir: Path) -> None:
    """Writes the generated modules under out_dir/fusedfs/rpc/."""
    (out_dir / "fusedfs" / "rpc").mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "fusedfs" / "rpc").glob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="folder that holds fusedfs/ (default: the repo)")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
