"""NumPy oracles of the client-level rules (Multi-Krum, Bulyan, UNION filter), float64.

Whole clients are dense vectors (every item row, zero where not uploaded, then the MLP);
the selection is done by Python loops and the aggregate by `reference`'s statistics on the
selected clients' ragged per-item lists. Same return form as `reference.oracle`.
"""

from __future__ import annotations

import itertools

import numpy as np

from fedjax_rec.aggregators.gap_split import MIN_SCORES, gap_reference
from fedjax_rec.aggregators.union_filter import item_order

from . import reference as ref

CLIENT_RULES = ("multi_krum", "bulyan", "union_filter")


def dense_clients(uploads, accepted, num_items):
  """client slot -> dense float64 vector (rows then MLP)."""
  rows = ref.per_item(uploads, accepted, num_items)
  flat, _ = ref.mlp_matrix(uploads)
  d = np.asarray(uploads.row_grad).shape[1]
  out = {}
  for c in accepted:
    v = np.zeros((num_items, d))
    for i, (cs, vs) in rows.items():
      for k, cc in enumerate(cs):
        if cc == c:
          v[i] = vs[k]
    out[c] = np.concatenate([v.reshape(-1), flat[c]])
  return out


def krum_scores(vecs, clients, f):
  """client -> sum of its max(n - f - 2, 1) smallest squared distances to the others."""
  k = max(len(clients) - f - 2, 1)
  scores = {}
  for a in clients:
    d = sorted(float(np.sum((vecs[a] - vecs[b]) ** 2)) for b in clients if b != a)
    scores[a] = sum(d[:k])
  return scores


def totals(vecs, clients):
  return {a: sum(float(np.sum((vecs[a] - vecs[b]) ** 2)) for b in clients) for a in clients}


def select_multi_krum(vecs, accepted, f, m):
  n = len(accepted)
  if n - f - 2 < 1:
    return list(accepted)
  scores, total = krum_scores(vecs, accepted, f), totals(vecs, accepted)
  m = n - f if m is None else min(m, n)
  return sorted(sorted(accepted, key=lambda c: (scores[c], total[c], c))[:m])


def select_bulyan(vecs, accepted, f):
  n = len(accepted)
  if f == 0 or n < 4 * f + 3:
    return list(accepted)
  remaining, selected = list(accepted), []
  for _ in range(n - 2 * f):
    scores, total = krum_scores(vecs, remaining, f), totals(vecs, remaining)
    pick = min(remaining, key=lambda c: (scores[c], total[c], c))
    selected.append(pick)
    remaining.remove(pick)
  return sorted(selected)


def _l_uni(x):
  z = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
  pots = [np.exp(-2.0 * np.sum((z[i] - z[j]) ** 2))
          for i, j in itertools.combinations(range(len(z)), 2)]
  return np.log(np.mean(pots))


def union_scores(uploads, accepted, num_items, table, lr, max_rows, ref_items):
  """client -> L_uni(after) - L_uni(before) of its table S ∪ T_c (scored clients only)."""
  order = item_order(num_items)
  ref_ids = list(np.argsort(order)[:min(ref_items, num_items)])
  rows = ref.per_item(uploads, accepted, num_items)
  scores = {}
  for c in accepted:
    mine = sorted(((order[i], i, vs[cs.index(c)]) for i, (cs, vs) in rows.items() if c in cs),
                  key=lambda t: t[0])[:max_rows]
    if not mine:
      continue
    items = [i for _, i, _ in mine]
    base = [table[s] for s in ref_ids if s not in items]
    before = np.array(base + [table[i] for i in items])
    after = np.array(base + [table[i] - lr * g for _, i, g in mine])
    scores[c] = _l_uni(after) - _l_uni(before)
  return scores


def oracle(name, uploads, num_items, convention, view=None, **kw):
  """Oracle of a client-level rule; `view` = (item table, lr) or None (zero table)."""
  accepted, num_rejected = ref.accepted_clients(uploads, kw.get("max_abs", 1e6))
  num_slots = len(np.asarray(uploads.client_mask))
  extra = {"rejected": num_rejected}
  if name == "union_filter":
    d = np.asarray(uploads.row_grad).shape[1]
    table = np.zeros((num_items, d)) if view is None else np.asarray(view[0], np.float64)
    lr = kw["sim_lr"] or (1.0 if view is None else view[1])
    scores = union_scores(uploads, accepted, num_items, table, lr, kw["max_rows"],
                          kw["ref_items"])
    drop = gap_drop(scores, num_slots)
    kept = [c for c in accepted if c not in drop]
    extra.update(union_scored=len(scores), union_dropped=len(drop))
  else:
    vecs = dense_clients(uploads, accepted, num_items)
    f = kw["num_byzantine"]
    if name == "multi_krum":
      kept = select_multi_krum(vecs, accepted, f, kw["num_selected"])
      extra["multi_krum_dropped"] = len(accepted) - len(kept)
    else:
      kept = select_bulyan(vecs, accepted, f)
      extra["bulyan_dropped"] = len(accepted) - len(kept)
  malicious = np.asarray(uploads.client_malicious)
  real = np.flatnonzero(np.asarray(uploads.client_mask))
  flagged = [c for c in real if c not in kept]
  num_mal = sum(bool(malicious[c]) for c in real)
  extra["detect_flagged_malicious"] = sum(bool(malicious[c]) for c in flagged)
  extra["detect_flagged_benign"] = len(flagged) - extra["detect_flagged_malicious"]
  extra["detect_tpr"] = extra["detect_flagged_malicious"] / max(num_mal, 1)
  extra["detect_fpr"] = extra["detect_flagged_benign"] / max(len(real) - num_mal, 1)
  return aggregate(name, uploads, kept, num_items, convention, kw) + (extra,)


def gap_drop(scores, num_slots):
  """The clients the gap test drops (the smaller of two clusters), by brute force."""
  clients = sorted(scores)
  n = len(clients)
  if n < MIN_SCORES:
    return []
  x = np.array([scores[c] for c in clients])
  w1 = np.sum((x - x.mean()) ** 2)
  best, best_t = np.inf, None
  for t in np.unique(x)[:-1]:
    lo, hi = x[x <= t], x[x > t]
    w2 = np.sum((lo - lo.mean()) ** 2) + np.sum((hi - hi.mean()) ** 2)
    if w2 < best:
      best, best_t = w2, t
  diff, s2 = gap_reference(num_slots)
  if best_t is None or w1 <= 0 or not np.log(w1) - np.log(max(best, 1e-300)) > diff[n] + s2[n]:
    return []
  high = [c for c, v in zip(clients, x) if v > best_t]
  low = [c for c, v in zip(clients, x) if v <= best_t]
  if len(high) == len(low):
    return []
  return high if len(high) < len(low) else low


def aggregate(name, uploads, kept, num_items, convention, kw):
  """`(item_grad, touched, mlp_leaves)` of the kept clients."""
  weight = np.asarray(uploads.client_weight, np.float64)
  rows = ref.per_item(uploads, kept, num_items)
  flat, shapes = ref.mlp_matrix(uploads)
  d = np.asarray(uploads.row_grad).shape[1]
  item_grad = np.zeros((num_items, d))
  touched = np.zeros(num_items, bool)
  f = kw.get("num_byzantine", 0)
  for i, (cs, vs) in rows.items():
    if not cs:
      continue
    touched[i] = True
    if name == "bulyan":
      item_grad[i] = ref.rescale(ref.stat_trimmed(vs, f)[0], len(cs), convention)
    else:
      item_grad[i] = ref.stat_fedavg(vs, weight[cs], convention)
  if not kept:
    mlp = np.zeros(flat.shape[1])
  elif name == "bulyan":
    mlp = ref.rescale(ref.stat_trimmed(flat[kept], f)[0], len(kept), convention)
  else:
    mlp = ref.stat_fedavg(flat[kept], weight[kept], convention)
  return item_grad, touched, ref.unflatten(mlp, shapes)
