"""The README's Guarantees name the tests that keep them: every test file and function named
there exists, so a renamed or deleted test cannot leave a promise without its proof."""

from __future__ import annotations

import ast
import re

from realsyn_assets_tests.conftest import REPO

TESTS = REPO / "realsyn_assets_tests"
README_LIMIT = 12_000  # bytes (`wc -c`): details go to docs/


def _guarantees() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## Guarantees\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _named_tests(section: str) -> list[tuple[str, str | None]]:
    found = []
    for ref in re.findall(r"`([\w/]+\.py)(?:::(\w+))?`", section):
        found.append((ref[0], ref[1] or None))
    return found


def test_fault_every_guarantee_names_an_existing_test():
    section = _guarantees()
    bullets = [line for line in section.splitlines() if line.startswith("- ")]
    named = _named_tests(section)
    assert len(bullets) >= 5 and len(named) >= len(bullets)
    missing = []
    for path, function in named:
        file = TESTS / path
        if not file.is_file() or not file.name.startswith("test_"):
            missing.append(path)
            continue
        defined = {
            node.name
            for node in ast.walk(ast.parse(file.read_text()))
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        }
        if not defined or (function is not None and function not in defined):
            missing.append(f"{path}::{function}")
    assert not missing, f"the README's Guarantees name tests that do not exist: {missing}"


def test_fault_every_guarantee_line_is_backed_by_a_test():
    section = _guarantees()
    promises = re.split(r"\n- ", section)[1:]
    unbacked = [p.split("\n")[0] for p in promises if not _named_tests(p)]
    assert not unbacked, f"promises without a named test: {unbacked}"


def test_fault_readme_stays_short():
    assert len((REPO / "README.md").read_bytes()) <= README_LIMIT
