"""The client axis over devices and hosts, with JAX's own machinery.

A round's client slots are sharded over a one-axis mesh (`"clients"`); public
parameters, client states and the client data are replicated. The jitted round
is partitioned by XLA (GSPMD): each device runs its slots' local updates, and
the sparse aggregation reduces across devices. Several hosts join through
`jax.distributed`; every process builds the same host-side data and feeds
global arrays, and only process 0 logs and writes.
"""

from __future__ import annotations

import dataclasses
import socket
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fedjax_rec.scheduling import BucketPlan

CLIENTS = "clients"


def make_mesh(num_devices: int | None = None) -> Mesh | None:
  """A 1-D mesh over `num_devices` (default: all); None for a single device.

  Raises:
    ValueError: `num_devices` is not positive or does not divide the devices.
  """
  total = jax.device_count()
  n = total if num_devices in (None, 0) else num_devices
  if n < 1 or total % n:
    raise ValueError(f"--mesh_shape={num_devices} must be a positive divisor of the "
                     f"{total} available devices")
  if n == 1:
    return None
  return jax.make_mesh((n,), (CLIENTS,), devices=jax.devices()[:n],
                       axis_types=(jax.sharding.AxisType.Auto,))


def pad_plan(plan: BucketPlan, multiple: int) -> BucketPlan:
  """Rounds every class's slot count up to a multiple of the mesh size."""
  caps = tuple(-(-c // multiple) * multiple for c in plan.capacities)
  return dataclasses.replace(plan, capacities=caps)


def _put(x, sharding: NamedSharding):
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def replicate(tree, mesh: Mesh | None):
  """Global replicated arrays (identity without a mesh)."""
  if mesh is None:
    return tree
  sharding = NamedSharding(mesh, P())
  return jax.tree.map(lambda x: _put(fetch(x), sharding), tree)


def shard_clients(x: np.ndarray, mesh: Mesh | None):
  """A global array split along its leading (client) axis."""
  if mesh is None:
    return x
  return _put(x, NamedSharding(mesh, P(CLIENTS)))


def constrain_clients(tree, mesh: Mesh | None):
  """Inside jit: keep the leading axis of every leaf split over the mesh."""
  if mesh is None:
    return tree
  sharding = NamedSharding(mesh, P(CLIENTS))
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def fetch(tree):
  """Host copies of (possibly multi-host, replicated) arrays."""
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(x.addressable_data(0))
    return np.asarray(x)
  return jax.tree.map(one, tree)


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int,
                           timeout_s: int = 60) -> None:
  """`jax.distributed.initialize` with a bounded wait and a clear error.

  Raises:
    ValueError: bad process counts.
    RuntimeError: the coordinator could not be reached within `timeout_s`.
  """
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(f"--process_id={process_id} must be in [0, --num_processes="
                     f"{num_processes})")
  if process_id != 0:
    _wait_for_coordinator(coordinator_address, timeout_s)
  # Cross-process collectives on CPU (no effect on accelerators). Asking for the
  # backend here would initialise it, which must wait for `initialize`.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=timeout_s)
  except Exception as e:  # pylint: disable=broad-except
    raise RuntimeError(f"--coordinator_address={coordinator_address}: could not join "
                       f"{num_processes} processes within {timeout_s}s "
                       f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def _wait_for_coordinator(address: str, timeout_s: int) -> None:
  """Polls the coordinator's port: XLA aborts the process if it cannot connect."""
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise ValueError(f"--coordinator_address={address} must be host:port")
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host, int(port)), timeout=2):
        return
    except OSError as e:
      if time.monotonic() > deadline:
        raise RuntimeError(f"--coordinator_address={address}: no coordinator answered within "
                           f"{timeout_s}s ({e.strerror or e})") from None
      time.sleep(0.5)
