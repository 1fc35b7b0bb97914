"""Text postprocessing: words into lines, lines into blocks in reading order."""

from __future__ import annotations

import re
import statistics
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loom_assets.stages.screenshot_ocr.rules import OcrRules

# -- text postprocessing --------------------------------------------------------------------------
# A line's first token that marks a list item: bullet glyphs, and what tesseract reads small round
# bullets as («, », °, ©, +), or an enumerator: 1. 2) (3) a. b)
_BULLET = re.compile(r"^(?:[•·▪◦‣∙●○■□►▸▶✓✔✗*+«»°©\-–—]|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)])$")
_BULLET_GLYPH = re.compile(r"^[•·▪◦‣∙●○■□►▸▶✓✔✗*+«»°©\-–—]$")
# Tokens made only of these are cursor bars, borders, scroll thumbs and button edges read as text.
_NOISE = re.compile(r"^[|¦_~`^'\"‘’“”.,:;!()\[\]{}]+$")
_HYPHENATED = re.compile(r"[A-Za-zÀ-ÿ]{2,}-$")


def _clean(text: str) -> str:
    """NFKC (ligatures, full-width forms), no control characters, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class _Line:
    words: list[dict]
    left: float
    top: float
    right: float
    bottom: float
    word_height: float  # median word height: steadier than the box (bullets, descenders)

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def text(self) -> str:
        return " ".join(w["text"] for w in self.words)


def _line(words: list[dict]) -> _Line:
    words = sorted(words, key=lambda w: w["left"])
    return _Line(
        words=words,
        left=min(w["left"] for w in words), top=min(w["top"] for w in words),
        right=max(w["left"] + w["width"] for w in words),
        bottom=max(w["top"] + w["height"] for w in words),
        word_height=float(statistics.median(w["height"] for w in words)),
    )


def _similar(a: float, b: float, rules: OcrRules) -> bool:
    return abs(a - b) <= rules.paragraph_height_tolerance * max(a, b)


def _same_line(a: _Line, b: _Line, rules: OcrRules) -> bool:
    """`b` goes on `a` to its right: they overlap vertically by > 50 % and the gap between them is
    at most rules.line_join_gap word heights."""
    overlap = min(a.bottom, b.bottom) - max(a.top, b.top)
    gap = b.left - a.right
    return (overlap > 0.5 * min(a.height, b.height) and _similar(a.word_height, b.word_height, rules)
            and -0.5 * a.word_height <= gap <= rules.line_join_gap * max(a.word_height, b.word_height))


def _lines(words: Iterable[Mapping[str, Any]], rules: OcrRules) -> list[_Line]:
    """Visual lines: tesseract's lines with noise tokens dropped, cut where a gap is wider than
    rules.line_join_gap word heights (a line tesseract ran across two columns), and pieces of one
    visual line that tesseract split joined. In tesseract's order."""
    groups: dict[tuple[int, int, int], list[dict]] = {}
    for word in words:
        text = _clean(str(word["text"]))
        if not text or _NOISE.match(text):
            continue
        key = (int(word["block_num"]), int(word["par_num"]), int(word["line_num"]))
        groups.setdefault(key, []).append({**word, "text": text})
    pieces: list[_Line] = []
    for group in groups.values():
        group = sorted(group, key=lambda w: w["left"])
        height = float(statistics.median(w["height"] for w in group))
        start = 0
        for i in range(1, len(group) + 1):
            if i == len(group) or (group[i]["left"] - group[i - 1]["left"] - group[i - 1]["width"]
                                   > rules.line_join_gap * height):
                pieces.append(_line(group[start:i]))
                start = i
    lines: list[_Line] = []
    for piece in pieces:
        for i, line in enumerate(lines):
            if _same_line(line, piece, rules) or _same_line(piece, line, rules):
                lines[i] = _line(line.words + piece.words)
                break
        else:
            lines.append(piece)
    return lines


def _kind(line: _Line, page_height: float, rules: OcrRules) -> str:
    if (line.word_height >= rules.heading_height_ratio * page_height
            and len(line.words) <= rules.heading_max_words):
        return "heading"
    if len(line.words) > 1 and _BULLET.match(line.words[0]["text"]):
        return "list_item"
    return "paragraph"


def _continues(block: Mapping[str, Any], line: _Line, kind: str, rules: OcrRules) -> tuple[float, str] | None:
    """(gap, kind of `line`) when `line` goes on `block` (see `text_blocks`), else None. The kind
    changes for one case: a capitalised line at a list item's text column is the next item,
    whose bullet tesseract did not read."""
    last: _Line = block["lines"][-1]
    unit = max(last.height, line.height)
    gap = line.top - last.bottom
    if not (-0.5 * unit <= gap <= rules.paragraph_gap * unit):
        return None
    if not _similar(last.word_height, line.word_height, rules):
        return None
    aligned = (abs(line.left - last.left) <= rules.paragraph_indent * unit
               or abs((line.left + line.right) - (last.left + last.right)) <= 2 * rules.paragraph_indent * unit)
    if block["kind"] == "heading":
        return (gap, kind) if kind == "heading" and aligned else None
    if kind != "paragraph":
        return None
    if block["kind"] == "list_item":
        item = block["lines"][0]
        text_left = item.words[1]["left"]
        if not item.left + 0.5 * (text_left - item.left) <= line.left <= text_left + rules.paragraph_indent * unit:
            return None
        first = line.words[0]["text"][:1]
        return (gap, "list_item") if first.isupper() or first.isdigit() else (gap, "wrap")
    return (gap, kind) if aligned else None


def _join_lines(lines: Sequence[str]) -> str:
    """Lines of one block -> one string; a word hyphenated at a line end is joined when the next
    line goes on in lower case ("docu-" + "ment" -> "document")."""
    text = ""
    for line in lines:
        if not text:
            text = line
        elif _HYPHENATED.search(text) and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}"
    return text


def _reading_order(boxes: Sequence[tuple[float, float, float, float]]) -> list[int]:
    """Indexes of (left, top, right, bottom) boxes in reading order: recursive XY-cut. Each group
    is cut along the band of whitespace with the largest area (gap x the group's extent along
    the cut) that crosses it: rows are read top to bottom, columns left to right. Area, not
    width: a sidebar's gutter runs the page's height and beats the row gaps that happen to line
    up across it, while a short header row's wide gaps lose to the gap below it. A group that
    cannot be cut is read top to bottom, then left to right."""
    def cut(group: list[int]) -> list[int]:
        if len(group) <= 1:
            return group
        extent = {axis: max(boxes[i][axis + 2] for i in group) - min(boxes[i][axis] for i in group)
                  for axis in (0, 1)}
        best = None
        for axis in (1, 0):  # 1: cut between rows (a horizontal band), 0: between columns
            spans = sorted((boxes[i][axis], boxes[i][axis + 2]) for i in group)
            reach = spans[0][1]
            for lo, hi in spans[1:]:
                area = (lo - reach) * extent[1 - axis]
                if lo > reach and (best is None or area > best[0]):
                    best = (area, axis, (reach + lo) / 2)
                reach = max(reach, hi)
        if best is None:
            return sorted(group, key=lambda i: (boxes[i][1], boxes[i][0]))
        _, axis, at = best
        before = [i for i in group if boxes[i][axis] < at]
        after = [i for i in group if boxes[i][axis] >= at]
        return cut(before) + cut(after)

    return cut(list(range(len(boxes))))


def text_blocks(words: Sequence[Mapping[str, Any]], rules: OcrRules = OcrRules()) -> dict[str, Any]:
    """OCR words -> {text, blocks: [{kind: heading|paragraph|list_item, text, box}]}.

    Lines are rebuilt from the word boxes (`_lines`) and grouped by geometry, not by tesseract's
    block numbers (on UI screens those join a sidebar item to a paragraph line, or split one
    paragraph into several blocks):
    - a line whose median word height is >= 1.3x the page's median word height and that has
      <= 12 words is a heading;
    - a line whose first token is a bullet (or what tesseract reads a small bullet as) or an
      enumerator (1. 2) a.) starts a list item; the glyph bullet itself is dropped from the text;
      a line under it at its text column goes on it when it starts in lower case (a wrapped
      item) and is the next item when it does not (its bullet unread);
    - a line goes on the block just above it when it starts within 0.8 line heights below that
      block's last line, the word heights differ by < 25 % and it is left- or centre-aligned with
      it within 1 line height (a wrapped list item: indented past its bullet); headings go on only
      headings, list items and paragraphs never go on a heading;
    - a word hyphenated at a line end is joined with the next line's first word when that one
      starts in lower case.
    Blocks are in reading order (XY-cut); `text` is their text separated by blank lines.
    """
    lines = _lines(words, rules)
    if not lines:
        return {"text": "", "blocks": []}
    page_height = float(statistics.median(w["height"] for line in lines for w in line.words))
    blocks: list[dict[str, Any]] = []
    for line in sorted(lines, key=lambda l: (l.top, l.left)):
        kind = _kind(line, page_height, rules)
        if kind == "list_item" and _BULLET_GLYPH.match(line.words[0]["text"]):
            line.words[0] = {**line.words[0], "bullet": True}
        fits = [(fit, i) for i, block in enumerate(blocks)
                if (fit := _continues(block, line, kind, rules)) is not None]
        if fits:
            (_, fit_kind), i = min(fits)
            if fit_kind == "list_item":  # the next item of a list, its bullet unread
                blocks.append({"kind": "list_item", "lines": [line]})
            else:
                blocks[i]["lines"].append(line)
        else:
            blocks.append({"kind": kind, "lines": [line]})
    boxes = [(min(l.left for l in b["lines"]), min(l.top for l in b["lines"]),
              max(l.right for l in b["lines"]), max(l.bottom for l in b["lines"])) for b in blocks]
    out = []
    for i in _reading_order(boxes):
        left, top, right, bottom = boxes[i]
        texts = [" ".join(w["text"] for w in l.words if not w.get("bullet")) for l in blocks[i]["lines"]]
        out.append({
            "kind": blocks[i]["kind"],
            "text": _join_lines(texts),
            "box": {"left": int(left), "top": int(top), "width": int(right - left), "height": int(bottom - top)},
        })
    return {"text": "\n\n".join(b["text"] for b in out), "blocks": out}
