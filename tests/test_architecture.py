"""Layering: the library never reaches up into actors/services or into optional engines; the API never runs torch."""

import ast
import re
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


COORDINATOR = ROOT / "actors" / "coordinator.py"
COORDINATOR_MAX_LINES = 300
METHOD_MAX_LINES = 40


def long_functions(path: Path, limit: int) -> dict[str, int]:
    """Functions and methods of the module longer than `limit` lines (docstrings included)."""
    tree = ast.parse(path.read_text())
    return {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit}


def test_the_coordinator_stays_a_driver():
    assert len(COORDINATOR.read_text().splitlines()) <= COORDINATOR_MAX_LINES
    assert long_functions(COORDINATOR, METHOD_MAX_LINES) == {}


def test_the_length_check_sees_a_long_method(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("class C:\n    def f(self):\n" + "        x = 1\n" * 40)
    assert long_functions(sample, METHOD_MAX_LINES) == {"f": 41}


TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".json", ".sh", ".cfg", ".txt"}
TOP_LEVEL = ("visiong1", "actors", "services", "k8s", "configs", "tests", "benchmarks", "docs", "docker", ".ci")
# `../` paths with a folder or a file name after them, repository-rooted paths to a file, and `*.md` names.
PATH_PATTERN = re.compile(r"(?<![\w/.-])((?:\.\./)+[\w.-]+(?:/[\w./-]*|\.\w+)|(?:%s)/[\w./-]*\.\w+|[\w-]+\.md)\b"
                          % "|".join(re.escape(name) for name in TOP_LEVEL))


def repository_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def dangling_paths(path: Path, names: set[str]) -> list[str]:
    """Paths the file names that lead outside the repository or to nothing in it: `../` paths (resolved from the
    file's folder), repository-rooted paths (`docs/x.md`), and `*.md` names. Globs and placeholders are skipped."""
    problems = []
    for match in PATH_PATTERN.findall(path.read_text(errors="replace")):
        target = match.rstrip(".")
        if any(char in target for char in "*<>{}") or "NNN" in target:
            continue
        if target.startswith("../"):
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                problems.append(target)
        elif "/" in target:
            if not (ROOT / target).exists():
                problems.append(target)
        elif target not in names:
            problems.append(target)
    return problems


def test_no_file_names_a_path_outside_the_repository_or_a_missing_file():
    files = [p for p in repository_files() if p.suffix in TEXT_SUFFIXES and "results" not in p.parts
             and p != Path(__file__)]  # this file's own examples name missing paths on purpose
    names = {p.name for p in repository_files()}
    problems = {str(p.relative_to(ROOT)): found for p in files if (found := dangling_paths(p, names))}
    assert problems == {}


def test_the_path_check_sees_outside_and_missing_paths(tmp_path):
    sample = tmp_path / "notes.md"
    sample.write_text("See ../../shared/FIELD_NOTES.md, docs/nothing.md, VISION_G1.md and README.md; an id '../etc' "
                      "and runs/*/summary.json are fine.")
    assert dangling_paths(sample, {"README.md"}) == ["../../shared/FIELD_NOTES.md", "docs/nothing.md", "VISION_G1.md"]


PROSE = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
DATE_OR_HASH = re.compile(r"\b20\d\d-\d\d-\d\d\b|\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b")


def test_docs_carry_no_dates_or_commit_hashes():
    found = {str(p.relative_to(ROOT)): DATE_OR_HASH.findall(p.read_text()) for p in PROSE}
    assert {name: hits for name, hits in found.items() if hits} == {}
    assert DATE_OR_HASH.findall("config of 2026-11-25 at 7000dd9, 1003520 pixels") == ["2026-11-25", "7000dd9"]
