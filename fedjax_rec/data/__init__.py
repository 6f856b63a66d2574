"""Data: raw formats -> interactions -> split -> padded client tensors."""
