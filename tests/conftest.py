"""Shared fixtures live in modules of their own (one per concern) so branches merge without clashes."""

pytest_plugins = ["tests.projects", "tests.browser"]
