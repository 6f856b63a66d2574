"""Atomic result files and whole-state checkpoints.

Every file is written to a temporary name in the same directory, flushed, and
renamed over the target, so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

from fedjax_rec.sharding import fetch


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
  """Rewrites a JSON-lines file atomically with all `rows`."""
  atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n"
                                  for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
  path = Path(path)
  rows = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: not a JSON line ({e.msg})") from None
  return rows


def _json_default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  return str(x)


def save_checkpoint(path: str | os.PathLike, state: Any) -> None:
  """Writes the whole state pytree (msgpack via `flax.serialization`)."""
  host = fetch(state)
  atomic_write_bytes(path, flax.serialization.msgpack_serialize(
      flax.serialization.to_state_dict(host)))


def load_checkpoint(path: str | os.PathLike, template: Any) -> Any:
  """Restores a state saved by `save_checkpoint` into `template`'s structure."""
  with open(path, "rb") as f:
    raw = flax.serialization.msgpack_restore(f.read())
  restored = flax.serialization.from_state_dict(template, raw)
  return jax.tree.map(lambda t, x: jax.numpy.asarray(x, dtype=t.dtype), template, restored)


def replace_section(path: str | os.PathLike, name: str, text: str) -> None:
  """Writes `text` between `<!-- begin NAME -->` / `<!-- end NAME -->` markers of a
  Markdown file, atomically; the rest of the file is kept (appended if absent)."""
  begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
  block = f"{begin}\n{text.rstrip()}\n{end}\n"
  old = Path(path).read_text() if Path(path).exists() else ""
  if begin in old and end in old:
    head, rest = old.split(begin, 1)
    new = head + block + rest.split(end, 1)[1].removeprefix("\n")
  else:
    new = (old.rstrip() + "\n\n" if old.strip() else "") + block
  atomic_write_text(path, new)
