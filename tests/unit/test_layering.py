"""The architecture, checked: which modules may import what.

- ``wire.py`` is the only module that packs bytes (``struct``).
- The pure modules (hashing, wire, envelopes, clocks, errors, the store's planning rules, the
  grammar, claims, membership, admission, the whole sans-IO core, the memory model and the policy
  layer) do no I/O and read no clock, locale or global randomness, so replicas and the simulator
  can run them deterministically. Only the policy registry imports ``importlib`` (entry points).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[2] / "src" / "memmesh"
PURE = [
    "errors.py",
    "ids.py",
    "wire.py",
    "envelope.py",
    "hlc.py",
    "store/_base.py",
    "canonical.py",
    "claims.py",
    "ydecode.py",
    "merkle.py",
    "membership.py",
    "replica.py",
    "admission.py",
    "quota.py",
    "memo.py",
    *sorted(str(p.relative_to(SRC)) for p in (SRC / "core").glob("*.py")),
    *sorted(str(p.relative_to(SRC)) for p in (SRC / "memory").glob("*.py")),
    *sorted(str(p.relative_to(SRC)) for p in (SRC / "policy").glob("*.py")),
    # Attestations, but for the verifier, which reads a timer for its report.
    *sorted(
        str(p.relative_to(SRC)) for p in (SRC / "attest").glob("*.py") if p.name != "verify.py"
    ),
]
ENTRY_POINT_LOADER = "policy/registry.py"
"""The one pure-layer module that may import ``importlib`` (to find custom policy rules)."""
FORBIDDEN_IN_PURE = {
    "asyncio",
    "aiohttp",
    "socket",
    "lmdb",
    "time",
    "uuid",
    "random",
    "os",
    "threading",
    "subprocess",
    "datetime",
    "importlib",
    "locale",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_pure_modules_do_no_io_and_read_no_clock() -> None:
    for name in PURE:
        found = _imports(SRC / name) & FORBIDDEN_IN_PURE
        if name == ENTRY_POINT_LOADER:
            found -= {"importlib"}
        assert not found, f"{name} imports {sorted(found)}"


def test_only_wire_packs_bytes() -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "wire.py" and "struct" in _imports(path)
    ]
    assert offenders == []


def test_the_scan_sees_imports() -> None:
    # Guard against a scan that silently finds nothing.
    assert "struct" in _imports(SRC / "wire.py")
    assert "lmdb" in _imports(SRC / "store" / "lmdb.py")
    assert len([p for p in PURE if p.startswith("core/")]) >= 4
