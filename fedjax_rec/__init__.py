"""fedjax_rec: a JAX simulator of federated recommender systems under model poisoning.

The public API:

* data: `fedjax_rec.data.loaders.load_dataset`, `ImplicitDataset`, `SyntheticConfig`;
* configuration: `SimConfig`, `get_preset` (`paper`, `ahum-reference`);
* simulation: `Simulator` (`init`, `run_epoch`, `evaluate`), `runner.run` for a
  whole resumable run; `ReplicaSimulator` / `run_replicas` for S seeds as one
  vmapped program;
* components: `make_method`, `make_aggregator`, `make_attack`, `select_targets`;
* metrics: `metrics.ranking_metrics`, `metrics.exposure_ratio`, `geometry.*`.
"""

from fedjax_rec.aggregators import make_aggregator
from fedjax_rec.attacks import make_attack, select_targets
from fedjax_rec.config import SimConfig
from fedjax_rec.data.dataset import ImplicitDataset, UserItems
from fedjax_rec.data.loaders import load_dataset
from fedjax_rec.data.synthetic import SyntheticConfig
from fedjax_rec.methods import make_method
from fedjax_rec.presets import get_preset
from fedjax_rec.replicas import ReplicaSimulator, run_replicas
from fedjax_rec.runner import EvalConfig, run
from fedjax_rec.simulation import SimState, Simulator

__all__ = ["EvalConfig", "ImplicitDataset", "ReplicaSimulator", "SimConfig", "SimState",
           "Simulator", "SyntheticConfig", "UserItems", "get_preset", "load_dataset",
           "make_aggregator", "make_attack", "make_method", "run", "run_replicas",
           "select_targets"]
