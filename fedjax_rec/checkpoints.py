"""Atomic result files and whole-state checkpoints.

Every file is written to a temporary name in the same directory, flushed, and
renamed over the target, so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

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


# A checkpoint file: MAGIC, a format version (uint32, little-endian), the payload's length
# (uint64) and its sha256, then the payload (msgpack of the state dict).
CHECKPOINT_MAGIC = b"FJRCKPT\0"
# Version 2: the interaction network is `PublicParams.net` (was `mlp`).
CHECKPOINT_VERSION = 2
_HEADER = len(CHECKPOINT_MAGIC) + 4 + 8 + 32
CHECKPOINT_NAME = "checkpoint.msgpack"
PREVIOUS_NAME = "checkpoint.prev.msgpack"


class CheckpointError(ValueError):
  """A checkpoint file is truncated, altered, of another format, or of another state."""


def save_checkpoint(path: str | os.PathLike, state: Any, keep_previous: bool = True) -> None:
  """Writes the whole state pytree (a checked header, then msgpack via `flax.serialization`).

  With `keep_previous`, an existing `path` is first renamed to its `.prev` sibling
  (`previous_path`), so the last two checkpoints survive; each rename is atomic, and a
  crash between them leaves the previous one for `load_latest_checkpoint`.
  """
  path = Path(path)
  payload = flax.serialization.msgpack_serialize(flax.serialization.to_state_dict(fetch(state)))
  header = (CHECKPOINT_MAGIC + CHECKPOINT_VERSION.to_bytes(4, "little")
            + len(payload).to_bytes(8, "little") + hashlib.sha256(payload).digest())
  if keep_previous and path.is_file():
    os.replace(path, previous_path(path))
  atomic_write_bytes(path, header + payload)


def previous_path(path: str | os.PathLike) -> Path:
  """`checkpoint.msgpack` -> `checkpoint.prev.msgpack` (the rotated older checkpoint)."""
  path = Path(path)
  return path.with_name(f"{path.stem}.prev{path.suffix}")


def load_checkpoint(path: str | os.PathLike, template: Any) -> Any:
  """Restores a state saved by `save_checkpoint` into `template`'s structure.

  Raises:
    CheckpointError: one line naming the file: a bad header, length or checksum, or a
      payload that does not fit `template`. A file without the header (written before
      checkpoints carried one) is read as format 0 when its msgpack decodes whole.
  """
  path = Path(path)
  data = path.read_bytes()
  if data.startswith(CHECKPOINT_MAGIC):
    if len(data) < _HEADER:
      raise CheckpointError(f"{path}: truncated checkpoint (header of {len(data)} bytes)")
    version = int.from_bytes(data[8:12], "little")
    if version != CHECKPOINT_VERSION:
      raise CheckpointError(f"{path}: checkpoint format {version}, this version reads "
                            f"{CHECKPOINT_VERSION}; rerun in a new --workdir")
    size = int.from_bytes(data[12:20], "little")
    payload = data[_HEADER:]
    if len(payload) != size:
      raise CheckpointError(f"{path}: truncated checkpoint ({len(payload)} of {size} "
                            "payload bytes)")
    if hashlib.sha256(payload).digest() != data[20:_HEADER]:
      raise CheckpointError(f"{path}: checksum mismatch (the file was altered)")
  else:
    payload = data
  try:
    raw = flax.serialization.msgpack_restore(payload)
    restored = flax.serialization.from_state_dict(template, raw)
    out = jax.tree.map(lambda t, x: jax.numpy.asarray(x, dtype=t.dtype), template, restored)
    for t, x in zip(jax.tree.leaves(template), jax.tree.leaves(out)):
      if t.shape != x.shape:
        raise ValueError(f"an array of shape {x.shape} where {t.shape} is expected")
    return out
  except Exception as e:  # pylint: disable=broad-except  (msgpack/flax raise many types)
    raise CheckpointError(f"{path}: not a checkpoint of this run "
                          f"({type(e).__name__}: {str(e)[:120]})") from None


def load_latest_checkpoint(path: str | os.PathLike, template: Any,
                           log: Callable[[str], None] = print) -> Any | None:
  """The newest good checkpoint of `path` and its `.prev` sibling, or None if neither exists.

  A refused file is logged (one line) and the previous one is tried.

  Raises:
    CheckpointError: checkpoints exist but none is good; the message says how to start over.
  """
  path = Path(path)
  refused = []
  for candidate in (path, previous_path(path)):
    if not candidate.is_file():
      continue
    try:
      state = load_checkpoint(candidate, template)
    except CheckpointError as e:
      log(f"refused {e}")
      refused.append(str(e))
      continue
    if refused:
      log(f"resuming from the previous checkpoint {candidate}")
    return state
  if refused:
    raise CheckpointError(f"{'; '.join(refused)}; no good checkpoint is left: delete "
                          f"{path.parent} or use another --workdir to start over")
  return None


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
