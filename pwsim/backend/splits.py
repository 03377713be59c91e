"""Byte-budgeted work splits: the one rule every "cut this work into pieces of at most so many bytes"
follows (row blocks of the eigensolver, the non-local operator's column ranges, random starts drawn a
piece at a time, the MPI transposes' row ranges, ...)."""
from __future__ import annotations


def ranges(n: int, item_bytes: float, budget: float, minimum: int = 1) -> list[tuple[int, int]]:
    """Consecutive [start, stop) ranges covering 0..n, each of at most ``budget`` bytes of items of
    ``item_bytes`` bytes (at least ``minimum`` items per range: a range never ends empty-handed)."""
    step = max(minimum, int(budget // max(1, item_bytes)))
    return [(start, min(start + step, n)) for start in range(0, n, step)]
