#!/usr/bin/python3
"""CPU training of the Iris demo InternVL (resumable, wall-clock bounded).

    /usr/bin/python3 tools/demo/train.py --minutes 70 [--total-minutes 70] [--work tools/demo/work]

Examples are generated on the fly (generate.make_example; the stream is deterministic: example j of
the stream uses seed 1000 + j), the loss is on the answer tokens and the closing <|im_end|> only.
AdamW, linear warmup then cosine decay over --total-minutes of training time.  Every --save-every
minutes and at the end it writes WORK/ckpt.pt (model, optimizer, step, training time); running the
same command again resumes from it.  Every --eval-every minutes it measures greedy exact-match
accuracy per task on a fixed held-out list (seed 999) and keeps the best weights in WORK/best.pt.
To train longer, rerun with a larger --total-minutes (the schedule stretches to it).
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import generate  # noqa: E402
from model import DEFAULT_CONFIG, InternVL  # noqa: E402

# Training conversations by kind (generate.make_dialog): a scene carries ~8 questions, a document ~4,
# a clip 1-2, a memory list up to 6, an article an outline and 1-3 sections, a web page one page.
# The weights give every task a comparable number of answers.
DIALOG_WEIGHTS = {"scene": 0.25, "document": 0.31, "video": 0.20, "memory": 0.10, "article": 0.07,
                  "webpage": 0.07}
# The kinds --branch-share may train as branches (encode_branches); articles stay chats, as the
# composer asks for each section after the outline in one chat.
BRANCHED_KINDS = ("scene", "document", "video", "memory")
# Composer turns watched during training (not part of the accuracy targets): (kind, task).
COMPOSER_EVAL = [("article", "outline"), ("webpage", "webpage")]


Q_BASE = -1000  # question token x is labelled Q_BASE - x (answers keep x, -100 = no loss)


def encode_dialog(tok, nit, n_images, layout, qa):
    """-> (ids, labels): the first question is the prompt of common.prompt_ids, each later one follows
    the previous answer as in a chat.  Answers and each closing <|im_end|> are the main targets; the
    questions' own tokens are secondary targets (what a question names is mostly in the image, a dense
    extra signal for grounding)."""
    ids = common.prompt_ids(tok, qa[0][1], n_images, layout, nit)
    end = len(ids) - 1 - ids[::-1].index(tok.im_end)
    start = (len(ids) - ids[::-1].index(tok.img_end)) if n_images else (end - ids[end::-1].index(tok.im_start) + 1)
    labels = [-100] * len(ids)
    labels[start:end] = [Q_BASE - x for x in ids[start:end]]
    for k, (_, q, a) in enumerate(qa):
        if k:
            turn = tok.encode(common.TURN % q, bos=False)
            s0 = turn.index(tok.im_start) + 1
            s1 = turn.index(tok.im_end)
            labels += [-100] * s0 + [Q_BASE - x for x in turn[s0:s1]] + [-100] * (len(turn) - s1)
            ids += turn
        ans = tok.sp.encode(a) + [tok.im_end]
        ids += ans
        labels += ans
    return ids, labels


def encode_branches(tok, nit, n_images, layout, qa):
    """-> (ids, labels, positions, segments): every question asked on its own about the same images.
    The single-question prompts share their tokens up to where the questions differ (system message,
    images); that prefix is encoded once (segment 0) and each question with its answer follows as a
    branch (segment k + 1) that sees only the prefix and itself, at the positions it would have alone.
    So each answer is learnt exactly as `iris ask` asks it, and none can be read off an earlier answer
    or question of the same conversation (in a chat, "Where is the red star?" gives away "Is there a
    red star?"), while the images and the prefix go through the model once."""
    prompts = [common.prompt_ids(tok, q, n_images, layout, nit) for _, q, _ in qa]
    n = min(len(p) for p in prompts)
    shared = next((i for i in range(n) if len({p[i] for p in prompts}) > 1), n)
    first = prompts[0]
    end = len(first) - 1 - first[::-1].index(tok.im_end)
    start = (len(first) - first[::-1].index(tok.img_end)) if n_images else (end - first[end::-1].index(tok.im_start) + 1)
    ids = first[:shared]
    labels = [-100] * min(start, shared) + [Q_BASE - x for x in ids[start:]]
    positions, segments = list(range(shared)), [0] * shared
    for k, ((_, _, a), p) in enumerate(zip(qa, prompts)):
        end = len(p) - 1 - p[::-1].index(tok.im_end)
        tail = p[shared:]
        lab = [Q_BASE - x if shared + i < end else -100 for i, x in enumerate(tail)]
        if k and lab:
            lab[0] = -100  # a branch's first token does not follow the previous branch
        ans = tok.sp.encode(a) + [tok.im_end]
        ids += tail + ans
        labels += lab + ans
        positions += list(range(shared, len(p) + len(ans)))
        segments += [k + 1] * (len(tail) + len(ans))
    return ids, labels, positions, segments


def stream_dialog(tok, nit, j, weights, max_turns, branch_share=0.0):
    """Conversation j of the training stream (deterministic: seed 1000 + j).  With branch_share 0 the
    stream draws nothing more than it did before branches existed."""
    rng = random.Random(1000 + j)
    kinds = list(weights)
    kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
    branched = branch_share > 0 and kind in BRANCHED_KINDS and rng.random() < branch_share
    imgs, layout, qa = generate.make_dialog(rng, kind)
    if branched:
        if kind == "memory":  # a chat carries the list in its first question only; a branch needs it too
            head = qa[0][1][:qa[0][1].index("Question: ") + len("Question: ")]
            qa = [qa[0]] + [(t, head + q, a) for t, q, a in qa[1:]]
        return (imgs,) + encode_branches(tok, nit, len(imgs), layout, qa[:max_turns])
    ids, labels = encode_dialog(tok, nit, len(imgs), layout, qa[:max_turns])
    return imgs, ids, labels, list(range(len(ids))), [0] * len(ids)


def make_batch(examples, grid):
    T = max(len(e[1]) for e in examples)
    ids = torch.full((len(examples), T), 2, dtype=torch.long)
    labels = torch.full((len(examples), T), -100, dtype=torch.long)
    pos = torch.zeros((len(examples), T), dtype=torch.long)
    seg = torch.zeros((len(examples), T), dtype=torch.long)
    imgs = []
    for b, (im, seq, lab, p, sg) in enumerate(examples):
        ids[b, :len(seq)] = torch.tensor(seq)
        # position t predicts token t+1
        labels[b, :len(seq) - 1] = torch.tensor(lab[1:])
        pos[b, :len(seq)] = torch.tensor(p)
        seg[b, :len(seq)] = torch.tensor(sg)
        imgs += im
    targets = torch.stack([token_targets(im, grid) for im in imgs]) if imgs else None
    return ids, labels, pos, seg, common.pixel_values(imgs), targets


def hidden_branched(model, emb, pos, seg):
    """model.hidden() for encode_branches' layout: RoPE at the given positions, and a token sees the
    earlier tokens of its own segment and of segment 0 (padding is last and never seen)."""
    d = model.cfg["llm_hidden"] // model.cfg["llm_heads"]
    inv_freq = 1.0 / (model.cfg["rope_theta"] ** (torch.arange(0, d, 2).float() / d))
    freqs = pos[..., None].float() * inv_freq
    angles = torch.cat((freqs, freqs), dim=-1)[:, None, None]  # [B, 1, 1, T, d] like q [B, kv, g, T, d]
    cos, sin = angles.cos(), angles.sin()
    t = emb.shape[1]
    idx = torch.arange(t)
    seen = (idx[None, :] <= idx[:, None]) & ((seg[:, :, None] == seg[:, None, :]) | (seg[:, None, :] == 0))
    mask = torch.zeros(seen.shape).masked_fill(~seen, float("-inf"))[:, None, None]
    x = emb
    for layer in model.language_model.model.layers:
        x = layer(x, cos, sin, mask)
    return model.language_model.model.norm(x)


OCR_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:"


def ocr_slots(grid):
    """Characters per visual token, in reading order: a 56-pixel square (4 x 4 tokens) holds at most
    ~8, a 28-pixel one (8 x 8, patch 14) ~3."""
    return 10 if grid <= 4 else 4


def token_targets(img, grid, min_cover=0.12):
    """Auxiliary targets of an image's visual tokens (row-major grid x grid, the pixel-shuffle order), -100
    where a target does not apply: [colour, shape] of the object covering most of each token's square (0 =
    none), from a scene's object map; then ocr_slots(grid) characters (1 + index in OCR_CHARS, 0 after the last)
    whose centres fall in the square, from a document's character map.  These dense signals teach the vision
    tower colours, shapes and letters far sooner than the answers alone; the heads that read them are not
    part of the exported model."""
    slots = ocr_slots(grid)
    t = torch.full((grid * grid, 2 + slots), -100, dtype=torch.long)
    cell = generate.IMAGE_SIZE // grid
    if "chars" in img.info:
        t[:, 2:] = 0
        fill = [0] * (grid * grid)
        for ch, x, y in img.info["chars"]:
            k = min(grid - 1, max(0, int(y // cell))) * grid + min(grid - 1, max(0, int(x // cell)))
            if fill[k] < slots:
                t[k, 2 + fill[k]] = 1 + OCR_CHARS.index(ch)
                fill[k] += 1
    if "objects" not in img.info:
        return t
    which, objs = img.info["objects"]
    a = torch.from_numpy(np.asarray(which, dtype=np.int64))
    for k in range(grid * grid):
        r, c = divmod(k, grid)
        counts = torch.bincount(a[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell].reshape(-1),
                                minlength=len(objs) + 1)
        counts[0] = 0
        best = int(counts.argmax())
        if counts[best] < min_cover * cell * cell:
            t[k, :2] = 0
        else:
            color, shape = objs[best - 1]
            t[k, :2] = torch.tensor([1 + generate.COLOR_NAMES.index(color), 1 + generate.SHAPES.index(shape)])
    return t


QUESTION_WEIGHT = 0.3


N_AUX = 1 + len(generate.COLOR_NAMES) + 1 + len(generate.SHAPES)
AUX_WEIGHT = 0.5
N_OCR = 1 + len(OCR_CHARS)


def native_bf16():
    """Whether the CPU computes in bf16 natively (AVX512-BF16 or AMX): there bf16 autocast runs about
    4x faster than f32; elsewhere (AVX2) PyTorch emulates it and a step takes 15x longer than in f32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def loss_fn(model, aux, ids, labels, pos, seg, pix, targets, bf16):
    """-> (summed answer loss, summed question loss, mean auxiliary token loss or 0)."""
    aux_loss = torch.zeros(())
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        emb = model.language_model.model.tok_embeddings(ids)
        if pix.shape[0]:
            vis = model.extract_feature(pix)
            sel = ids == model.img_context_id
            emb = emb.clone()
            emb[sel] = vis.reshape(-1, emb.shape[-1]).to(emb.dtype)
            logit = aux(vis).float()
            nc = 1 + len(generate.COLOR_NAMES)
            tc, ts = targets[..., 0].reshape(-1), targets[..., 1].reshape(-1)
            if (tc != -100).any():
                aux_loss = (F.cross_entropy(logit[..., :nc].reshape(-1, nc), tc)
                            + F.cross_entropy(logit[..., nc:N_AUX].reshape(-1, N_AUX - nc), ts))
            to = targets[..., 2:].reshape(-1)
            if (to != -100).any():
                aux_loss = aux_loss + F.cross_entropy(logit[..., N_AUX:].reshape(-1, N_OCR), to)
        h = hidden_branched(model, emb, pos, seg)
        sel = labels != -100
        logits = model.logits(h[sel])
    lab = labels[sel]
    ans = lab >= 0
    target = torch.where(ans, lab, Q_BASE - lab)
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    return ce[ans].sum(), ce[~ans].sum(), aux_loss


def train_step(model, aux, exs, bf16, group=16):
    """Forward+backward in groups of similar length (little padding), under bf16 autocast when bf16.
    Returns the mean loss over all answer tokens."""
    exs = sorted(exs, key=lambda e: len(e[1]))
    n_ans = sum(sum(1 for x in e[2] if x >= 0) for e in exs)
    n_q = max(1, sum(sum(1 for x in e[2] if x <= Q_BASE) for e in exs))
    grid = math.isqrt(model.num_image_token)
    total = 0.0
    for i in range(0, len(exs), group):
        chunk = exs[i:i + group]
        ids, labels, pos, seg, pix, targets = make_batch(chunk, grid)
        a, q, x = loss_fn(model, aux, ids, labels, pos, seg, pix, targets, bf16)
        ((a / n_ans) + QUESTION_WEIGHT * (q / n_q) + AUX_WEIGHT * x * len(chunk) / len(exs)).backward()
        total += float(a) / n_ans
    return total


def heldout(n_per_task, seed=999):
    items = []
    for ti, task in enumerate(generate.TASKS):
        for k in range(n_per_task):
            rng = generate.example_rng(seed, ti * 100000 + k)
            items.append((task,) + generate.make_example(rng, task))
    for ci, (kind, task) in enumerate(COMPOSER_EVAL):
        for k in range(n_per_task):
            imgs, layout, qa = generate.make_dialog(generate.example_rng(seed, (50 + ci) * 100000 + k), kind)
            items.append((task, imgs, layout, qa[0][1], qa[0][2]))
    return items


def evaluate(model, tok, items, max_new=24):
    """-> (overall accuracy on generate.TASKS, accuracy per task, composer turns included)."""
    model.eval()
    per = {}
    nit = model.num_image_token
    for task, imgs, layout, q, a in items:
        p = common.prompt_ids(tok, q, len(imgs), layout, nit)
        limit = max_new if task in generate.TASKS else 256
        out = model.greedy(p, common.pixel_values(imgs) if imgs else None, tok.im_end, limit)
        ok = common.normalize_answer(tok.decode(out)) == common.normalize_answer(a)
        c = per.setdefault(task, [0, 0])
        c[0] += ok
        c[1] += 1
    model.train()
    acc = {t: c[0] / c[1] for t, c in per.items()}
    scored = [c for t, c in per.items() if t in generate.TASKS]
    overall = sum(c[0] for c in scored) / sum(c[1] for c in scored)
    return overall, acc


def lr_at(frac, step, base, warmup, floor=0.05):
    w = min(1.0, (step + 1) / warmup)
    frac = min(1.0, max(0.0, frac))
    return base * w * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=common.WORK)
    ap.add_argument("--minutes", type=float, default=70, help="wall-clock budget of this run")
    ap.add_argument("--total-minutes", type=float, default=None, help="training time the schedule spans")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["auto", "bf16", "f32"], default="auto",
                    help="autocast to bf16, or not; auto: bf16 where the CPU has AVX512-BF16 or AMX")
    ap.add_argument("--max-turns", type=int, default=8, help="questions per training conversation")
    ap.add_argument("--branch-share", type=float, default=0.0,
                    help="share of scene, document, clip and memory conversations trained as branches")
    ap.add_argument("--weights", default=None, help="JSON overrides of DIALOG_WEIGHTS")
    ap.add_argument("--eval-every", type=float, default=10, help="minutes")
    ap.add_argument("--eval-per-task", type=int, default=20)
    ap.add_argument("--save-every", type=float, default=5, help="minutes")
    ap.add_argument("--config", default=None, help="JSON overrides of model.DEFAULT_CONFIG (new runs only)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and native_bf16())
    t_start = time.time()
    budget = args.minutes * 60
    os.makedirs(args.work, exist_ok=True)
    tok_path = os.path.join(args.work, "tokenizer.model")
    if not os.path.exists(tok_path):
        sys.exit("no %s: run tools/demo/tokenizer.py first" % tok_path)
    tok = common.Tokenizer(tok_path)
    ckpt_path = os.path.join(args.work, "ckpt.pt")
    state = None
    if os.path.exists(ckpt_path):
        state = torch.load(ckpt_path)
        cfg = state["config"]
        print("resuming from %s: step %d, %.1f min trained" % (ckpt_path, state["step"], state["train_s"] / 60),
              flush=True)
    else:
        cfg = dict(DEFAULT_CONFIG)
        if args.config:
            cfg.update(json.loads(args.config))
        cfg["vocab_size"] = tok.vocab_size
    torch.manual_seed(0)
    model = InternVL(cfg, tok.img_context)
    aux = torch.nn.Linear(cfg["llm_hidden"], N_AUX + ocr_slots(math.isqrt(model.num_image_token)) * N_OCR)
    opt = torch.optim.AdamW(list(model.parameters()) + list(aux.parameters()), lr=args.lr, betas=(0.9, 0.98),
                            weight_decay=0.05)
    step, train_s, seen, best = 0, 0.0, 0, -1.0
    total_minutes = args.total_minutes or args.minutes
    if state:
        model.load_state_dict(state["model"])
        aux.load_state_dict(state["aux"])
        opt.load_state_dict(state["opt"])
        step, train_s, seen, best = state["step"], state["train_s"], state["seen"], state.get("best", -1.0)
        if args.total_minutes is None:
            total_minutes = state.get("total_minutes", total_minutes)
    nparams = sum(p.numel() for p in model.parameters())
    print("config %s\nparams %.2fM (%.1f MB f32), image tokens %d, total schedule %.0f min, %s compute" % (
        json.dumps(cfg), nparams / 1e6, nparams * 4 / 1e6, model.num_image_token, total_minutes,
        "bf16" if bf16 else "f32"), flush=True)
    nit = model.num_image_token
    items = heldout(args.eval_per_task)
    weights = dict(DIALOG_WEIGHTS, **json.loads(args.weights or "{}"))
    if set(weights) != set(DIALOG_WEIGHTS):
        sys.exit("--weights: the kinds are " + ", ".join(DIALOG_WEIGHTS))

    def save(path, extra=None):
        d = {"config": cfg, "model": model.state_dict(), "aux": aux.state_dict(), "opt": opt.state_dict(), "step": step, "train_s": train_s,
             "seen": seen, "best": best, "total_minutes": total_minutes}
        if extra:
            d.update(extra)
        tmp = path + ".tmp"
        torch.save(d, tmp)
        os.replace(tmp, path)

    def run_eval():
        nonlocal best
        t0 = time.time()
        overall, acc = evaluate(model, tok, items)
        line = " ".join("%s=%.2f" % (t, acc[t]) for t in generate.TASKS + [t for _, t in COMPOSER_EVAL])
        print("EVAL step %d overall %.3f | %s (%.0fs)" % (step, overall, line, time.time() - t0), flush=True)
        if overall > best:
            best = overall
            torch.save({"config": cfg, "model": model.state_dict(), "step": step, "eval": acc, "overall": overall},
                       os.path.join(args.work, "best.pt"))
        return overall

    last_save = last_eval = time.time()
    loss_avg, t_log, n_log = None, time.time(), 0
    model.train()
    while True:
        now = time.time()
        if now - t_start > budget - 30:
            break
        if now - last_eval > args.eval_every * 60:
            run_eval()
            last_eval = time.time()
        t0 = time.time()
        for g in opt.param_groups:
            g["lr"] = lr_at(train_s / (total_minutes * 60), step, args.lr, args.warmup)
        exs = [stream_dialog(tok, nit, seen + i, weights, args.max_turns, args.branch_share)
               for i in range(args.batch)]
        opt.zero_grad(set_to_none=True)
        loss = train_step(model, aux, exs, bf16)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen += args.batch
        train_s += time.time() - t0
        n_log += args.batch
        loss_avg = float(loss) if loss_avg is None else 0.95 * loss_avg + 0.05 * float(loss)
        if step % 20 == 0:
            el = time.time() - t_start
            print("step %d loss %.4f lr %.2e ex/s %.1f trained %.1f/%.0f min, run left %.1f min" % (
                step, loss_avg, opt.param_groups[0]["lr"], n_log / (time.time() - t_log), train_s / 60,
                total_minutes, (budget - el) / 60), flush=True)
            t_log, n_log = time.time(), 0
        if time.time() - last_save > args.save_every * 60:
            save(ckpt_path)
            last_save = time.time()
    save(ckpt_path)
    run_eval()
    save(ckpt_path)
    print("done: step %d, %d examples, %.1f min trained, best held-out %.3f" % (step, seen, train_s / 60, best),
          flush=True)


if __name__ == "__main__":
    main()
