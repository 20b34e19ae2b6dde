"""Builds the one Cython extension, cdragon._core, from cdragon/_core.pyx and its includes."""
from setuptools import setup, Extension
from Cython.Build import cythonize

extensions = [
    Extension("cdragon._core", ["cdragon/_core.pyx"], extra_compile_args=["-O2"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
        annotate=False,
    ),
)
