"""The committed generated code in fusedfs/rpc matches protos/ (run scripts/gen_protos.py to fix)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)], check=True)
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "fusedfs" / "rpc").iterdir()}
    committed = {
        p.name: p.read_bytes()
        for p in (ROOT / "fusedfs" / "rpc").iterdir()
        if p.name != "__init__.py" and p.suffix in (".py", ".pyi")
    }
    assert fresh.keys() == committed.keys()
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code: {stale}; run `python scripts/gen_protos.py`"
