"""README is the front door and the documents behind it hold together: every relative link resolves.

A link to a file must name a file or directory of the repository; a `#anchor` into a markdown file must name a
heading of that file as GitHub slugs it (or an explicit `<a id>`). README stays short and starts with the two
commands a newcomer needs.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_EXPLICIT_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")
# [text](target) and ![alt](target); the target ends at whitespace (a title may follow) or the closing parenthesis.
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEF = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
_INLINE_CODE = re.compile(r"`[^`]*`")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (links and headings inside code are not markdown)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's heading anchor: markup stripped, lower case, punctuation and symbols dropped (letters, marks,
    digits, `-` and `_` stay), each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    kept = []
    for ch in text:
        if ch in "-_" or ch == " ":
            kept.append(ch)
        elif unicodedata.category(ch)[0] in "LMN":
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a markdown file offers: heading slugs (repeats numbered -1, -2, … as GitHub does) and
    explicit `<a id>`s."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose(path.read_text(encoding="utf-8")):
        found.update(_EXPLICIT_ANCHOR.findall(line))
        match = _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    targets = []
    for line in _prose(path.read_text(encoding="utf-8")):
        line = _INLINE_CODE.sub("", line)
        targets += _LINK.findall(line)
    targets += _REFERENCE_DEF.findall("\n".join(_prose(path.read_text(encoding="utf-8"))))
    return targets


def _is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)) or target.startswith("//")


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path):
        if not target or _is_external(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not resolved.exists():
            problems.append(f"{target}: {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved} does not exist")
            continue
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{target}: points outside the repository")
            continue
        if anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
            problems.append(f"{target}: no heading or anchor #{anchor} in {resolved.relative_to(ROOT)}")
    return problems


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    assert broken_links(document) == []


def test_the_documents_are_linked_from_readme() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README) if not _is_external(t)}
    orphans = [p.name for p in DOCUMENTS[1:] if p.resolve() not in linked]
    assert orphans == [], "every document in docs/ is reachable from README"


def test_readme_is_a_short_front_door_that_starts_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README has {len(lines)} lines; move details to docs/"
    assert lines[0].startswith("# ")
    first_block = re.search(r"```[a-z]*\n(.*?)```", text, re.DOTALL)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make up", "make test"]
    # The commands come first: nothing but the title and blank lines before them.
    before = text[: first_block.start()].splitlines()
    assert [line for line in before if line.strip()] == [lines[0]]


# The checker itself: a broken link and a missing anchor are reported, GitHub's slugs are reproduced.
def test_slugs_follow_github() -> None:
    assert slug("Roles, read access and API keys · บทบาทและสิทธิ์การอ่าน") == \
        "roles-read-access-and-api-keys--บทบาทและสิทธิ์การอ่าน"
    assert slug("Benchmark (`python -m bench.training_import --size 200000`)") == \
        "benchmark-python--m-benchtraining_import---size-200000"
    assert slug("Webhook signatures (Standard Webhooks)") == "webhook-signatures-standard-webhooks"


def test_the_checker_finds_broken_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "other.md").write_text("# Other\n\n## Same\n\n## Same\n\n<a id=\"custom\"></a>\n", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text("# Doc\n\n[ok](other.md#same-1) [ok](other.md#custom) [ok](#doc) [web](https://x.y/z)\n"
                   "[missing file](nowhere.md) [missing anchor](other.md#same-2)\n"
                   "```\n[inside code](ignored.md)\n```\n`[inline](ignored.md)`\n", encoding="utf-8")
    assert broken_links(doc) == ["nowhere.md: nowhere.md does not exist",
                                 "other.md#same-2: no heading or anchor #same-2 in other.md"]
