"""Compiled kernels (optional: without a C compiler, datamill uses their numpy twins).

Everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "datamill.ops.quality._kernels", ["src/datamill/ops/quality/_kernels.c"],
    extra_compile_args=["-O3", "-std=c99"], libraries=["m"], optional=True)])
