"""Shim for Dataflow's `--setup_file`, which runs `setup.py sdist`; metadata lives in pyproject.toml."""

from setuptools import setup

setup()
