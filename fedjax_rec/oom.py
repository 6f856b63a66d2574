"""Out of memory as a clear, one-line error that says what to change.

XLA reports a failed allocation as a `JaxRuntimeError` whose message holds
`RESOURCE_EXHAUSTED` (or "Out of memory"); NumPy raises `MemoryError`.
`memory_guard` turns either into a `MemoryLimitError` naming the round size and
suggesting a smaller `clients_per_round`; the original error is its `__cause__`.

A round's memory grows with its padded rows (the clients' interactions), not
with clients × items: `round_bytes_floor` counts what every padded row must
upload, and `check_round_fits` refuses a round that cannot fit the device's free
memory before anything is allocated (where the device reports its limit; CPU
backends do not).
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator, Mapping

_OOM_MARKERS = ("RESOURCE_EXHAUSTED", "out of memory")


class MemoryLimitError(RuntimeError):
  """A round (or data placement) does not fit the device's memory.

  Attributes:
    clients_per_round: the round size that did not fit.
  """

  def __init__(self, message: str, clients_per_round: int):
    super().__init__(message)
    self.clients_per_round = clients_per_round


def is_out_of_memory(error: BaseException) -> bool:
  """Whether `error` is an allocation failure (XLA or host)."""
  if isinstance(error, MemoryError):
    return True
  if not isinstance(error, RuntimeError):  # JaxRuntimeError is a RuntimeError
    return False
  text = str(error).lower()
  return any(marker.lower() in text for marker in _OOM_MARKERS)


def _gib(num_bytes: float) -> str:
  return f"{num_bytes / 2**30:.2f} GiB"


def limit_message(clients_per_round: int, what: str = "in a round", detail: str = "",
                  advice: str | None = None) -> str:
  """One line: what ran out, the round size, and a smaller one to try."""
  if advice is None and clients_per_round > 1:
    advice = (f"rerun with a smaller --clients_per_round "
              f"(e.g. {max(clients_per_round // 2, 1)})")
  elif advice is None:
    advice = "one client per round is the least: use a smaller model or more memory"
  return (f"out of memory {what} with {clients_per_round} clients per round{detail}; "
          f"{advice}")


def _requested(error: BaseException) -> str:
  """`" (allocating N GiB)"` when the error says how much it asked for."""
  found = re.search(r"allocat\w*\s+(\d+)\s*bytes", str(error))
  return f" (allocating {_gib(int(found.group(1)))})" if found else ""


@contextlib.contextmanager
def memory_guard(clients_per_round: int, what: str = "in a round",
                 advice: str | None = None) -> Iterator[None]:
  """Re-raises an out-of-memory error inside the block as `MemoryLimitError`.

  Args:
    clients_per_round: the round size, named in the message.
    what: where the memory ran out, e.g. "in a round".
    advice: what to change (default: a smaller `--clients_per_round`).
  """
  try:
    yield
  except MemoryLimitError:
    raise
  except (MemoryError, RuntimeError) as e:
    if not is_out_of_memory(e):
      raise
    raise MemoryLimitError(limit_message(clients_per_round, what, _requested(e), advice),
                           clients_per_round) from e


def round_bytes_floor(padded_rows: int, embed_dim: int) -> int:
  """A floor under a round's bytes: its uploads, one float32 row per padded row.

  Each padded row uploads a `d`-wide gradient with its item and client ids.
  Activations and gathered rows come on top (about 5x this on CPU with the
  `paper` preset), so a round that does not fit this floor cannot fit at all.
  The catalogue size does not enter: nothing in a round is clients x items.
  """
  return int(padded_rows) * (embed_dim + 2) * 4


def check_round_fits(needed_bytes: int, clients_per_round: int,
                     stats: Mapping[str, int] | None) -> None:
  """Raises `MemoryLimitError` when `needed_bytes` exceed the device's free memory.

  Args:
    needed_bytes: a floor under the round's bytes (`round_bytes_floor`).
    clients_per_round: the round size, named in the message.
    stats: `device.memory_stats()`; None (CPU) skips the check.
  """
  if not stats or "bytes_limit" not in stats:
    return
  free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
  if needed_bytes > free:
    raise MemoryLimitError(
        limit_message(clients_per_round, "for a round",
                      f" (needs at least {_gib(needed_bytes)}, {_gib(free)} free)"),
        clients_per_round)
