"""Recommender models: init + apply pure functions.

`ncf` is the static recommender (CL4FedRec); `encoders` builds the sequential ones
(`sasrec`, `gru4rec`) used by `fedjax_rec.tasks.sequential`.
"""

from fedjax_rec.models.encoders import ENCODERS, EncoderConfig, make_encoder

__all__ = ["ENCODERS", "EncoderConfig", "make_encoder"]
