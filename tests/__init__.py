"""The test suite: tests/unit/<package>, tests/cli and tests/acceptance (CONTRIBUTING.md, "Test layout")."""
