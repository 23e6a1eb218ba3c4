"""Builds dualline's one C extension, records._sqlite_rows (everything else is in pyproject.toml).

It is optional: where it cannot be compiled (no C compiler, no Python headers) the install
still succeeds and records.bulk inserts through the sqlite3 driver as before, only slower.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("records._sqlite_rows", ["records/_sqlite_rows.c"], optional=True)])
