"""The docs are the repository's own: no citation of a document outside it, every cited
`docs/….md#anchor` exists, and every flow module has its page."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FLOWS = ROOT / "loom_assets" / "flows"
# Not the repository's own text: version control, environments, caches, build outputs, recorded data.
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".loom", "build", "dist",
             ".pytest_cache", ".mypy_cache", ".ruff_cache"}
SKIP_UNDER = (ROOT / "tests" / "fixtures",)
OUTSIDE_CITATION = re.compile(r"\b(?:SPEC|DESIGN)\s*§|\b(?:SPEC|DESIGN)\.md\b")
CITED = re.compile(r"\bdocs/((?:[\w.-]+/)*[\w.-]+\.md)(?:#([\w-]+))?")


def text_files():
    for path in ROOT.rglob("*"):
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in path.relative_to(ROOT).parts):
            continue
        if any(path.is_relative_to(skip) for skip in SKIP_UNDER) or not path.is_file() or path.is_symlink():
            continue
        try:
            yield path, path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary


def github_anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped (but `-` and `_`), spaces → `-`."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen, fenced = set(), {}, False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            anchor = github_anchor(m.group(1))
            n = seen.get(anchor, 0)
            seen[anchor] = n + 1
            found.add(anchor if n == 0 else f"{anchor}-{n}")
    return found


def test_no_file_cites_a_document_outside_the_repository():
    offenders = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
        for path, text in text_files()
        if path != Path(__file__).resolve()
        for m in OUTSIDE_CITATION.finditer(text)
    ]
    assert not offenders, "cite docs/… pages instead:\n" + "\n".join(offenders)


def test_every_cited_docs_page_and_anchor_exists():
    pages: dict[Path, set[str]] = {}
    broken = []
    for path, text in text_files():
        for m in CITED.finditer(text):
            page = DOCS / m.group(1)
            where = f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
            if not page.is_file():
                broken.append(f"{where} (no such page)")
                continue
            if m.group(2):
                if page not in pages:
                    pages[page] = anchors(page)
                if m.group(2) not in pages[page]:
                    broken.append(f"{where} (no such heading)")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("module", sorted(
    p.stem for p in FLOWS.glob("*.py") if p.stem not in ("base", "embeddings", "gpu", "__init__")  # shared, not flows
) or ["<none>"])
def test_every_flow_has_its_page(module):
    page = DOCS / "flows" / f"{module}.md"
    assert page.is_file(), f"flow {module} has no page {page.relative_to(ROOT)}"
    for section in ("kafka-topics", "message-fields", "stages", "retries-and-alerts", "retention", "errors"):
        assert section in anchors(page), f"{page.relative_to(ROOT)} lacks its '{section}' section"


def test_the_anchor_rule_is_githubs():
    assert github_anchor("Retries and alerts") == "retries-and-alerts"
    assert github_anchor("voice_segments") == "voice_segments"
    assert github_anchor("Kafka and PostgreSQL for development and tests") == \
        "kafka-and-postgresql-for-development-and-tests"


def test_links_between_docs_pages_resolve():
    broken = []
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        text = page.read_text(encoding="utf-8")
        for m in re.finditer(r"\]\(([^)#\s]*)(?:#([\w-]+))?\)", text):
            if re.match(r"[a-z]+:", m.group(1)):
                continue  # http:, mailto:
            target = (page.parent / m.group(1)).resolve() if m.group(1) else page
            if not target.exists():
                broken.append(f"{page.relative_to(ROOT)}: {m.group(0)} (no such file)")
            elif m.group(2) and target.suffix == ".md" and m.group(2) not in anchors(target):
                broken.append(f"{page.relative_to(ROOT)}: {m.group(0)} (no such heading)")
    assert not broken, "\n".join(broken)
