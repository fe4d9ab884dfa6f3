"""Layering: the library never reaches up into actors/services or into optional engines; the API never runs torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FORBIDDEN = {"visiong1": {"actors", "services", "vllm", "deepspeed"}, "services": {"torch"}}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_forbidden_modules(package):
    violations = {str(p.relative_to(ROOT)): sorted(imported_roots(p) & FORBIDDEN[package])
                  for p in (ROOT / package).rglob("*.py")}
    assert {path: bad for path, bad in violations.items() if bad} == {}


def test_checker_sees_violations(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("import os\nfrom actors.rollout import x\ndef f():\n    import vllm.engine\n")
    assert imported_roots(sample) == {"os", "actors", "vllm"}


def test_importing_the_api_does_not_load_torch():
    code = "import sys, services.api.app; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
