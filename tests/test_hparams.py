"""Typed hyper-parameters: schemas derived from builders, checked when a config is made."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from fedjax_rec import aggregators, attacks, hparams
from fedjax_rec.runner import EvalConfig, config_dict
from fedjax_rec.tasks.ncf import methods
from fedjax_rec.tasks.ncf.presets import get_preset
from fedjax_rec.tasks.sequential import attacks as seq_attacks
from fedjax_rec.tasks.sequential.config import method_config

# pylint: disable=protected-access
REGISTRIES = [("aggregator", aggregators.PARAMS, aggregators._BUILDERS),
              ("attack", attacks.PARAMS, attacks.ATTACKS),
              ("method", methods.PARAMS, methods.METHODS),
              ("seq attack", seq_attacks.PARAMS, seq_attacks._BUILDERS)]
# pylint: enable=protected-access


@pytest.mark.parametrize("kind,params,builders", REGISTRIES, ids=[r[0] for r in REGISTRIES])
def test_every_component_has_the_defaults_of_its_builder(kind, params, builders):
  assert set(params) == set(builders), kind
  for name, builder in builders.items():
    sig = inspect.signature(builder).parameters
    for field in dataclasses.fields(params[name]):
      if field.name in sig:  # rCL4FedRec forwards to CL4FedRec's parameters
        assert sig[field.name].default == field.default, (kind, name, field.name)
      assert field.name not in hparams.NOT_HPARAMS - {"popularity"}, (kind, name)


def test_aggregator_defaults_are_the_documented_ones():
  assert aggregators.DEFAULTS["krum"] == {"num_byzantine": 1, "max_abs": 1e6,
                                          "block_items": None}
  assert aggregators.DEFAULTS["fedavg"] == {"max_abs": None}
  assert aggregators.DEFAULTS["hics"]["min_uploaders"] == 2
  assert "convention" not in aggregators.DEFAULTS["median"]


def test_canonical_forms_agree():
  krum = aggregators.PARAMS["krum"]
  as_pairs = hparams.canonical("aggregator", "krum", (("num_byzantine", 2),), aggregators.PARAMS)
  assert as_pairs == (("num_byzantine", 2),)
  assert hparams.canonical("aggregator", "krum", {"num_byzantine": 2},
                           aggregators.PARAMS) == as_pairs
  full = hparams.canonical("aggregator", "krum", krum(num_byzantine=2), aggregators.PARAMS)
  assert full == tuple(sorted(dataclasses.asdict(krum(num_byzantine=2)).items()))
  assert hparams.typed("krum", as_pairs, aggregators.PARAMS) == krum(num_byzantine=2)


@pytest.mark.parametrize("name,given,match", [
    ("zeno", {}, "unknown aggregator 'zeno'"),
    ("krum", {"num_byzantines": 2}, "unknown hyper-parameter 'num_byzantines'; it takes "
                                    "block_items, max_abs, num_byzantine"),
    ("krum", {"num_byzantine": 1.5}, "num_byzantine must be int, got 1.5"),
    ("krum", {"num_byzantine": True}, "num_byzantine must be int"),
    ("hics", {"client_clip": "1"}, "client_clip must be float"),
    ("median", {"num_trim": 1}, "median' got unknown hyper-parameter 'num_trim'; it takes max_abs"),
])
def test_canonical_rejects(name, given, match):
  with pytest.raises(ValueError, match=match):
    hparams.canonical("aggregator", name, given, aggregators.PARAMS)


def test_canonical_accepts_ints_as_floats_and_none_where_optional():
  got = hparams.canonical("aggregator", "norm_bound", {"clip_norm": 1, "clip_quantile": None},
                          aggregators.PARAMS)
  assert got == (("clip_norm", 1), ("clip_quantile", None))


def test_a_dataclass_of_another_component_is_refused():
  with pytest.raises(ValueError, match="takes median hyper-parameters, got krum"):
    hparams.canonical("aggregator", "median", aggregators.PARAMS["krum"](), aggregators.PARAMS)


def test_config_checks_its_hyper_parameters_when_made():
  base = get_preset("paper")
  with pytest.raises(ValueError, match="method 'cl4fedrec' got unknown hyper-parameter 'lamda1'"):
    dataclasses.replace(base, method="cl4fedrec", method_kwargs={"lamda1": 0.1})
  with pytest.raises(ValueError, match="attack 'a_hum': num_users must be int"):
    dataclasses.replace(base, attack="a_hum", targets=(1,), num_malicious=1,
                        attack_kwargs={"num_users": 2.5})
  with pytest.raises(ValueError, match="without an attack"):
    dataclasses.replace(base, attack_kwargs={"num_users": 2})
  with pytest.raises(ValueError, match="aggregator 'krum': num_byzantine must be int"):
    dataclasses.replace(base, aggregator="krum", aggregator_kwargs={"num_byzantine": "1"})
  with pytest.raises(ValueError, match="attack 'a_hum' got unknown hyper-parameter 'history_len'"):
    dataclasses.replace(base, attack="a_hum", targets=(1,), num_malicious=1,
                        attack_kwargs={"history_len": 5})  # the sequential A-hum's
  seq = method_config("fedseq", attack="a_hum", targets=(1,), num_malicious=1,
                      attack_kwargs={"history_len": 5})
  assert seq.attack_kwargs == (("history_len", 5),)


def test_every_form_gives_one_record():
  """A dataclass, a dict and pairs make the same config and the same `config.json`
  (the aggregator's record fills its defaults in, whatever form was given)."""
  base = get_preset("paper")
  krum = aggregators.PARAMS["krum"]
  forms = [dataclasses.replace(base, aggregator="krum", aggregator_kwargs=kw)
           for kw in (krum(num_byzantine=2), {"num_byzantine": 2}, (("num_byzantine", 2),))]
  records = [config_dict(c, "x", EvalConfig()) for c in forms]
  assert records[0] == records[1] == records[2]
  assert forms[1] == forms[2] and hash(forms[1]) == hash(forms[2])
  cl = methods.PARAMS["rcl4fedrec"](use_user_cl=False)
  typed = dataclasses.replace(base, method="rcl4fedrec", method_kwargs=cl)
  assert dict(typed.method_kwargs)["use_user_cl"] is False
  assert hparams.typed("rcl4fedrec", typed.method_kwargs, methods.PARAMS) == cl


def test_without_defaults_drops_only_values_equal_to_their_default():
  params = methods.PARAMS["rcl4fedrec"]
  pairs = (("lambda1", 0.5), ("lambda2", 0.7), ("num_synthetic_users", 60),
           ("use_user_cl", False))
  assert hparams.without_defaults(pairs, params) == (("lambda2", 0.7), ("use_user_cl", False))
  assert hparams.without_defaults((("num_hot", 100.0),), params) == ()
  assert hparams.without_defaults((), params) == ()
