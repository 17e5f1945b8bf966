"""The HTML of what customers receive (acknowledgment, breach notice, reminder, closing
notice) in a real browser: nothing overflows a phone's 390 px, and on a 1280 px screen
the lines stay short enough to read (the text column is at most 600 px wide)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.render import Renderer
from gateway.templatecheck import _renderings
from tests.test_digest import in_chromium
from tests.test_i18n import NOW, config_in

CUSTOMER = ("ack.html.j2", "breach.html.j2", "reminder.html.j2", "closed.html.j2")
CHECK = """<script>
window.addEventListener('load', function () {
  var doc = document.documentElement, widest = 0;
  Array.prototype.forEach.call(document.querySelectorAll('p'), function (p) {
    widest = Math.max(widest, p.getBoundingClientRect().width); });
  document.title = JSON.stringify({overflow: doc.scrollWidth > window.innerWidth + 1,
                                   widest: Math.round(widest), viewport: window.innerWidth});
});
</script></body>"""


def customer_pages(language: str) -> dict[str, str]:
    """Each customer HTML message in `language`, with every optional value filled in."""
    renderer = Renderer(config_in(language))
    pages = {}
    for what, _keys, render in _renderings(renderer, NOW):
        name = what.split(" ", 1)[0]
        if name in CUSTOMER and "without optional values" not in what:
            pages[name] = str(render())
    assert sorted(pages) == sorted(CUSTOMER)
    return pages


@pytest.mark.parametrize("width", [390, 1280])
@pytest.mark.parametrize("language", ["en", "de"])
def test_customer_mail_fits_a_phone_and_keeps_short_lines_on_a_wide_screen(
    tmp_path: Path, width: int, language: str
) -> None:
    for name, html in customer_pages(language).items():
        page = tmp_path / f"{name.removesuffix('.html.j2')}-{language}.html"
        page.write_text(html, encoding="utf-8")
        seen = in_chromium(page, width, tmp_path, check=CHECK)
        assert seen["overflow"] is False, (name, seen)
        widest, viewport = int(str(seen["widest"])), int(str(seen["viewport"]))
        assert 0 < widest <= min(viewport, 600), (name, seen)
