"""Grid specs: order, defaults, stable ids, and errors that name the bad token."""

import pytest

from fedjax_rec.grid import GridError, parse_grid, point_dirname, point_id
from fedjax_rec.tasks.ncf.presets import PRESETS


def test_issue_grid_is_the_product_in_order_with_seed_fastest():
  points = parse_grid("dataset=ml-1m,ml-100k;method=original,cl4fedrec,rcl4fedrec;"
                      "attack=none,a_hum,psmu;defense=none,median,hics;seed=0,1,2")
  assert len(points) == 2 * 3 * 3 * 3 * 3
  assert [p["seed"] for p in points[:4]] == [0, 1, 2, 0]
  assert points[0]["defense"] == "none" and points[3]["defense"] == "median"
  assert points[-1]["dataset"] == "ml-100k"
  assert len({point_id(p) for p in points}) == len(points)
  assert len({point_dirname(p) for p in points}) == len(points)


def test_defaults_and_stable_ids():
  (p,) = parse_grid("method=original")
  assert p["epochs"] == PRESETS["paper"].epochs
  assert p["clients_per_round"] == PRESETS["paper"].clients_per_round
  assert point_id(p) == "dataset=synthetic,method=original,attack=none,defense=none,seed=0"
  # A default-valued key, or "fedavg" for "none", does not change the id.
  (q,) = parse_grid(f"seed=0;preset=paper;defense=fedavg;epochs={p['epochs']}")
  assert point_id(q) == point_id(p)
  (r,) = parse_grid("epochs=3;seed=1")
  assert point_id(r).endswith(",epochs=3,seed=1")


def test_target_items_spec_keeps_its_commas():
  points = parse_grid("target=least_popular,items:3,17,band:0:10:2")
  assert [p["target"] for p in points] == ["least_popular", "items:3,17", "band:0:10:2"]


@pytest.mark.parametrize("spec, token", [
    ("method=orignal", "method=orignal"),
    ("dataset=ml-1m;mehtod=original", "mehtod=original"),
    ("seed=0,x", "seed=0,x"),
    ("seed", "seed"),
    ("seed=0;seed=1", "seed=1"),
    ("seed=0,,1", "seed=0,,1"),
    ("seed=1,1", "seed=1,1"),
    ("attack=a_hum,pmsu", "attack=a_hum,pmsu"),
    ("defense=krumm", "defense=krumm"),
    ("epochs=0", "epochs=0"),
    ("malicious_share=1.5", "malicious_share=1.5"),
    ("target=band:1:2", "target=band:1:2"),
])
def test_malformed_grid_names_the_token(spec, token):
  with pytest.raises(GridError, match=repr(token).replace("[", r"\[")):
    parse_grid(spec)


def test_empty_grid():
  with pytest.raises(GridError, match="empty"):
    parse_grid(" ; ")
