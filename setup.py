"""Builds the one Cython extension, cdragon._core, from cdragon/_core.pyx and its includes.

`make setup` builds it in place (`setup.py build_ext --inplace`), then installs the
project editable (`pip install -e .`, for the `cdragon` command). An editable build
would compile the whole core again in a temporary directory only to copy it over the
same file, so it leaves the extension out when the in-place module is newer than every
core source; a fresh or stale checkout still gets it built.
"""
import glob
import os
import sys

from setuptools import setup, Extension

HERE = os.path.dirname(os.path.abspath(__file__))


def _inplace_core_is_current() -> bool:
    built = glob.glob(os.path.join(HERE, "cdragon", "_core.*.so"))
    sources = [*glob.glob(os.path.join(HERE, "cdragon", "_core.p*")),
               *glob.glob(os.path.join(HERE, "cdragon", "core", "*.p*")),
               *glob.glob(os.path.join(HERE, "cdragon", "core", "*.h"))]
    return bool(built) and min(map(os.path.getmtime, built)) >= max(map(os.path.getmtime, sources))


if "editable_wheel" in sys.argv and _inplace_core_is_current():
    ext_modules = []
else:
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension("cdragon._core", ["cdragon/_core.pyx"], extra_compile_args=["-O2"])],
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
        annotate=False,
    )

setup(ext_modules=ext_modules)
