"""Shared pieces of the demo tools: the tokenizer layout, the prompt exactly as the engine builds it
(template internvl2_5 with its default system message), pixel preprocessing."""
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "work")

# Template internvl2_5 (docs/tokenizer.md §1).
SYSTEM_MESSAGE = ("你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的"
                  "多模态大语言模型。")
TEMPLATE = "internvl2_5"
SEP = "<|im_end|>\n"

# InternLM2 layout (docs/tokenizer.md §3, golden tiny_internlm2): pieces 0..8 inside the
# SentencePiece model, the InternVL additions after it.
SP_SPECIALS = ["<|plugin|>", "<|interpreter|>", "<|action_end|>", "<|action_start|>", "<|im_end|>", "<|im_start|>"]
ADDED_AFTER = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]


class Tokenizer:
    """InternLM2Tokenizer behaviour: added tokens split out first (earliest, then longest match),
    each remaining segment encoded by SentencePiece on its own, BOS prepended."""

    def __init__(self, model_file):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=model_file)
        self.n_sp = self.sp.get_piece_size()
        self.added = {}
        for i in range(3):
            self.added[self.sp.id_to_piece(i)] = i
        for t in SP_SPECIALS:
            i = self.sp.piece_to_id(t)
            assert self.sp.id_to_piece(i) == t, t
            self.added[t] = i
        for k, t in enumerate(ADDED_AFTER):
            self.added[t] = self.n_sp + k
        self.vocab_size = self.n_sp + len(ADDED_AFTER)
        self.bos, self.eos = 1, 2
        self.im_end = self.added["<|im_end|>"]
        self.im_start = self.added["<|im_start|>"]
        self.img_start = self.added["<img>"]
        self.img_end = self.added["</img>"]
        self.img_context = self.added["<IMG_CONTEXT>"]
        self._by_len = sorted(self.added, key=len, reverse=True)

    def encode(self, text, bos=True):
        ids = [self.bos] if bos else []
        pos = 0
        while pos < len(text):
            best, best_at = None, len(text)
            for t in self._by_len:  # longest first, so ties at a position go to the longest
                at = text.find(t, pos)
                if at != -1 and at < best_at:
                    best, best_at = t, at
            if best_at > pos:
                ids += self.sp.encode(text[pos:best_at])
            if best is None:
                break
            ids.append(self.added[best])
            pos = best_at + len(best)
        return ids

    def decode(self, ids):
        """Skip special tokens, decode the rest."""
        specials = set(self.added.values())
        return self.sp.decode([i for i in ids if i not in specials and i < self.n_sp])


def user_text(question, n_images, layout):
    if n_images == 0:
        return question
    if layout == "frames":
        return "".join("Frame%d: <image>\n" % (i + 1) for i in range(n_images)) + question
    assert n_images == 1
    return "<image>\n" + question


def prompt_text(question, n_images, layout, num_image_token):
    text = ("<|im_start|>system\n" + SYSTEM_MESSAGE + SEP + "<|im_start|>user\n" + user_text(question, n_images, layout)
            + SEP + "<|im_start|>assistant\n")
    block = "<img>" + "<IMG_CONTEXT>" * num_image_token + "</img>"
    return text.replace("<image>", block)


def prompt_ids(tok, question, n_images, layout, num_image_token):
    return tok.encode(prompt_text(question, n_images, layout, num_image_token))


TURN = "\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n"  # a later question of the same chat


def followup_ids(tok, answer, question):
    """The ids that end the assistant's `answer` and ask `question` next in the same chat."""
    return tok.sp.encode(answer) + [tok.im_end] + tok.encode(TURN % question, bos=False)


_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def pixel_values(images):
    """PIL RGB images (already image_size x image_size) -> [N, 3, S, S] float32 normalized: x / 255,
    minus the mean, over the std, each step in float32 (bit for bit what the engine computes)."""
    if not images:
        return torch.zeros(0, 3, 1, 1)
    u = torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images]))
    return ((u.permute(0, 3, 1, 2).float() / 255.0 - _MEAN) / _STD).contiguous()


def normalize_answer(s):
    s = s.strip()
    if s.endswith("."):
        s = s[:-1]
    return s.lower()
