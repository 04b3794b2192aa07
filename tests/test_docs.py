"""The documentation builds with warnings as errors, with the API reference and the gallery."""

from pathlib import Path

import pytest
from sphinx.cmd.build import build_main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs_html")
    doctrees = tmp_path_factory.mktemp("docs_doctrees")
    status = build_main(
        ["-W", "--keep-going", "-q", "-b", "html", "-d", str(doctrees), str(DOCS), str(out)]
    )
    assert status == 0, "sphinx build failed (warnings are errors)"
    return out


def test_api_page_of_generative_distance(html):
    page = html / "api" / "generated" / "gendist.GenerativeDistance.html"
    assert page.is_file()
    text = page.read_text(encoding="utf-8")
    assert "GenerativeDistance" in text and "geodesic" in text


def test_every_gallery_example_has_html_and_figure(html):
    assert len(EXAMPLES) >= 7
    for example in EXAMPLES:
        stem = example.stem
        assert (html / "auto_examples" / f"{stem}.html").is_file(), stem
        figures = list((html / "_images").glob(f"sphx_glr_{stem}_[0-9][0-9][0-9].png"))
        assert figures, f"no figure from {stem}"
