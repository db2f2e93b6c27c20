"""The wallet app's browser tests (a package, so that its conftest and helpers never shadow
``tests/conftest.py`` in ``sys.modules``: the suite's modules import ``conftest`` by name)."""
