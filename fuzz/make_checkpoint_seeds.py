"""Writes the checkpoint reader's seed corpus: small torch.save files of the shapes the reader
meets (a state_dict, a training checkpoint holding one, several dtypes, a view of a shared
storage, a Python object beside the tensors). Usage: python3 make_checkpoint_seeds.py DIR"""
import collections
import sys

import torch

out = sys.argv[1]
state = collections.OrderedDict(
    [("a.weight", torch.arange(6, dtype=torch.float32).reshape(2, 3)),
     ("a.bias", torch.ones(2, dtype=torch.float16)),
     ("n.num_batches_tracked", torch.tensor(3, dtype=torch.int64))])
storage = torch.arange(8, dtype=torch.float64)
seeds = {
    "state_dict.pt": state,
    "checkpoint.pt": {"model": state, "iteration": 7, "optimizer": {"lr": 1e-4}},
    "views.pt": {"x": storage[2:6], "y": storage.view(2, 4).t(), "b": torch.tensor([True, False])},
    "object.pt": {"w": torch.zeros(1, dtype=torch.bfloat16), "meta": collections.Counter("ab")},
}
for name, value in seeds.items():
    torch.save(value, f"{out}/{name}")
