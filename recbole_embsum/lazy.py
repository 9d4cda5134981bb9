"""Public names of a package imported on first use (PEP 562), so importing the package itself stays cheap."""
import importlib


def lazy_attributes(package, names):
    """Return a module-level ``__getattr__`` for ``package`` that imports ``names[attr]`` (a module name, absolute or
    relative to ``package``) when ``attr`` is first read, and returns that module's ``attr``."""

    def __getattr__(name):
        if name in names:
            return getattr(importlib.import_module(names[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
