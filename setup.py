"""Package discovery (everything else is in pyproject.toml).

components/ and pipelines/ sit at the top level of the repository (see DESIGN.md) but install as the
subpackages ``urbangen.components`` and ``urbangen.pipelines``, so `urbangen pipeline compile` works from
an installed package as well as from a checkout.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages("src"), "urbangen.components", "urbangen.pipelines"],
    package_dir={"": "src", "urbangen.components": "components", "urbangen.pipelines": "pipelines"},
)
