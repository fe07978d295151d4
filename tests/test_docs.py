"""The documentation the code cites ships in the repository, where the citations point."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_markdown_file_cited_in_the_code_exists() -> None:
    cited: dict[str, list[str]] = {}
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "src").rglob("*.yaml"), *(ROOT / "tests").rglob("*.py")]:
        for name in re.findall(r"(?<![\w/.-])((?:[\w-]+/)*[A-Z][A-Z_]+\.md)\b", path.read_text()):
            cited.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert cited, "no citation found: the pattern no longer matches the way the code cites its docs"
    # A path from the repository root (docs/PROTOCOLS.md), or a file shipped in the package by its name.
    missing = {name: files[:3] for name, files in cited.items()
               if not (ROOT / name).is_file() and not any((ROOT / "src").rglob(name))}
    assert not missing, f"cited but not in the repository: {missing}"
