"""Every `python -m experiments.train` command of the README starts cleanly.

Each command (code blocks and inline code, continuation lines joined) runs as written
with `--epochs=0` appended and its `--workdir` pointed at a temporary folder: flags,
presets, data and the set-up of the simulator are checked, no training is paid for.
Commands on data that is not present are skipped; the multi-host commands (laid out side by
side, one per host, and waiting for their peers) are covered by the multi-host test.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands(program: str = "experiments.train") -> list[str]:
  text = (ROOT / "README.md").read_text()
  chunks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
  out = []
  for chunk in chunks:
    for line in chunk.replace("\\\n", " ").splitlines():
      # Side-by-side blocks hold two commands on a line: split at each `python -m`.
      for part in re.split(r"(?=python -m )", line):
        part = part.split("#")[0].strip()
        if part.startswith(f"python -m {program}") and "\\" not in part:
          out.append(" ".join(part.split()))
  return list(dict.fromkeys(out))


def _data_present(args: list[str]) -> bool:
  flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
  if "data_dir" in flags:
    return (ROOT / flags["data_dir"]).exists()
  dataset = flags.get("dataset", "synthetic")
  if dataset == "synthetic":
    return True
  return (ROOT.parent / "shared" / "data" / dataset.removesuffix("-presplit")).is_dir()


def test_readme_has_train_examples():
  assert len(readme_commands()) >= 4


@pytest.mark.parametrize("command", readme_commands())
def test_readme_train_example_starts(command, tmp_path):
  args = shlex.split(command)[3:]
  if any(a.startswith("--coordinator_address") for a in args):
    pytest.skip("multi-host example: covered by the multi-host test")
  if not _data_present(args):
    pytest.skip("data not present")
  args = [a for a in args if not a.startswith("--workdir")]
  proc = subprocess.run([sys.executable, "-m", "experiments.train", *args, "--epochs=0",
                         f"--workdir={tmp_path / 'wd'}"], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr


def _all_commands() -> list[str]:
  progs = ("sweep", "plot", "reproduce", "search", "centralized", "benchmark")
  return [c for p in progs for c in readme_commands(f"experiments.{p}")]


def test_readme_sweep_grids_validate():
  from fedjax_rec.grid import parse_grid  # pylint: disable=import-outside-toplevel
  from fedjax_rec.sweep import validate_points  # pylint: disable=import-outside-toplevel
  grids = [re.search(r"--grid='([^']+)'", c).group(1)
           for c in readme_commands("experiments.sweep") if "--grid=" in c]
  assert grids
  for grid in grids:
    points = parse_grid(grid)
    try:
      validate_points(points)
    except FileNotFoundError:
      pytest.skip("a grid's data is not present")


def test_readme_reproduce_names_exist():
  from experiments.repro_specs import EXPERIMENTS  # pylint: disable=import-outside-toplevel
  commands = readme_commands("experiments.reproduce")
  assert commands
  for command in commands:
    for kind, value in re.findall(r"--(table|figure)=(\w+)", command):
      assert f"{kind}{value}" in EXPERIMENTS, command


@pytest.mark.parametrize("program", sorted({c.split()[2] for c in _all_commands()}))
def test_readme_flags_exist(program):
  """Every flag a README command gives the program is one the program defines."""
  names = sorted({a[2:].split("=", 1)[0]
                  for c in _all_commands() if c.split()[2] == program
                  for a in shlex.split(c)[3:] if a.startswith("--")})
  code = (f"import {program}\nfrom absl import flags\n"
          f"missing = [n for n in {names!r} if n not in flags.FLAGS\n"
          "           and not (n.startswith('no') and n[2:] in flags.FLAGS)]\n"
          "assert not missing, missing\n")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-1500:]


@pytest.mark.parametrize("doc", ["README.md", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_docs_link_only_files_in_the_repository(doc):
  """A relative link in the README or docs/ names a file or folder that is there."""
  path = ROOT / doc
  text = re.sub(r"```.*?```|`[^`\n]*`", "", path.read_text(), flags=re.S)  # code is not a link
  targets = re.findall(r"\]\(([^)\s]+)\)", text)
  missing = [t for t in targets if not re.match(r"[a-z]+:", t)
             and not (path.parent / t.split("#")[0]).exists()]
  assert not missing, missing
