"""Tiny sequential fixtures shared by the tests (small shapes: fast compiles)."""

from __future__ import annotations

import dataclasses

import pytest

from fedjax_rec.models.encoders import EncoderConfig
from fedjax_rec.tasks.sequential.config import SeqConfig, method_config
from fedjax_rec.tasks.sequential.data import load_seq_dataset
from fedjax_rec.tasks.sequential.synthetic import SeqSyntheticConfig
from fedjax_rec.server import ServerConfig

TINY_DATA = SeqSyntheticConfig(num_users=40, num_items=48, num_clusters=4, num_successors=2,
                               mean_length=8.0, min_length=3, max_length=24)
MAX_LEN = 10
# XLA options for the tests' jits: the tests run tiny shapes, where compiling (not
# running) dominates; the lowest backend optimisation level compiles 2-3x faster.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture(scope="session")
def tiny_dataset():
  return load_seq_dataset("synthetic", max_len=MAX_LEN, seed=1, synthetic=TINY_DATA)


def tiny_config(method: str = "fortress", encoder: str = "sasrec", **overrides) -> SeqConfig:
  base = SeqConfig(encoder=EncoderConfig(name=encoder, embed_dim=8, max_len=MAX_LEN,
                                         num_blocks=2, dropout=0.2, embed_init_std=0.3),
                   server=ServerConfig(optimizer="sgd", lr=0.5), clients_per_round=16,
                   epochs=2)
  return method_config(method, base, **overrides)


def replace_objective(config: SeqConfig, **kw) -> SeqConfig:
  return dataclasses.replace(config, objective=dataclasses.replace(config.objective, **kw))
