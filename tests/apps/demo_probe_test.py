#!/usr/bin/python3
"""tools/demo/probe.py: its linear probes read what a trained vision tower has learnt. On the shipped
model's visual tokens they find the colour and shape under a scene token far above what they find in a
freshly initialised tower's, so a probe result of chance level means the tower has not learnt it."""
import os
import sys
import types
import unittest

import torch

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SOURCE, "tools", "demo"))
import evaluate  # noqa: E402
import probe  # noqa: E402
from model import DEFAULT_CONFIG, InternVL  # noqa: E402

SHIPPED = os.path.join(SOURCE, "resources", "models", "iris-demo")


class Probes(unittest.TestCase):
    def test_the_shipped_tower_shows_colours_and_shapes_a_fresh_one_does_not(self):
        torch.set_num_threads(2)
        shipped, tok, _ = evaluate.load_model(types.SimpleNamespace(model=SHIPPED, ckpt=None, tokenizer=None))
        torch.manual_seed(0)
        fresh = InternVL(dict(DEFAULT_CONFIG, vocab_size=tok.vocab_size), tok.img_context)
        learnt, floor = probe.probe_scenes(shipped, 200, 100), probe.probe_scenes(fresh, 200, 100)
        self.assertGreater(learnt["colour"], 0.9)
        self.assertGreater(learnt["shape"], 0.7)
        self.assertLess(floor["shape"], 0.4)
        self.assertGreater(learnt["shape"] - floor["shape"], 0.4)
        letters = probe.probe_documents(shipped, 200, 100)["letters"]
        self.assertGreater(letters, probe.probe_documents(fresh, 200, 100)["letters"] + 0.05)


if __name__ == "__main__":
    unittest.main()
