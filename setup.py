"""Package discovery lives here only because pyproject's `packages.find` cannot rename a folder.

The operator's source folder is `operator/` (the layout users expect), but its import name must be
`herl_operator`: a top-level package called `operator` would shadow the standard library module.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["herl", "herl.*"]), "herl_operator"],
    package_dir={"herl_operator": "operator"},
)
