"""fedjax_rec: a JAX simulator of federated recommender systems under model poisoning.

The public API:

* data: `fedjax_rec.data.loaders.load_dataset`, `ImplicitDataset`, `SyntheticConfig`;
* configuration: `SimConfig`, `get_preset` (`paper`, `ahum-reference`);
* simulation: `Simulator` (`init`, `run_epoch`, `evaluate`; `num_seeds=S` for S
  seeds as one vmapped program), `runner.run` for a whole resumable run of any task;
* tasks: `Task` (the seam), the NCF task (`tasks.ncf`) and the sequential task
  (`tasks.sequential`);
* components: `make_method`, `make_aggregator`, `make_attack`, `select_targets`;
* metrics: `metrics.ranking_metrics`, `metrics.exposure_ratio`, `geometry.*`.
"""

from fedjax_rec.aggregators import make_aggregator
from fedjax_rec.attacks import make_attack, select_targets
from fedjax_rec.tasks.ncf.config import SimConfig
from fedjax_rec.data.dataset import ImplicitDataset, UserItems
from fedjax_rec.data.loaders import load_dataset
from fedjax_rec.data.synthetic import SyntheticConfig
from fedjax_rec.tasks.ncf.methods import make_method
from fedjax_rec.tasks.ncf.presets import get_preset
from fedjax_rec.runner import EvalConfig, run
from fedjax_rec.simulation import SimState, Simulator
from fedjax_rec.task import Task

__all__ = ["EvalConfig", "ImplicitDataset", "SimConfig", "SimState", "Task",
           "Simulator", "SyntheticConfig", "UserItems", "get_preset", "load_dataset",
           "make_aggregator", "make_attack", "make_method", "run",
           "select_targets"]
