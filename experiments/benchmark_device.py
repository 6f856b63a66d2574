"""The accelerator suite of `python -m experiments.benchmark --suite=device`.

Every device row in a few minutes: ML-1M `paper` (Original and CL4FedRec) and
`ahum-reference`, a 10k-user x 12k-item synthetic catalogue, whole runs with evaluation
every epoch, and a check that the memory guard refuses a round the device cannot hold.
Written to the 'device' section of BENCHMARKS.md with the device's name
(`benchmarks/gpu.sh` runs it).
"""

from __future__ import annotations

import jax

from experiments.bench_lib import (Row, WholeRun, bench, bench_whole_run, to_markdown,
                                   whole_run_configurations, whole_run_markdown)
from fedjax_rec import oom
from fedjax_rec.checkpoints import replace_section
from fedjax_rec.data.loaders import load_dataset
from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
from fedjax_rec.tasks.ncf.presets import get_preset


def device_rows(spec, pre, epochs: int) -> tuple[list[Row], list[WholeRun], str]:
  """The accelerator suite: its rows, whole runs, and the memory guard's check."""
  big = load_synthetic(SyntheticConfig(num_users=10_000, num_items=12_000), seed=0,
                       scalable=True)
  rows = [bench("paper / original", get_preset("paper"), spec, epochs),
          bench("paper / cl4fedrec", get_preset("paper", method="cl4fedrec"), spec, epochs),
          bench("ahum-reference / original", get_preset("ahum-reference"), pre, epochs,
                "pre-split data"),
          bench("paper / original", get_preset("paper"), big, epochs,
                "synthetic 10k users x 12k items")]
  whole = [bench_whole_run(name, config, dataset)
           for name, config, dataset in whole_run_configurations(pre)]
  stats = jax.local_devices()[0].memory_stats()
  try:
    oom.check_round_fits(1 << 50, 256, stats)
    guard = "the memory guard did NOT refuse a 1 PiB round (the device reports no limit)"
  except oom.MemoryLimitError as e:
    guard = f"the memory guard refuses a 1 PiB round before allocating: `{e}`"
  return rows, whole, guard


def device_markdown(rows: list[Row], whole: list[WholeRun], guard: str) -> str:
  devices = ", ".join(f"{d.platform}:{d.device_kind}" for d in jax.devices())
  text = to_markdown(rows, f"Accelerator ({devices})")
  return (text + "\n" + "\n".join(whole_run_markdown(whole).splitlines()[4:]) + "\n\n"
          + f"Memory: {guard}.\n")


def main_device(data_dir: str, epochs: int, out: str) -> None:
  spec = load_dataset("ml-1m", data_dir, seed=0)
  pre = load_dataset("ml-1m-presplit", data_dir, seed=0, valid_frac=0.0)
  rows, whole, guard = device_rows(spec, pre, epochs)
  print(guard)
  if out:
    replace_section(out, "device", device_markdown(rows, whole, guard))
    print(f"wrote the 'device' section of {out}")
