#!/usr/bin/python3
"""What the vision tower sees: linear probes on the visual tokens (the output of mlp1).

    /usr/bin/python3 tools/demo/probe.py (--model DIR | --ckpt FILE | --init)
    /usr/bin/python3 tools/demo/probe.py --train-vision MINUTES [--target slots|quad]

A probe is a logistic regression fitted on the frozen visual tokens of generated documents and scenes
(its own images, apart from every training and held-out seed) and scored on others:
  digits  among the tokens of a document that hold a digit, how well the probe tells which digit
          (AUC, mean over 0-9; 0.5 is chance): what "What is the total?" needs;
  letters the same for letters;
  colour  accuracy of the colour of the object covering a scene token (chance 1/9);
  shape   the same for its shape (chance 1/8).
--init probes a freshly initialised model (the floor).  --train-vision trains the vision tower, mlp1 and
train.py's auxiliary character head alone on documents for MINUTES (no language model: a batch of 32
pages costs ~0.5 s instead of a whole conversation) and probes it every 4 minutes: it tells how fast
the tower can learn to read with that head's targets (slots: train.py's, up to 10 characters per
56-pixel token in reading order; quad: up to 3 per 28-pixel patch, four patches per token).
"""
import argparse
import functools
import os
import random
import sys
import time
import types

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import evaluate  # noqa: E402
import generate  # noqa: E402
import train  # noqa: E402
from model import DEFAULT_CONFIG, InternVL  # noqa: E402

PROBE_SEED = 7_000_000  # documents and scenes of the probes; training pages of --train-vision use 0..


def document(seed):
    """A receipt or form page, as a key_value question draws it."""
    return generate.document_example(random.Random(seed), "key_value")[0][0]


def scene(seed):
    rng = random.Random(seed)
    return generate.render_scene(rng, generate.random_objects(rng, rng.randint(1, 6)))


@functools.lru_cache(maxsize=None)
def probe_images(kind, n):
    """The probes' own pages or scenes, drawn once however often a run probes."""
    if kind == "documents":
        return [document(PROBE_SEED + i) for i in range(n)]
    return [scene(PROBE_SEED + 500_000 + i) for i in range(n)]


def features(model, images):
    model.eval()
    with torch.no_grad():
        return torch.cat([model.extract_feature(common.pixel_values(images[i:i + 100]))
                          for i in range(0, len(images), 100)])


def fit(x, y, multilabel, iters=400):
    """Logistic regression on standardised features -> the fitted head and the standardisation."""
    mu, sd = x.mean(0), x.std(0) + 1e-5
    lin = torch.nn.Linear(x.shape[1], y.shape[1] if multilabel else int(y.max()) + 1)
    opt = torch.optim.Adam(lin.parameters(), lr=3e-3)
    loss = F.binary_cross_entropy_with_logits if multilabel else F.cross_entropy
    for _ in range(iters):
        opt.zero_grad()
        loss(lin((x - mu) / sd), y).backward()
        opt.step()
    return lambda z: lin((z - mu) / sd).detach()


def auc(score, label):
    pos, neg = score[label > 0.5], score[label < 0.5]
    if not len(pos) or not len(neg):
        return float("nan")
    rank = torch.cat([pos, neg]).argsort().argsort().float()
    return float((rank[:len(pos)].sum() - len(pos) * (len(pos) - 1) / 2) / (len(pos) * len(neg)))


def probe_documents(model, n_train, n_test):
    pages = probe_images("documents", n_train + n_test)
    x = features(model, pages)
    chars = torch.stack([train.token_targets(p, 4)[:, 2:] for p in pages])  # [N, 16, slots], 0 = none
    y = torch.stack([(chars == k + 1).any(-1) for k in range(len(train.OCR_CHARS))], -1).float()
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    cut = n_train * 16
    head = fit(x[:cut], y[:cut], multilabel=True)
    s, y = head(x[cut:]), y[cut:]

    def mean_auc(group):
        cols = [train.OCR_CHARS.index(c) for c in group]
        held = y[:, cols].sum(-1) > 0
        vals = [a for a in (auc(s[held, c], y[held, c]) for c in cols) if a == a]
        return sum(vals) / len(vals)
    return {"digits": mean_auc("0123456789"), "letters": mean_auc("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}


def probe_scenes(model, n_train, n_test):
    images = probe_images("scenes", n_train + n_test)
    x = features(model, images).reshape(-1, model.cfg["llm_hidden"])
    t = torch.stack([train.token_targets(im, 4)[:, :2] for im in images]).reshape(-1, 2)
    covered = t[:, 0] > 0
    cut = int(covered[:n_train * 16].sum())
    x, t = x[covered], t[covered] - 1
    out = {}
    for name, col in (("colour", 0), ("shape", 1)):
        head = fit(x[:cut], t[:cut, col], multilabel=False)
        out[name] = float((head(x[cut:]).argmax(-1) == t[cut:, col]).float().mean())
    return out


def report(model, tag):
    r = dict(probe_documents(model, 1000, 300), **probe_scenes(model, 600, 200))
    print("%s digits AUC %.3f | letters AUC %.3f | colour %.3f | shape %.3f" % (
        tag, r["digits"], r["letters"], r["colour"], r["shape"]), flush=True)


def aux_targets(page, target):
    if target == "slots":
        return train.token_targets(page, 4)[:, 2:]  # [16, 10]
    t = train.token_targets(page, 8)[:, 2:5]  # [64 patches, 3] -> [16 tokens, 4 patches x 3]
    return t.view(4, 2, 4, 2, 3).permute(0, 2, 1, 3, 4).reshape(16, 12)


def train_vision(model, minutes, target, batch=32):
    slots = 10 if target == "slots" else 12
    head = torch.nn.Linear(model.cfg["llm_hidden"], slots * train.N_OCR)
    params = list(model.vision_model.parameters()) + list(model.mlp1.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.98), weight_decay=0.05)
    t0, last, step = time.time(), time.time(), 0
    report(model, "pages 0:")
    while time.time() - t0 < minutes * 60:
        model.train()
        pages = [document(step * batch + i) for i in range(batch)]
        t = torch.stack([aux_targets(p, target) for p in pages])
        for g in opt.param_groups:
            g["lr"] = 1e-3 * min(1.0, (step + 1) / 50)
        logits = head(model.extract_feature(common.pixel_values(pages)))
        loss = F.cross_entropy(logits.reshape(-1, train.N_OCR), t.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if time.time() - last > 240:
            last = time.time()
            report(model, "pages %d (%.0f min, loss %.3f):" % (step * batch, (last - t0) / 60, float(loss)))
    report(model, "pages %d (end):" % (step * batch))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--ckpt")
    ap.add_argument("--init", action="store_true")
    ap.add_argument("--train-vision", type=float, metavar="MINUTES")
    ap.add_argument("--target", choices=["slots", "quad"], default="slots")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model or args.ckpt:
        path = os.path.join(args.model, "config.json") if args.model else args.ckpt
        if not os.path.isfile(path):
            ap.error("no such file: " + path)
        model, _, _ = evaluate.load_model(types.SimpleNamespace(model=args.model, ckpt=args.ckpt, tokenizer=None))
        report(model, args.model or args.ckpt)
        return
    if not (args.init or args.train_vision):
        ap.error("one of --model, --ckpt, --init, --train-vision")
    # the shipped tokenizer: only the vocabulary size and <IMG_CONTEXT> matter to the vision tower
    tok = common.Tokenizer(os.path.join(common.HERE, "..", "..", "resources", "models", "iris-demo",
                                        "tokenizer.model"))
    cfg = dict(DEFAULT_CONFIG, vocab_size=tok.vocab_size)
    torch.manual_seed(0)
    model = InternVL(cfg, tok.img_context)
    if args.train_vision:
        train_vision(model, args.train_vision, args.target)
    else:
        report(model, "initial weights")


if __name__ == "__main__":
    main()
