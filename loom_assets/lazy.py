"""Libraries that few stages use, imported when first used rather than with their module.

Every run worker, sensor evaluation and `loom` command imports the definitions, so a library
only one stage needs (OpenCV: half a second) would otherwise cost each of them its import.
"""

import importlib
from types import ModuleType


class LazyModule:
    """Stands for the module `name`: the first attribute read imports it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str):
        return getattr(self.module, attribute)

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported when used>"
