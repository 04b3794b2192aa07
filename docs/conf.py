"""Sphinx configuration of the gendist documentation."""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "sphinxext"))

import gendist  # noqa: E402

project = "gendist"
author = "gendist developers"
copyright = "2026, gendist developers"
release = gendist.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "figures/README*"]
templates_path = ["_templates"]

# -- API reference -----------------------------------------------------------------------------
# The reference lists the curated public names: ``gendist.__all__`` first, then, module by
# module, the names of each public module's ``__all__`` that the top level does not export.
# The page is written here, from those lists, so it cannot drift from the code.
PUBLIC_MODULES = [
    "estimator",
    "latent",
    "densities",
    "metric",
    "graph",
    "paths",
    "shortcuts",
    "refine",
    "curves",
    "landmarks",
    "affinity",
    "cluster",
    "embed",
    "vae",
    "datasets",
    "plotting",
    "cli",
]


def _kind(obj) -> str:
    if isinstance(obj, type):
        return "class"
    if callable(obj):
        return "function"
    return "data"


def _autosummary(names: list[str], module: str, kinds: dict[str, str]) -> list[str]:
    lines = []
    for kind, template in (("class", "class.rst"), ("function", "function.rst"),
                           ("data", "data.rst")):
        chosen = [n for n in names if kinds[n] == kind]
        if not chosen:
            continue
        lines += [
            f".. currentmodule:: {module}",
            "",
            ".. autosummary::",
            "   :toctree: generated/",
            f"   :template: {template}",
            "",
        ]
        lines += [f"   {n}" for n in chosen]
        lines.append("")
    return lines


def write_api_page() -> None:
    top = [n for n in gendist.__all__ if n != "__version__"]
    top_objects = {id(getattr(gendist, n)) for n in top}
    lines = [
        "API reference",
        "=============",
        "",
        "The curated public names: everything in ``gendist.__all__``, then, for each public",
        "module, the names in its ``__all__`` that the top level does not export.",
        "",
        "Top level: ``gendist``",
        "----------------------",
        "",
    ]
    lines += _autosummary(top, "gendist", {n: _kind(getattr(gendist, n)) for n in top})
    for name in PUBLIC_MODULES:
        module = importlib.import_module(f"gendist.{name}")
        summary = (module.__doc__ or "").strip().splitlines()
        rest = [n for n in module.__all__ if id(getattr(module, n)) not in top_objects]
        shared = [n for n in module.__all__ if id(getattr(module, n)) in top_objects]
        title = f"``gendist.{name}``"
        lines += [title, "-" * len(title), ""]
        if summary:
            lines += [summary[0], ""]
        if shared:
            refs = ", ".join(f":obj:`gendist.{n}`" for n in shared)
            lines += [f"Also exported at the top level: {refs}.", ""]
        if rest:
            kinds = {n: _kind(getattr(module, n)) for n in rest}
            lines += _autosummary(rest, f"gendist.{name}", kinds)
    out = HERE / "api" / "index.rst"
    out.parent.mkdir(exist_ok=True)
    text = "\n".join(lines) + "\n"
    if not out.exists() or out.read_text() != text:
        out.write_text(text)


write_api_page()

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
add_module_names = False

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
}
# The build must work offline: intersphinx inventories are fetched only when asked for.
if not os.environ.get("GENDIST_DOCS_INTERSPHINX"):
    intersphinx_mapping = {}

# -- Markdown ----------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# -- Gallery -----------------------------------------------------------------------------------
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", category=UserWarning, message=".*non-interactive.*")

sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "abort_on_example_error": True,
    "reference_url": {"gendist": None},
    "doc_module": ("gendist",),
    "backreferences_dir": None,
    "reset_modules": ("matplotlib", "gallery_threads.limit_threads"),
    "reset_modules_order": "both",
}

# -- HTML --------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"gendist {release}"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}


# -- Links out of docs/ ------------------------------------------------------------------------
# The Markdown pages link to files elsewhere in the repository (``../benchmarks/scale.md``),
# which read well on a code host but are not documents of this site: at build time they
# become links to a copy of the file.
_OUTSIDE_LINK = re.compile(r"\]\((\.\./[^)\s]+)\)")


def _link_outside_files(app, docname, source):
    if str(app.env.doc2path(docname)).endswith(".md"):
        source[0] = _OUTSIDE_LINK.sub(r"](path:\1)", source[0])


def setup(app):
    app.connect("source-read", _link_outside_files)
