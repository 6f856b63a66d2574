"""Embedding geometry: L_uni (Eq. 11), singular spectrum, alignment/uniformity, hot items.

Pure `jnp` functions of embedding tables, usable inside jit (L_uni is also a loss term)
and as host-side diagnostics (docs/design.md, CL4FedRec Figs. 3-4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_EPS = 1e-8


def _normalize_rows(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def l_uni(item_emb: jax.Array, eps: float = _EPS) -> jax.Array:
  """L_uni of Eq. 11 (CL4FedRec): (1/d) ‖corr((V − V̄) / sqrt(var(V)))‖_F.

  Columns are standardised (population variance, plus `eps` so that a zero-variance
  column gives zero correlations instead of NaN) and C = Zᵀ Z / n is their d x d
  correlation matrix. Independent columns give ≈ 1/sqrt(d); identical columns give 1.

  Args:
    item_emb: [n, d] item embedding table V.
    eps: added to the column variances.

  Returns:
    Scalar L_uni.
  """
  n, d = item_emb.shape
  centered = item_emb - item_emb.mean(axis=0, keepdims=True)
  z = centered / jnp.sqrt(jnp.mean(centered ** 2, axis=0, keepdims=True) + eps)
  corr = z.T @ z / n
  return jnp.linalg.norm(corr) / d


def singular_values(item_emb: jax.Array, normalize: bool = False) -> jax.Array:
  """Singular values of V sorted descending (CL4FedRec Fig. 4b).

  Args:
    item_emb: [n, d] embedding table.
    normalize: divide by the largest singular value.

  Returns:
    [min(n, d)] singular values.
  """
  s = jnp.sort(jnp.linalg.svd(item_emb, compute_uv=False))[::-1]
  if normalize:
    s = s / jnp.maximum(s[0], _EPS)
  return s


def alignment(x: jax.Array, y: jax.Array, alpha: float = 2.0) -> jax.Array:
  """Alignment (Wang & Isola, 2020): mean_i ‖x̂_i − ŷ_i‖₂^α over L2-normalised rows.

  Args:
    x: [n, d] embeddings.
    y: [n, d] embeddings of the positive partners of `x`.
    alpha: the exponent α.

  Returns:
    Scalar alignment loss (lower is more aligned).
  """
  diff = _normalize_rows(x) - _normalize_rows(y)
  return jnp.mean(jnp.linalg.norm(diff, axis=-1) ** alpha)


def uniformity(x: jax.Array, t: float = 2.0, max_points: int = 4096,
               key: jax.Array | None = None) -> jax.Array:
  """Uniformity (Wang & Isola, 2020): log mean_{i<j} exp(−t ‖x̂_i − x̂_j‖²).

  Uses the full pairwise matrix, so for more than `max_points` rows it is computed on a
  subset: a random one (without replacement) when `key` is given, else the first rows.

  Args:
    x: [n, d] embeddings, n >= 2.
    t: temperature.
    max_points: largest number of rows used.
    key: optional PRNG key choosing the subset.

  Returns:
    Scalar uniformity loss (lower is more uniform).
  """
  n = x.shape[0]
  if n > max_points:
    if key is None:
      x = x[:max_points]
    else:
      x = x[jax.random.permutation(key, n)[:max_points]]
    n = max_points
  z = _normalize_rows(x)
  # ‖a − b‖² = 2 − 2 a·b for unit vectors.
  sq_dist = jnp.maximum(2.0 - 2.0 * z @ z.T, 0.0)
  upper = jnp.triu(jnp.ones((n, n), bool), k=1)
  logits = jnp.where(upper, -t * sq_dist, -jnp.inf)
  return jax.nn.logsumexp(logits) - jnp.log(n * (n - 1) / 2.0)


def hot_item_dispersion(item_emb: jax.Array, hot_ids: jax.Array) -> dict[str, jax.Array]:
  """How scattered the hot items' embeddings are (CL4FedRec Fig. 3, §4.2.2).

  Args:
    item_emb: [num_items, d] item embedding table.
    hot_ids: [h] ids of the hot items (e.g. the 100 most popular), h >= 2.

  Returns:
    `{"mean_cosine_distance": mean_{i<j} (1 − cos(v_i, v_j)),
      "mean_centroid_distance": mean_i ‖v̂_i − mean_j v̂_j‖₂}`, both over the
    L2-normalised hot-item embeddings v̂.
  """
  z = _normalize_rows(item_emb[hot_ids])
  h = z.shape[0]
  cos = z @ z.T
  upper = jnp.triu(jnp.ones((h, h), bool), k=1)
  mean_cos_dist = jnp.sum(jnp.where(upper, 1.0 - cos, 0.0)) / (h * (h - 1) / 2.0)
  centroid = z.mean(axis=0, keepdims=True)
  return {"mean_cosine_distance": mean_cos_dist,
          "mean_centroid_distance": jnp.mean(jnp.linalg.norm(z - centroid, axis=-1))}
