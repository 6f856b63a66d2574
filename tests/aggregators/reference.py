"""Slow, obvious NumPy oracles for the aggregators: Python loops over items and clients.

Each oracle takes `Uploads` (any array type), works in float64 on ragged per-item lists of
the accepted clients' uploads, and returns `(item_grad, item_touched, mlp_leaves, extra)`,
where `mlp_leaves` is the list of aggregated MLP leaves in `jax.tree.leaves` order and
`extra` holds oracle values of some metrics.
"""

from __future__ import annotations

import jax
import numpy as np


def _np(x):
  return np.asarray(x, dtype=np.float64)


def accepted_clients(uploads, max_abs):
  """Python-loop reading of `validate`: the set of accepted client slots."""
  client_mask = np.asarray(uploads.client_mask)
  row_mask = np.asarray(uploads.row_mask)
  row_client = np.asarray(uploads.row_client)
  row_grad = _np(uploads.row_grad)
  leaves = [_np(x) for x in jax.tree.leaves(uploads.net)]
  weight = _np(uploads.client_weight)

  def bad(v):
    v = np.asarray(v)
    out = not np.all(np.isfinite(v))
    if max_abs is not None and not out:
      out = bool(np.any(np.abs(v) > max_abs))
    return out

  accepted = []
  for c in range(len(client_mask)):
    if not client_mask[c]:
      continue
    rows = [row_grad[m] for m in range(len(row_mask)) if row_mask[m] and row_client[m] == c]
    if any(bad(r) for r in rows) or any(bad(x[c]) for x in leaves):
      continue
    if not np.isfinite(weight[c]) or weight[c] < 0:
      continue
    accepted.append(c)
  num_rejected = int(client_mask.sum()) - len(accepted)
  return accepted, num_rejected


def per_item(uploads, accepted, num_items):
  """item -> (clients sorted by slot, uploads [n, d])."""
  row_mask = np.asarray(uploads.row_mask)
  row_client = np.asarray(uploads.row_client)
  row_item = np.asarray(uploads.row_item)
  row_grad = _np(uploads.row_grad)
  dim = row_grad.shape[1]
  acc = set(accepted)
  lists = {i: [] for i in range(num_items)}
  for m in range(len(row_mask)):
    if row_mask[m] and row_client[m] in acc:
      lists[int(row_item[m])].append((int(row_client[m]), row_grad[m]))
  out = {}
  for i, lst in lists.items():
    lst.sort(key=lambda t: t[0])
    out[i] = ([c for c, _ in lst], np.array([g for _, g in lst]).reshape(len(lst), dim))
  return out


def mlp_matrix(uploads):
  """[C, P] flattened MLP per client and the leaf shapes (jax.tree.leaves order)."""
  leaves = [_np(x) for x in jax.tree.leaves(uploads.net)]
  num_clients = leaves[0].shape[0]
  flat = np.concatenate([x.reshape(num_clients, -1) for x in leaves], axis=1)
  return flat, [x.shape[1:] for x in leaves]


def unflatten(vec, shapes):
  out, off = [], 0
  for s in shapes:
    size = int(np.prod(s))
    out.append(vec[off:off + size].reshape(s))
    off += size
  return out


# ----------------------------------------------------------------------------------------
# Statistics on one ragged list: vs [n, P] (n >= 1), ws [n].


def stat_fedavg(vs, ws, convention):
  if convention == "sum":
    return vs.sum(0)
  if convention == "mean":
    return vs.mean(0)
  if ws.sum() <= 0:
    return np.zeros(vs.shape[1])
  return (vs * ws[:, None]).sum(0) / ws.sum()


def stat_median(vs):
  return np.median(vs, axis=0)


def stat_trimmed(vs, f):
  n = len(vs)
  if n <= 2 * f:
    return np.median(vs, axis=0), True
  s = np.sort(vs, axis=0)
  return s[f:n - f].mean(0), False


def stat_krum(vs, f):
  """Returns (value, index into vs or -1 on fallback)."""
  n = len(vs)
  k = n - f - 2
  if k < 1:
    return vs.mean(0), -1
  scores = []
  for i in range(n):
    d = sorted(float(np.sum((vs[i] - vs[j]) ** 2)) for j in range(n) if j != i)
    scores.append(sum(d[:k]))
  # First minimum: the lowest slot (lists are slot-sorted). The JAX version treats scores
  # within a relative 1e-5 as equal; random test data has no such near-ties.
  best = int(np.argmin(scores))
  return vs[best], best


def rescale(value, n, convention):
  return value * n if convention == "sum" else value


def clip(v, c):
  norm = np.linalg.norm(v)
  return v * (c / norm) if norm > c else v


# ----------------------------------------------------------------------------------------
# Oracles.


def oracle(name, uploads, num_items, convention, **kw):
  """Oracle of aggregator `name` with hyper-parameters `kw` (builder names)."""
  from . import reference_clients  # pylint: disable=import-outside-toplevel
  if name in reference_clients.CLIENT_RULES:
    return reference_clients.oracle(name, uploads, num_items, convention, **kw)
  max_abs = kw.get("max_abs", None if name == "fedavg" else 1e6)
  accepted, num_rejected = accepted_clients(uploads, max_abs)
  weight = _np(uploads.client_weight)
  rows = per_item(uploads, accepted, num_items)
  flat, shapes = mlp_matrix(uploads)
  d = np.asarray(uploads.row_grad).shape[1]
  item_grad = np.zeros((num_items, d))
  touched = np.zeros(num_items, bool)
  extra = {"rejected": num_rejected}
  mlp_vs = flat[accepted] if accepted else np.zeros((0, flat.shape[1]))
  mlp_ws = weight[accepted] if accepted else np.zeros(0)
  n_clients = len(accepted)

  if name == "hics":
    # Client-level clip over the whole upload, before any aggregation.
    scale = {}
    clipped_clients = 0
    for c in accepted:
      sq = sum(float(np.sum(g[k] ** 2)) for i, (cs, g) in rows.items()
               for k, cc in enumerate(cs) if cc == c)
      norm = np.sqrt(sq + float(np.sum(flat[c] ** 2)))
      scale[c] = kw["client_clip"] / norm if norm > kw["client_clip"] else 1.0
      clipped_clients += norm > kw["client_clip"]
    extra["clipped_share"] = clipped_clients / max(n_clients, 1)
    sparsified = 0
    for i, (cs, vs) in rows.items():
      if not cs:
        continue
      if len(cs) < kw["min_uploaders"]:
        sparsified += 1
        continue
      vs = vs * np.array([scale[c] for c in cs])[:, None]
      item_grad[i] = clip(stat_fedavg(vs, weight[cs], convention), kw["row_clip"])
      touched[i] = True
    extra["sparsified_rows"] = sparsified
    mlp_vs = mlp_vs * np.array([scale[c] for c in accepted]).reshape(-1, 1)
    mlp = stat_fedavg(mlp_vs, mlp_ws, convention) if n_clients else np.zeros(flat.shape[1])
    return item_grad, touched, unflatten(mlp, shapes), extra

  fallback = 0
  clipped_rows = real_rows = 0
  if name == "norm_bound":
    if kw.get("clip_quantile") is None:
      row_bound = mlp_bound = kw["clip_norm"]
    else:  # adaptive: the quantile of the round's accepted norms (1.0 when there are none)
      all_rows = [v for _, vs in rows.values() for v in vs]
      row_bound = (np.quantile([np.linalg.norm(v) for v in all_rows], kw["clip_quantile"])
                   if all_rows else 1.0)
      mlp_bound = (np.quantile(np.linalg.norm(mlp_vs, axis=1), kw["clip_quantile"])
                   if n_clients else 1.0)
    extra["row_bound"] = row_bound
    extra["mlp_bound"] = mlp_bound
  for i, (cs, vs) in rows.items():
    n = len(cs)
    if n == 0:
      continue
    touched[i] = True
    if name == "fedavg":
      item_grad[i] = stat_fedavg(vs, weight[cs], convention)
    elif name == "norm_bound":
      real_rows += n
      clipped_rows += sum(np.linalg.norm(v) > row_bound for v in vs)
      vs = np.array([clip(v, row_bound) for v in vs])
      item_grad[i] = stat_fedavg(vs, weight[cs], convention)
    elif name == "median":
      item_grad[i] = rescale(stat_median(vs), n, convention)
    elif name == "trimmed_mean":
      value, fb = stat_trimmed(vs, kw["num_trim"])
      fallback += fb
      item_grad[i] = rescale(value, n, convention)
    elif name == "krum":
      value, idx = stat_krum(vs, kw["num_byzantine"])
      fallback += idx < 0
      item_grad[i] = rescale(value, n, convention)
    else:
      raise ValueError(name)

  if n_clients == 0:
    mlp = np.zeros(flat.shape[1])
  elif name == "fedavg":
    mlp = stat_fedavg(mlp_vs, mlp_ws, convention)
  elif name == "norm_bound":
    mlp_vs = np.array([clip(v, mlp_bound) for v in mlp_vs])
    mlp = stat_fedavg(mlp_vs, mlp_ws, convention)
  elif name == "median":
    mlp = rescale(stat_median(mlp_vs), n_clients, convention)
  elif name == "trimmed_mean":
    mlp = rescale(stat_trimmed(mlp_vs, kw["num_trim"])[0], n_clients, convention)
  elif name == "krum":
    value, idx = stat_krum(mlp_vs, kw["num_byzantine"])
    mlp = rescale(value, n_clients, convention)
    extra["krum_mlp_chosen"] = accepted[idx] if idx >= 0 else -1
    extra["krum_mlp_chosen_malicious"] = int(
        idx >= 0 and bool(np.asarray(uploads.client_malicious)[accepted[idx]]))

  if name == "norm_bound":
    extra["clipped_share"] = clipped_rows / max(real_rows, 1)
  if name == "trimmed_mean":
    extra["fallback_rows"] = fallback
  if name == "krum":
    extra["krum_fallback_rows"] = fallback
    extra.setdefault("krum_mlp_chosen", -1)
  return item_grad, touched, unflatten(mlp, shapes), extra


def assert_matches(aggregate, metrics, want) -> None:
  """An aggregator's `(Aggregate, metrics)` against an oracle's `(item_grad, touched,
  net leaves, extra metrics)`."""
  item_grad, touched, net_leaves, extra = want
  np.testing.assert_array_equal(np.asarray(aggregate.item_touched), touched)
  np.testing.assert_allclose(np.asarray(aggregate.item_grad), item_grad, atol=1e-5, rtol=1e-5)
  for got, leaf in zip(jax.tree.leaves(aggregate.net), net_leaves, strict=True):
    np.testing.assert_allclose(np.asarray(got), leaf, atol=1e-5, rtol=1e-5)
  for key, value in extra.items():
    np.testing.assert_allclose(metrics[key], value, atol=1e-6, err_msg=key)
