"""Every relative link in README.md and docs/ leads to a file that exists (a renamed doc, a moved
screenshot, a topology.md that was never written, as issue 32 found in lab/default.yaml)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_relative_links_in_the_docs_resolve():
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    for f in [ROOT / "lab" / "default.yaml", ROOT / "examples" / "cluster.yaml"]:
        broken += [f"{f.relative_to(ROOT)} -> {m}" for m in re.findall(r"(docs/[\w.-]+\.md)", f.read_text())
                   if not (ROOT / m).exists()]
    assert broken == []
