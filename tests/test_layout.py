"""The layout the design promises: the protocol knows no task, and files stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fedjax_rec"
# The protocol: rounds, the driver, the run loop, the server and what they stand on.
PROTOCOL = ["task.py", "types.py", "rounds.py", "simulation.py", "seed_axis.py", "runner.py",
            "scheduling.py", "server.py", "faults.py", "checkpoints.py", "oom.py",
            "sharding.py", "metrics.py", "metrics_loo.py", "eval_batches.py", "attacks/base.py",
            "attacks/benign.py", "attacks/lie.py", "attacks/fang.py", "attacks/fang_krum.py",
            "attacks/fedattack.py",
            "accuracy_drop.py", "threat.py",
            *sorted(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "aggregators").glob("*.py"))]


def _imports(path: Path) -> set[str]:
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


@pytest.mark.parametrize("module", PROTOCOL)
def test_protocol_imports_no_task(module):
  bad = sorted(n for n in _imports(PACKAGE / module) if n.startswith("fedjax_rec.tasks"))
  assert not bad, f"{module} imports {bad}"


def test_no_file_passes_400_lines():
  long = {str(p.relative_to(ROOT)): n for p in [*PACKAGE.rglob("*.py"),
                                               *(ROOT / "experiments").rglob("*.py")]
          if (n := len(p.read_text().splitlines())) > 400}
  assert not long, long


def test_no_module_imports_the_benchmark_program():
  # `python -m experiments.benchmark` runs as `__main__`: a module importing
  # `experiments.benchmark` would define its flags a second time (the device suite did).
  users = [str(p.relative_to(ROOT)) for p in (ROOT / "experiments").glob("*.py")
           if "experiments.benchmark" in _imports(p)]
  assert not users, users
