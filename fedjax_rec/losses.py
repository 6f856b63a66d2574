"""Client objectives. Every reduction is masked and divided by the mask's count."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fedjax_rec.types import Array


def masked_mean(x: Array, mask: Array) -> Array:
  # `where`, not a product: padded positions may hold anything, NaN included.
  total = jnp.sum(jnp.where(mask, x, 0.0))
  return total / jnp.maximum(jnp.sum(mask).astype(x.dtype), 1.0)


def weighted_mean(x: Array, weight: Array, mask: Array) -> Array:
  """Σ w·x / Σ w over the real entries."""
  w = jnp.where(mask, weight, 0.0)
  return jnp.sum(jnp.where(mask, x, 0.0) * w) / jnp.maximum(jnp.sum(w), 1e-12)


def bce_with_logits(logits: Array, labels: Array, weight: Array, mask: Array) -> Array:
  """Eq. 1, averaged over the real samples (a row of weight w counts w times)."""
  return weighted_mean(optax.sigmoid_binary_cross_entropy(logits, labels), weight, mask)


# ---- contrastive pieces (CL4FedRec §4.1, SimGCL, UNION, Eq. 11) -------------------------

_EPS = 1e-8
_MASKED_LOGIT = -1e9  # finite: a fully masked row stays finite (and so do its gradients)


def normalize(x: Array, eps: float = _EPS) -> Array:
  """L2-normalises the last axis; zero vectors stay zero.

  `rsqrt(max(‖x‖², eps²))` instead of `x / max(‖x‖, eps)`: the gradient of `‖x‖`
  at 0 is NaN, and a masked (zeroed) row must not produce one.
  """
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def cosine_similarity(a: Array, b: Array) -> Array:
  """Cosine similarity of `a [..., d]` and `b [..., d]` (broadcasting); returns `[...]`."""
  return jnp.sum(normalize(a) * normalize(b), axis=-1)


def sign_aligned_noise(key: Array, x: Array, eta: float) -> Array:
  """The noise of Eq. 5 (SimGCL): `ε = η · normalize(ε̄ ⊙ sign(x))`, `ε̄ ~ U(0, 1)^d`.

  Applied row-wise to `x [..., d]`. ‖ε‖₂ = η wherever x ≠ 0, and ε has the sign of x
  on every coordinate (zero where x is zero). A constant: sign(x) has zero gradient.

  Args:
    key: PRNG key.
    x: [..., d] embeddings (a user embedding, or item rows).
    eta: the noise norm η.

  Returns:
    [..., d] noise.
  """
  eps_bar = jax.random.uniform(key, x.shape, dtype=x.dtype)
  return jax.lax.stop_gradient(eta * normalize(eps_bar * jnp.sign(x)))


def two_views(key: Array, x: Array, eta: float) -> tuple[Array, Array]:
  """Eq. 5: two views `x + ε'`, `x + ε''` with independent `sign_aligned_noise`.

  One draw of shape `[2, ..., d]` (cheaper to compile than two).
  """
  eps = sign_aligned_noise(key, jnp.broadcast_to(x, (2,) + x.shape), eta)
  return x + eps[0], x + eps[1]


def info_nce(pos_logit: Array, neg_logits: Array, neg_mask: Array | None = None) -> Array:
  """`−log(exp(p) / (exp(p) + Σ_j exp(n_j)))` for logits already divided by τ.

  Args:
    pos_logit: [...] the positive pair's logit.
    neg_logits: [..., K] the negatives' logits.
    neg_mask: optional [..., K] bool; masked negatives are left out of the sum.

  Returns:
    [...] losses.
  """
  if neg_mask is not None:
    neg_logits = jnp.where(neg_mask, neg_logits, _MASKED_LOGIT)
  all_logits = jnp.concatenate([pos_logit[..., None], neg_logits], axis=-1)
  return jax.nn.logsumexp(all_logits, axis=-1) - pos_logit


def user_contrastive_loss(u: Array, u1: Array, u2: Array, negatives: Array,
                          tau: float) -> Array:
  """`L_uc` of Eq. 6 for one user.

  Args:
    u: [d] the user embedding (the anchor against the negatives).
    u1: [d] first augmented view `u'`.
    u2: [d] second augmented view `u''`.
    negatives: [S, d] synthetic users (frozen here: stop_gradient).
    tau: temperature τ.

  Returns:
    Scalar `−log(e^{sim(u',u'')/τ} / (e^{sim(u',u'')/τ} + Σ_j e^{sim(u,s_j)/τ}))`.
  """
  negatives = jax.lax.stop_gradient(negatives)
  pos = cosine_similarity(u1, u2) / tau
  neg = cosine_similarity(u[None, :], negatives) / tau
  return info_nce(pos, neg)


def item_contrastive_loss(v1: Array, v2: Array, mask: Array, tau: float,
                          reduction: str = "mean") -> Array:
  """`L_ic` of Eq. 9 over one client's positive items, averaged or summed over them.

  For each real row k: `−log(e^{sim(v'_k, v''_k)/τ} / Σ_{real j} e^{sim(v'_k, v''_j)/τ})`.
  The paper sums over k (`reduction="sum"`, beside `L_rec` summed as in Eq. 1); the
  mean makes `λ2` weigh a term on the scale of a mean `L_rec` whatever the client's
  size. Masked rows appear in neither the numerator nor the denominator, whatever they
  hold (NaN included).

  Args:
    v1: [P, d] first item view `V'`.
    v2: [P, d] second item view `V''`.
    mask: [P] bool, real rows.
    tau: temperature τ.
    reduction: "mean" or "sum" over the real rows (static).

  Returns:
    Scalar loss (0 for a client with no real rows).
  """
  v1 = jnp.where(mask[:, None], v1, 0.0)
  v2 = jnp.where(mask[:, None], v2, 0.0)
  sim = normalize(v1) @ normalize(v2).T / tau  # [P, P]
  logits = jnp.where(mask[None, :], sim, _MASKED_LOGIT)
  per_row = jax.nn.logsumexp(logits, axis=-1) - jnp.diagonal(sim)
  if reduction == "sum":
    return jnp.sum(jnp.where(mask, per_row, 0.0))
  return masked_mean(per_row, mask)


def union_loss(anchor: Array, positive: Array, negatives: Array, mask: Array) -> Array:
  """UNION's client term: softmax cross-entropy of dot-product logits, 1 positive.

  Args:
    anchor: [P, d] a client's positive items.
    positive: [P, d] for each, another positive of the same client.
    negatives: [P, K, d] for each, K non-interacted items.
    mask: [P] bool, rows that count.

  Returns:
    Scalar, the mean over the real rows.
  """
  anchor = jnp.where(mask[:, None], anchor, 0.0)
  positive = jnp.where(mask[:, None], positive, 0.0)
  negatives = jnp.where(mask[:, None, None], negatives, 0.0)
  pos = jnp.sum(anchor * positive, axis=-1)
  neg = jnp.einsum("pd,pkd->pk", anchor, negatives)
  return masked_mean(info_nce(pos, neg), mask)


def masked_l_uni(x: Array, mask: Array, eps: float = _EPS) -> Array:
  """`geometry.l_uni` (Eq. 11) over the real rows of `x` only.

  Equals `geometry.l_uni(x[mask])` without the dynamic shape: means, variances and
  the correlation matrix are divided by the number of real rows.

  Args:
    x: [n, d] rows (padded rows may hold anything).
    mask: [n] bool, real rows.
    eps: added to the column variances.

  Returns:
    Scalar L_uni.
  """
  d = x.shape[-1]
  m = mask[:, None]
  n = jnp.maximum(jnp.sum(mask).astype(x.dtype), 1.0)
  x = jnp.where(m, x, 0.0)
  centered = jnp.where(m, x - jnp.sum(x, axis=0, keepdims=True) / n, 0.0)
  z = centered / jnp.sqrt(jnp.sum(centered ** 2, axis=0, keepdims=True) / n + eps)
  corr = z.T @ z / n
  sq = jnp.sum(corr ** 2)
  # Double `where`: sqrt has an infinite slope at 0 (a client with one real row).
  return jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0) / d
