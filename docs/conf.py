"""Sphinx configuration of myelin's documentation (``sphinx-build -W -b html docs docs/_build``)."""

import myelin

project = "myelin"
author = "the myelin authors"
copyright = "the myelin authors"
release = myelin.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# numpy-style docstrings
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}

# headings of the Markdown pages become link targets
myst_heading_anchors = 3
# $...$ and $$...$$ as math (the article page)
myst_enable_extensions = ["dollarmath"]

html_theme = "alabaster"
html_title = f"myelin {release}"

# attributes listed in a docstring are fields of the class, not objects of their own (a property
# of the same name is documented as itself)
napoleon_use_ivar = True
# "Optimizer" in a parameter's type names myelin.optim.Optimizer; the python domain would warn that
# myelin.keras.optimizers has a class of that name too (the ambiguity warning, nothing else)
suppress_warnings = ["ref.python"]
