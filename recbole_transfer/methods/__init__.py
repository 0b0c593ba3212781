"""The methods shipped with recbole_transfer, one folder each; importing this package registers them.

Each folder holds everything about one method: its models, its strategy, its runner (or the shared two-stage
one), its keys, its default scenario and search space, its result tables; ``__init__.py`` registers its
:class:`~recbole_transfer.registry.Method`. Every sub-package is imported here, in name order, so a new folder
needs no line elsewhere (only the package list of ``setup.cfg``, for wheels). Nothing outside ``methods/``
names a method.
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
    if _info.ispkg:
        importlib.import_module(f"{__name__}.{_info.name}")
