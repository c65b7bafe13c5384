"""The release dossier prints to PDF cleanly: Chromium's own print engine (``page.pdf``) on the
HTML view, as an auditor would print it from the browser.

Cleanly means: the portal's navigation and buttons are not printed, the print-only header is,
nothing is wider than an A4 page, and the PDF has every section's heading.
"""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import expect

from tests.compliance.dossier_helpers import dossier_world, signing_key  # noqa: F401
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

# A4 at 96 CSS px per inch, less the 14 mm side margins of the print style sheet.
A4_PRINTABLE_WIDTH_PX = round((210 - 2 * 14) / 25.4 * 96)


def test_the_dossier_prints_to_pdf_cleanly(page, signing_key, artifacts_dir):  # noqa: F811
    # Built off the browser's thread: Playwright's event loop runs in this one, and the world's
    # evaluation run calls the (async) pipeline through async_to_sync.
    with ThreadPoolExecutor(1) as pool:
        world = pool.submit(dossier_world).result()
    page.goto("/login/")
    page.fill("#id_username", world.auditor.username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")

    page.goto(f"/releases/{world.release.pk}/dossier/")
    sections = page.locator(".dossier-section h2").all_inner_texts()
    assert len(sections) >= 8, sections

    page.emulate_media(media="print")
    page.set_viewport_size({"width": A4_PRINTABLE_WIDTH_PX, "height": 1100})
    for hidden in ("header.topbar", ".actions", ".dossier-toc"):
        for element in page.locator(hidden).all():
            expect(element).to_be_hidden()
    expect(page.locator(".dossier-print-only").first).to_be_visible()
    too_wide = page.evaluate(
        """(limit) => [...document.querySelectorAll('.dossier table, .dossier pre')]
            .filter(e => e.getBoundingClientRect().width > limit + 1)
            .map(e => (e.closest('section, .card')?.querySelector('h2, h3')?.innerText || '?')
                 + ': ' + e.tagName + ' ' + Math.round(e.getBoundingClientRect().width))""",
        A4_PRINTABLE_WIDTH_PX,
    )
    assert not too_wide, too_wide
    assert page.evaluate("document.documentElement.scrollWidth") <= A4_PRINTABLE_WIDTH_PX + 1

    pdf = page.pdf(format="A4", print_background=False)
    (artifacts_dir / "dossier.pdf").write_bytes(pdf)
    assert pdf.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert 2 <= pages <= 40, pages
