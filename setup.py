"""Build the compiled modules of fastwsgi.

Metadata lives in pyproject.toml; this file only declares the Cython extensions.
Release builds are stripped (the symbols are 4/5 of each .so and a user never needs
them); FASTWSGI_DEBUG=1 keeps them and adds bounds checks and AddressSanitizer/UBSan.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTWSGI_DEBUG") == "1"

compile_args = ["-O2"]
link_args = ["-Wl,--strip-all"]
directives = {
    "language_level": "3",
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}
if DEBUG:
    compile_args = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    link_args = ["-fsanitize=address,undefined"]
    directives.update(boundscheck=True, wraparound=True, initializedcheck=True)

MODULES = ["_parser", "_writer", "_uwsgi", "_proxyproto", "_metrics", "_connection", "_loop"]

extensions = [
    Extension(
        f"fastwsgi.{name}",
        [f"fastwsgi/{name}.pyx"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for name in MODULES
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
