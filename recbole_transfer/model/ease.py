r"""EASE (Steck, WWW'19) as RecBole 1.2.1 builds it, behind a memory guard.

RecBole's ``EASE`` inverts a dense items x items matrix: at its peak the build holds about
:data:`ITEM_PAIR_BYTES` bytes per item pair (an estimate from the peak RSS that issue 27 reports, 10.2 GB at 16k
items; not yet measured by a script here), so at 60k items it would need about 140 GB and fail far into the run, or
swap the machine to a halt. The memory available is the kernel's ``MemAvailable``: it ignores a cgroup's limit
and what parallel runs will take, so the guard catches the hopeless cases, not every one. This class refuses such an item count
before anything is allocated, with the memory it would need, what is available, and the model to use instead
(ItemKNN: memory items x k). Below the bound it is RecBole's EASE exactly (it only checks, then builds as RecBole's
does). Every run that names ``EASE`` gets this class (the plugin's models resolve before RecBole's); a method's own
item x item models call :func:`check_item_matrix` the same way.
"""

import os

from recbole.model.general_recommender.ease import EASE as RecBoleEASE

from ..errors import TransferConfigError

ITEM_PAIR_BYTES = 40  # bytes per (item, item) pair at the peak of an EASE build (estimate: 10.2 GB at 16k items)


def available_memory():
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``; elsewhere free pages; None: unknown)."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_item_matrix(model, items, alternative, pair_bytes=ITEM_PAIR_BYTES):
    """Refuse ``items`` when an items x items build of ``model`` (``pair_bytes`` per pair) would not fit in the
    available memory; the error names ``alternative``."""
    need, free = pair_bytes * items ** 2, available_memory()
    if free is not None and need > free:
        raise TransferConfigError(
            f"{model}: its {items} x {items} item matrices need about {_size(need)} ({pair_bytes} bytes per item pair) "
            f"and {_size(free)} are available; use {alternative} (memory: items x k)")


def _size(n):
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 28 else f"{n / 2 ** 20:.1f} MiB" if n >= 2 ** 18 else f"{n} bytes"


class EASE(RecBoleEASE):
    """RecBole's EASE, refused before its build when its item x item matrices would not fit (module docstring)."""

    alternative = "ItemKNN"  # named by the refusal

    def __init__(self, config, dataset):
        check_item_matrix(type(self).__name__, dataset.item_num, self.alternative)
        super().__init__(config, dataset)
