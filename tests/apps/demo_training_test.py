#!/usr/bin/python3
"""tools/demo/train.py's branched conversations: each question of a conversation trained as a branch
must get exactly the logits it gets when asked alone, as `iris ask` asks it (a randomly initialised
tiny model, the shipped tokenizer)."""
import os
import random
import sys
import unittest

import torch

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SOURCE, "tools", "demo"))
import common  # noqa: E402
import generate  # noqa: E402
import train  # noqa: E402
from model import DEFAULT_CONFIG, InternVL  # noqa: E402

TOKENIZER = os.path.join(SOURCE, "resources", "models", "iris-demo", "tokenizer.model")


class Branches(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(1)
        cls.tok = common.Tokenizer(TOKENIZER)
        cls.model = InternVL(dict(DEFAULT_CONFIG, vocab_size=cls.tok.vocab_size), cls.tok.img_context).eval()

    def check_kind(self, kind, seed):
        tok, model = self.tok, self.model
        nit = model.num_image_token
        imgs, layout, qa = generate.make_dialog(random.Random(seed), kind)
        if kind == "memory":  # as stream_dialog does: every branch carries the list
            head = qa[0][1][:qa[0][1].index("Question: ") + len("Question: ")]
            qa = [qa[0]] + [(t, head + q, a) for t, q, a in qa[1:]]
        qa = qa[:8]
        self.assertGreater(len(qa), 1, kind)
        ex = (imgs,) + train.encode_branches(tok, nit, len(imgs), layout, qa)
        ids, labels, pos, seg, pix, _ = train.make_batch([ex], int(nit ** 0.5))
        pix = pix if imgs else None
        with torch.no_grad():
            packed = model.logits(train.hidden_branched(model, model.embed(ids, pix), pos, seg))[0]
        for k, (_, q, a) in enumerate(qa):
            alone = common.prompt_ids(tok, q, len(imgs), layout, nit) + tok.sp.encode(a) + [tok.im_end]
            where = (seg[0] == k + 1).nonzero().flatten()
            start = len(alone) - len(where)
            self.assertEqual(ids[0, where].tolist(), alone[start:], "%s branch %d" % (kind, k))
            with torch.no_grad():
                ref = model.logits(model.hidden(model.embed(torch.tensor([alone]), pix)))[0, start:]
            torch.testing.assert_close(packed[where], ref, rtol=0, atol=1e-4)
            # the answer and its <|im_end|> are targets, predicted from the position before each
            answer = labels[0, where[-len(tok.sp.encode(a)) - 2:-1]].tolist()
            self.assertEqual(answer, tok.sp.encode(a) + [tok.im_end], "%s branch %d" % (kind, k))

    def test_each_scene_question_sees_what_it_would_see_alone(self):
        self.check_kind("scene", 7)

    def test_each_document_question_sees_what_it_would_see_alone(self):
        self.check_kind("document", 11)

    def test_each_clip_question_sees_what_it_would_see_alone(self):
        for seed in range(40):  # a clip with two questions
            if len(generate.make_dialog(random.Random(seed), "video")[2]) > 1:
                return self.check_kind("video", seed)
        self.fail("no clip with two questions")

    def test_each_memory_question_sees_the_whole_list(self):
        self.check_kind("memory", 3)


if __name__ == "__main__":
    unittest.main()
