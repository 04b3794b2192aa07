"""The explorer page in a real headless Chromium (Playwright driving Debian's chromium)."""

import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_moons
from sklearn.mixture import GaussianMixture

from gendist import GenerativeDistance
from gendist.cli import main
from gendist.explore import explorer_html, png_data_uri

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "explorer.png"

# canvas coordinates of data points, from the plot's scales
_PIXELS = """(indices) => {
  const col = Object.values(Bokeh.index).find(v => v.model.type === 'Column');
  const pv = col.child_views.find(v => v.model.name === 'plot');
  const src = Bokeh.documents[0].get_model_by_name('points');
  const rect = pv.canvas_view.el.getBoundingClientRect();
  return indices.map(i => [rect.left + pv.frame.x_scale.compute(src.data.x[i]),
                           rect.top + pv.frame.y_scale.compute(src.data.y[i])]);
}"""
_STATE = """() => {
  const doc = Bokeh.documents[0];
  return {n_line: doc.get_model_by_name('geodesic').data.x.length,
          text: doc.get_model_by_name('geodesic_text').text,
          ends: Array.from(doc.get_model_by_name('ends').data.index)};
}"""


@pytest.fixture(scope="module")
def moons():
    X, y = make_moons(300, noise=0.08, random_state=0)
    gmm = GaussianMixture(10, random_state=0)
    est = GenerativeDistance(gmm, n_neighbors=10, random_state=0).fit(X)
    return est, X, y


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the explorer is tested in Debian's chromium "
            "(apt-get install -y chromium)."
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]' (no browser download needed).")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, path):
    page = browser.new_page(viewport={"width": 900, "height": 720})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_function("window.Bokeh && Bokeh.documents.length > 0")
    page.wait_for_selector(".bk-Column", state="attached")
    page.wait_for_function("Object.values(Bokeh.index).length > 0")
    page.wait_for_timeout(300)
    return page, errors


def _click(page, i, n_ends):
    """Click on point ``i``; wait until ``n_ends`` end points are marked."""
    page.mouse.click(*page.evaluate(_PIXELS, [i])[0])
    done = f"Bokeh.documents[0].get_model_by_name('ends').data.index.length === {n_ends}"
    page.wait_for_function(done, timeout=5000)
    page.wait_for_timeout(400)  # apart, not a double click


def _click_two(page, a, b):
    _click(page, a, 1)
    _click(page, b, 2)
    return page.evaluate(_STATE)


def _length(text):
    match = re.search(r"length ([0-9.e+-]+), (\d+) vertices", text)
    assert match, text
    euclid = re.search(r"Euclidean (?:\([^)]*\) )?([0-9.e+-]+)", text)
    assert euclid, text
    return float(match.group(1)), int(match.group(2)), float(euclid.group(1))


def test_click_two_points_draws_their_geodesic(moons, browser, tmp_path):
    est, X, y = moons
    path = explorer_html(est, tmp_path / "explorer.html", labels=y)
    html = path.read_text()
    assert "cdn.bokeh.org" not in html and "<script src=" not in html  # self-contained
    page, errors = _open(browser, path)
    # the two tips of the upper moon: a path along it
    upper = np.flatnonzero(y == 0)
    a, b = int(upper[np.argmin(X[upper, 0])]), int(upper[np.argmax(X[upper, 0])])
    state = _click_two(page, a, b)
    a, b = state["ends"]  # the points under the clicks
    assert state["n_line"] >= 3
    length, n_vertices, euclid = _length(state["text"])
    geodesic = est.geodesic(a, b)
    np.testing.assert_allclose(length, geodesic.length, rtol=1e-4)
    assert n_vertices == len(geodesic.indices) == state["n_line"]
    np.testing.assert_allclose(euclid, np.linalg.norm(X[a] - X[b]), rtol=1e-4)
    page.mouse.move(*page.evaluate(_PIXELS, [b])[0])  # the tooltip of b
    page.wait_for_timeout(300)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    # a third click starts again
    _click(page, a, 1)
    assert page.evaluate(_STATE)["n_line"] == 0
    assert errors == []
    page.close()


def test_landmark_routes_and_embedded_images(moons, browser, tmp_path):
    est, X, y = moons
    # 4-D data (two moons and a constant image-like block) through the landmark trees
    X4 = np.column_stack([X, 0.1 * X[:, :1] ** 2, 0.05 * X[:, 1:]])
    est4 = GenerativeDistance(GaussianMixture(10, random_state=0), n_neighbors=10).fit(X4)
    images = np.abs(X4).repeat(4, axis=1)  # (n, 16): 4 x 4 images
    path = explorer_html(
        est4,
        tmp_path / "landmarks.html",
        images=images,
        max_full=50,
        n_landmarks=8,
        embedding="mds",
    )
    assert path.read_text().count("data:image/png;base64,") >= len(X4)  # and bokeh's logo
    page, errors = _open(browser, path)
    state = _click_two(page, 0, 1)
    assert state["n_line"] >= 2, state
    length, _, _ = _length(state["text"])
    a, b = state["ends"]
    assert "landmark" in state["text"]
    assert length >= est4.distance(a, b) * (1 - 1e-4)  # an upper bound
    assert errors == []
    page.close()


def test_png_data_uri():
    import base64

    uri = png_data_uri(np.arange(12.0).reshape(3, 4))
    png = base64.b64decode(uri.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[16:24] == bytes([0, 0, 0, 4, 0, 0, 0, 3])


def test_explore_help_and_usage_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["explore", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: gendist explore") and "n_landmarks" in out
    for argv, needle in [
        (["--set", "max_ful=3"], "did you mean 'max_full'"),
        (["--set", "n_samples=abc"], "n_samples must be int"),
        (["--out", str(tmp_path / "page.png")], ".html"),
        (["--set", "n_components=0"], "n_components must be at least 1"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(["explore", *argv])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0].startswith("usage: gendist explore") and len(err) == 2
        assert err[1].startswith("gendist explore: error: ") and needle in err[1], err


def test_explore_command_writes_the_page(tmp_path, capsys):
    out = tmp_path / "e.html"
    assert main(["explore", "--out", str(out), "--set", "n_samples=120"]) == 0
    assert "page:" in capsys.readouterr().out
    assert out.stat().st_size > 100_000 and "geodesic_text" in out.read_text()


def test_no_bokeh_at_import():
    import subprocess
    import sys

    code = "import gendist, gendist.explore, sys; print('bokeh' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "False", res.stderr
