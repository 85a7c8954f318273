"""The one native accelerator (the metadata is in pyproject.toml): plain frames decoded in C."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("logstore._framesc", ["logstore/_framesc.c"], optional=False)])
