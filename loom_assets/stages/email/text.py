"""Body text: decoding declared charsets, HTML to text, and splitting off quoted replies."""

import codecs
import re
from collections.abc import Sequence

import lxml.html
from lxml import etree
from lxml_html_clean import Cleaner

from loom_assets.stages.email.rows import BrokenMessage


# -- text decoding ----------------------------------------------------------------------------
def clean_text(text: str) -> str:
    """Text PostgreSQL accepts: bytes the parser kept as surrogate escapes are decoded (UTF-8,
    else Windows-1252), NULs dropped."""
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        raw = text.encode("utf-8", "surrogateescape")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", "replace")
    return text.replace("\x00", "")


def decode_text(payload: bytes, declared: str | None) -> tuple[str, list[str]]:
    """`payload` as text and what was wrong with its charset (empty when nothing). Raises
    BrokenMessage for an unknown charset over bytes that are not UTF-8."""
    charset = (declared or "us-ascii").strip().strip('"').lower()
    try:
        codec = codecs.lookup(charset).name
    except LookupError:
        try:
            return payload.decode("utf-8"), [f"unknown_charset:{charset}"]
        except UnicodeDecodeError:
            raise BrokenMessage("unknown_charset", f"charset {charset!r} is unknown and the text is not UTF-8") from None
    try:
        return payload.decode(codec), []
    except UnicodeDecodeError:
        pass
    for fallback in ("utf-8", "cp1252"):
        if fallback != codec:
            try:
                return payload.decode(fallback), [f"charset_mismatch:{charset}->{fallback}"]
            except UnicodeDecodeError:
                continue
    return payload.decode(codec, "replace"), [f"charset_replaced:{charset}"]


# -- HTML -------------------------------------------------------------------------------------
_CLEANER = Cleaner(scripts=True, javascript=True, style=True, comments=True, embedded=True, forms=False,
                   kill_tags=["head", "title"], page_structure=False, safe_attrs_only=False)
# Paragraph-like elements are set apart by a blank line, line-like ones by a line break (Gmail
# writes one <div> per line). Marks first, newlines at the end: adjacent elements share breaks.
_PARAGRAPHS = {"p", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "hr", "section",
               "article", "header", "footer", "address"}
_LINES = {"div", "li", "tr", "dd", "dt"}
_LINE, _PARAGRAPH = "\x01", "\x02"


def _html_lines(element) -> str:
    parts = [element.text or ""]
    for child in element:
        if not isinstance(child.tag, str):  # processing instructions and the like
            parts.append(child.tail or "")
            continue
        inner = _html_lines(child)
        tag = child.tag.lower()
        if tag == "blockquote":  # quoted replies in HTML mail: quote them as text mail does
            lines = _breaks(inner).strip("\n").splitlines()
            inner = _LINE + "\n".join(f"> {line}" for line in lines) + _LINE
        elif tag == "br":
            inner = "\n"
        elif tag in _PARAGRAPHS:
            inner = f"{_PARAGRAPH}{inner}{_PARAGRAPH}"
        elif tag in _LINES:
            inner = f"{_LINE}{inner}{_LINE}"
        elif tag == "td":
            inner = f"{inner} "
        parts += [inner, child.tail or ""]
    return "".join(parts)


def _breaks(text: str) -> str:
    """Runs of break marks (and the whitespace between them) as one line break, or a blank
    line when one of them is a paragraph's."""
    return re.sub(r"[\x01\x02][\x01\x02\s]*",
                  lambda m: "\n\n" if _PARAGRAPH in m.group() else "\n", text)


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: scripts, styles and comments removed (lxml_html_clean),
    block elements on their own lines, blockquotes as "> " lines."""
    if not html.strip():
        return ""
    try:
        document = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return ""
    _CLEANER(document)
    text = _breaks(_html_lines(document))
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# -- quoted replies -----------------------------------------------------------------------------
# "On Tue, 3 Mar 2026 at 10:00, Ann <ann@x.org> wrote:" (Gmail, Apple Mail, Thunderbird), often
# wrapped over two lines; the same in French, German and Spanish.
_ATTRIBUTION = re.compile(
    r"^(?:On\s.{1,300}?\swrote|Le\s.{1,300}?\sa\s+écrit|Am\s.{1,300}?\sschrieb|El\s.{1,300}?\sescribió)\s*:\s*$",
    re.IGNORECASE | re.DOTALL,
)
# Outlook: "-----Original Message-----", or a rule of underscores followed by a From: header block.
_OUTLOOK = re.compile(r"^\s*-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine)\s*-{2,}\s*$",
                      re.IGNORECASE)
_RULE = re.compile(r"^\s*_{10,}\s*$")
_HEADER_LINE = re.compile(r"^\s*\*?(?:From|De|Von)\s*:\*?\s", re.IGNORECASE)


def _quote_start(lines: Sequence[str]) -> int | None:
    """Index of the first line of a quoted-reply block (an attribution or an Outlook header)."""
    for i, line in enumerate(lines):
        if _OUTLOOK.match(line):
            return i
        if _RULE.match(line) and any(_HEADER_LINE.match(l) for l in lines[i + 1:i + 3]):
            return i
        for span in (1, 2, 3):  # attributions wrap over up to three lines
            joined = " ".join(l.strip() for l in lines[i:i + span])
            if joined and _ATTRIBUTION.match(joined):
                return i
    return None


def split_quoted(text: str) -> tuple[str, str | None]:
    """(new text, quoted replies or None). Everything from the first attribution ("On … wrote:")
    or Outlook header block ("-----Original Message-----") on is quoted; above it, lines starting
    with ">" are quoted too, so inline replies between quotes stay new text."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = _quote_start(lines)
    head, tail = (lines, []) if start is None else (lines[:start], lines[start:])
    new = [l for l in head if not l.lstrip().startswith(">")]
    quoted = [l for l in head if l.lstrip().startswith(">")] + tail
    new_text = re.sub(r"\n{3,}", "\n\n", "\n".join(new)).strip()
    quoted_text = "\n".join(quoted).strip()
    return new_text, quoted_text or None
