"""The NCF task: federated NCF and MF-free baselines of CL4FedRec / rCL4FedRec.

  config.py           `SimConfig`: everything that defines an NCF run
  presets.py          paper, paper-onestep, ahum-reference
  client.py           the local update of one user: mini-batch layout, client optimizers
  objective.py        the `Method` type, L_rec and Original
  methods_cl.py       CL4FedRec, rCL4FedRec, SimGCL, UNION, PoC
  methods.py          the methods by name
  regularizers.py     the popularity regularizer (Eq. 13)
  synthetic_users.py  the server's synthetic users (Eq. 3)
  centralized.py      the same NCF trained centrally: the reference row of every table
  task.py             the `Task`: gather, client update, scorer; negatives and rows
"""
