"""Each augmentation operator keeps the invariants it must keep."""

from __future__ import annotations

from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rec.tasks.sequential import augment as aug

L, MASK_ID, DRAWS = 12, 99, 64


def _cases():
  """`(n [N], ids [N, L], mask [N, L])`: every real length 0..L; distinct real ids."""
  n = np.arange(L + 1)
  mask = np.arange(L)[None, :] >= L - n[:, None]
  ids = np.where(mask, (np.arange(L)[None, :] - (L - n[:, None]) + 1) * 3, 0).astype(np.int32)
  return n, ids, mask


def _run(fn):
  """Every case under DRAWS keys, in ONE compiled call: `[N, DRAWS, L]` ids and masks."""
  n, ids, mask = _cases()
  keys = jax.random.split(jax.random.key(0), DRAWS)
  per_case = jax.vmap(fn, in_axes=(0, None, None))
  out_ids, out_mask = jax.jit(jax.vmap(per_case, in_axes=(None, 0, 0)))(keys, ids, mask)
  return zip(n, ids, mask, np.asarray(out_ids), np.asarray(out_mask))


def _left_padded(mask_row):
  n = mask_row.sum()
  return np.array_equal(mask_row, np.arange(len(mask_row)) >= len(mask_row) - n)


def test_crop_keeps_a_contiguous_block_of_the_right_length():
  for n, ids, mask, out_ids, out_mask in _run(lambda k, i, m: aug.crop(k, i, m, 0.6)):
    want = 0 if n == 0 else max(1, int(np.floor(0.6 * n)))
    real = list(ids[mask])
    for oi, om in zip(out_ids, out_mask):
      assert om.sum() == want and _left_padded(om)
      block = list(oi[om])
      assert any(real[s:s + want] == block for s in range(n - want + 1)) or want == 0
      assert np.all(oi[~om] == 0)


def test_mask_replaces_real_items_by_the_mask_token_only():
  for n, ids_np, mask_np, out_ids, out_mask in _run(
      lambda k, i, m: aug.mask_items(k, i, m, 0.3, MASK_ID)):
    for oi, om in zip(out_ids, out_mask):
      assert np.array_equal(om, mask_np)
      assert np.all((oi == ids_np) | ((oi == MASK_ID) & mask_np))
      assert np.all(oi[~mask_np] == ids_np[~mask_np])
    if n == L:  # about 30% masked over all draws
      assert 0.15 < np.mean(out_ids[:, mask_np] == MASK_ID) < 0.45


def test_reorder_preserves_the_multiset_and_moves_one_block():
  changed_any = False
  for n, ids_np, mask_np, out_ids, out_mask in _run(lambda k, i, m: aug.reorder(k, i, m, 0.5)):
    r = int(np.floor(0.5 * n))
    for oi, om in zip(out_ids, out_mask):
      assert np.array_equal(om, mask_np)
      assert Counter(oi.tolist()) == Counter(ids_np.tolist())
      moved = np.flatnonzero(oi != ids_np)
      if moved.size:
        changed_any = True
        assert moved.max() - moved.min() < r and mask_np[moved].all()
  assert changed_any


def test_augment_and_split_adjacent():
  for n, _, mask, _, out_mask in _run(lambda k, i, m: aug.augment(k, i, m, mask_id=MASK_ID)):
    assert all(_left_padded(om) and min(n, 1) <= om.sum() <= n for om in out_mask)
    older_end, newer = aug.split_adjacent(jnp.asarray(mask))
    newer = np.asarray(newer)
    assert newer.sum() == n - n // 2 and _left_padded(newer)
    if n >= 2:
      assert int(older_end) == L - newer.sum() - 1 and mask[int(older_end)]
