"""API docs Markdown: rendered as CommonMark (plus tables), sanitised against an allow-list."""

from html.parser import HTMLParser

import pytest

from apps.portal.markdown import render_markdown, sanitise


def test_the_usual_markdown_is_kept():
    html = render_markdown(
        "# Title\n\nSome *text* and `code`.\n\n- one\n- two\n\n1. first\n\n"
        "```python\nprint('<hi>')\n```\n\n"
        "| name | type |\n| --- | --- |\n| q | string |\n\n"
        "[docs](https://example.test/docs) and [relative](/portal/)\n"
    )
    assert "<h1>Title</h1>" in html
    assert "<em>text</em>" in html and "<code>code</code>" in html
    assert "<ul>" in html and "<ol>" in html and "<li>one</li>" in html
    assert "<pre><code class=\"language-python\">print('&lt;hi&gt;')" in html
    assert "<table>" in html and "<th>name</th>" in html and "<td>string</td>" in html
    assert '<a href="https://example.test/docs" rel="noopener noreferrer">docs</a>' in html
    assert '<a href="/portal/" rel="noopener noreferrer">relative</a>' in html


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def test_raw_html_and_scripts_never_reach_the_page():
    """Raw HTML in the docs is shown as text; no element, handler or javascript: URL is made."""
    html = render_markdown(
        "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n"
        '<a href="javascript:alert(1)" onclick="x()">click</a>\n\n'
        "[link](javascript:alert(1))\n\n![img](javascript:alert(1))\n\n"
        "[ok](https://example.test)"
    )
    tags = _tags(html)
    assert {t for t, _ in tags} <= {"p", "a"}
    for _, attrs in tags:
        assert not any(name.startswith("on") for name in attrs)
        assert not str(attrs.get("href", "")).lower().startswith("javascript:")
    assert [a["href"] for t, a in tags if t == "a"] == ["https://example.test"]
    assert "&lt;script&gt;" in html  # shown as text


@pytest.mark.parametrize(
    "dirty",
    [
        "<p><script>alert(1)</script>safe</p>",
        '<p><img src="x" onerror="alert(1)">safe</p>',
        '<p><a href="javascript:alert(1)" onmouseover="x()">safe</a></p>',
        '<p style="color:red" onclick="x()">safe</p>',
        '<p><iframe src="https://evil.test"></iframe>safe</p>',
        '<p><a href="data:text/html;base64,PHNjcmlwdD4=">safe</a></p>',
    ],
)
def test_the_sanitiser_strips_what_is_dangerous(dirty):
    clean = sanitise(dirty)
    assert "safe" in clean
    for bad in (
        "<script",
        "alert(1)",
        "onerror",
        "onclick",
        "onmouseover",
        "javascript:",
        "style=",
        "<iframe",
        "data:text",
    ):
        assert bad not in clean


def test_links_get_rel_noopener():
    clean = sanitise('<a href="https://x.test" rel="opener" target="_blank">x</a>')
    assert 'rel="noopener noreferrer"' in clean and "target" not in clean


def test_code_classes_other_than_a_language_are_dropped():
    assert (
        sanitise('<code class="language-js evil">x</code>') == '<code class="language-js">x</code>'
    )
    assert sanitise('<code class="evil">x</code>') == "<code>x</code>"


def test_empty_docs():
    assert render_markdown("") == "" and render_markdown("   \n") == ""
