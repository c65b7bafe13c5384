"""API docs: Markdown written by product managers, shown to every developer.

``render_markdown`` parses CommonMark (plus tables) with markdown-it-py, raw HTML disabled, then
sanitises the result with nh3 against an allow-list: headings, paragraphs, lists, emphasis,
code and pre, block quotes, rules, tables and links (http, https, mailto and relative, with
``rel="noopener noreferrer"``). Scripts, event handlers, ``style`` and ``javascript:`` URLs
never reach the page, whatever the author typed: the parser escapes raw HTML and the
sanitiser would drop it anyway.
"""

from __future__ import annotations

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

TAGS = {
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "p",
    "br",
    "hr",
    "ul",
    "ol",
    "li",
    "strong",
    "em",
    "s",
    "del",
    "code",
    "pre",
    "blockquote",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}
ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
    # a fenced block's language (``language-python``), for readers and future highlighting
    "code": {"class"},
}
URL_SCHEMES = {"http", "https", "mailto"}

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    "table"
)


def _code_class(element: str, attribute: str, value: str) -> str | None:
    if element == "code" and attribute == "class":
        kept = [c for c in value.split() if c.startswith("language-") and c.isascii()]
        return " ".join(kept) or None
    return value


def sanitise(html: str) -> str:
    return nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags={"script", "style"},
        attributes=ATTRIBUTES,
        attribute_filter=_code_class,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def render_markdown(text: str) -> SafeString:
    """Sanitised HTML for ``text`` (Markdown), safe to put in a template."""
    if not text or not text.strip():
        return mark_safe("")
    return mark_safe(sanitise(_md.render(text)))  # noqa: S308 - sanitised by nh3 above
