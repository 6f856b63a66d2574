"""The interleaved A/B epoch timing of `experiments.benchmark` at toy size.

Runs in a subprocess: `experiments.benchmark` defines absl flags that other experiments
programs imported into this process also define.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import numpy as np
    from experiments import benchmark as b
    from fedjax_rec.data.synthetic import SyntheticConfig, load_synthetic
    from fedjax_rec.tasks.ncf.presets import get_preset

    data = load_synthetic(SyntheticConfig(num_users=60, num_items=40, mean_activity=10, min_activity=5, max_activity=20), seed=0)
    a = get_preset("ahum-reference", clients_per_round=16)
    pair = b.bench_pair("median / FedAvg", a, get_preset("ahum-reference",
                        clients_per_round=16, aggregator="median"), data, 2, 1.5)
    assert len(pair.a_s) == len(pair.b_s) == 2, pair
    assert all(t > 0 for t in pair.a_s + pair.b_s), pair
    np.testing.assert_allclose(pair.ratio, np.median(np.array(pair.b_s) / np.array(pair.a_s)))
    names = [name for name, *_ in b.pair_configurations(None)]
    for agg in ("multi_krum", "bulyan", "union_filter"):
      assert f"{agg} / FedAvg" in names, names
    assert "UNION / Original" in names, names
    union = b.bench_pair("union_filter / FedAvg", a, get_preset("ahum-reference",
                         clients_per_round=16, aggregator="union_filter"), data, 2, 1.5)
    assert len(union.a_s) == len(union.b_s) == 2, union
    text = b.pairs_markdown([pair])
    assert text.count("| median / FedAvg |") == 1, text
    assert ("| yes |" in text) == (pair.ratio <= 1.5), text
    # A row carries its evaluation against the scoring floor; a whole run its total.
    row = b.bench("ahum-reference", a, data, 1)
    assert row.eval_s > 0 and row.eval_floor_s > 0 and np.isfinite(row.eval_ratio), row
    whole = b.bench_whole_run("ahum", a, data, epochs=2)
    assert whole.seconds >= whole.train_s + whole.eval_s > 0, whole
    from experiments import benchmark_device as d
    text = d.device_markdown([row], [whole], "the memory guard refuses")
    assert "Accelerator (cpu:" in text and "| ahum | " in text and "Memory:" in text, text
    print("OK")
""")


def test_bench_pair_alternates_and_reports():
  out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                       timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "OK" in out.stdout
