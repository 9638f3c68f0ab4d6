#!/usr/bin/python3
"""Python reference answers and scores for a generated set (the model of tools/demo/model.py).

    /usr/bin/python3 tools/demo/evaluate.py --model resources/models/iris-demo --data DIR
        [--limit N] [--answers OUT.jsonl] [--json-out EVAL.json] [--prompts OUT.jsonl] [--composer N]
    (or --ckpt tools/demo/work/best.pt instead of --model)

Greedy decoding (max 64 new tokens, stop at <|im_end|>), exact match per task like `iris eval`.
--answers writes {"id", "answer"} per item (the engine's greedy answer must equal it);
--prompts writes {"id", "ids"} with the full prompt ids as the engine must build them.
--composer N also scores the turns `iris compose` asks for, apart from the tasks: N generated article
conversations (the outline, then each section after the reference outline and sections) and N web pages.
"""
import argparse
import json
import os
import sys

import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import generate  # noqa: E402
from model import InternVL  # noqa: E402


def load_model(args):
    if args.ckpt:
        state = torch.load(args.ckpt)
        cfg = state["config"]
        tok = common.Tokenizer(args.tokenizer or os.path.join(os.path.dirname(os.path.abspath(args.ckpt)),
                                                              "tokenizer.model"))
        model = InternVL(cfg, tok.img_context)
        model.load_state_dict(state["model"])
        return model, tok, state.get("step")
    import export
    with open(os.path.join(args.model, "config.json")) as f:
        conf = json.load(f)
    v, l = conf["vision_config"], conf["llm_config"]
    cfg = {"image_size": conf["force_image_size"], "patch_size": v["patch_size"],
           "downsample_ratio": conf["downsample_ratio"], "vit_hidden": v["hidden_size"],
           "vit_layers": v["num_hidden_layers"], "vit_heads": v["num_attention_heads"],
           "vit_mlp": v["intermediate_size"], "llm_hidden": l["hidden_size"], "llm_layers": l["num_hidden_layers"],
           "llm_heads": l["num_attention_heads"], "llm_kv_heads": l["num_key_value_heads"],
           "llm_mlp": l["intermediate_size"], "rope_theta": l["rope_theta"], "vocab_size": l["vocab_size"]}
    tok = common.Tokenizer(os.path.join(args.model, "tokenizer.model"))
    model = InternVL(cfg, tok.img_context)
    model.load_state_dict(export.read_safetensors(os.path.join(args.model, "model.safetensors")))
    return model, tok, None


def score_composer(model, tok, seed, n, max_new):
    """-> {turn: {"n", "correct", "accuracy"}}: greedy exact match of the whole text of each turn of n
    article conversations and n web pages generated from `seed` (indices apart from the tasks' items)."""
    per = {}
    for ci, kind in enumerate(("article", "webpage")):
        for k in range(n):
            imgs, layout, qa = generate.make_dialog(generate.example_rng(seed, (60 + ci) * 100000 + k), kind)
            ids = common.prompt_ids(tok, qa[0][1], len(imgs), layout, model.num_image_token)
            pv = common.pixel_values(imgs) if imgs else None
            for i, (turn, q, a) in enumerate(qa):
                if i:
                    ids = ids + common.followup_ids(tok, qa[i - 1][2], q)
                out = model.greedy(ids, pv, tok.im_end, max_new)
                c = per.setdefault(turn, [0, 0])
                c[0] += common.normalize_answer(tok.decode(out)) == common.normalize_answer(a)
                c[1] += 1
    return {t: {"n": n, "correct": c, "accuracy": c / n} for t, (c, n) in sorted(per.items())}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--ckpt")
    ap.add_argument("--tokenizer")
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--answers")
    ap.add_argument("--prompts")
    ap.add_argument("--json-out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--composer", type=int, default=0, help="article conversations and web pages to score")
    args = ap.parse_args()
    if not args.model and not args.ckpt:
        sys.exit("give --model DIR or --ckpt FILE")
    torch.set_num_threads(args.threads)
    model, tok, step = load_model(args)
    model.eval()
    items = [json.loads(l) for l in open(os.path.join(args.data, "data.jsonl"), encoding="utf-8") if l.strip()]
    if args.limit:
        items = items[:args.limit]
    ans_f = open(args.answers, "w", encoding="utf-8", newline="\n") if args.answers else None
    pr_f = open(args.prompts, "w", encoding="utf-8", newline="\n") if args.prompts else None
    per = {}
    for k, it in enumerate(items):
        imgs = [Image.open(os.path.join(args.data, p)).convert("RGB") for p in it["images"]]
        for im in imgs:
            assert im.size == (model.cfg["image_size"],) * 2, "images must be exactly one tile"
        ids = common.prompt_ids(tok, it["question"], len(imgs), it.get("layout", "single"), model.num_image_token)
        out = model.greedy(ids, common.pixel_values(imgs) if imgs else None, tok.im_end, args.max_new_tokens)
        text = tok.decode(out).strip()
        ok = common.normalize_answer(text) == common.normalize_answer(it["answer"])
        c = per.setdefault(it["task"], [0, 0])
        c[0] += ok
        c[1] += 1
        if ans_f:
            ans_f.write(json.dumps({"id": it["id"], "answer": text, "tokens": out}, ensure_ascii=False) + "\n")
        if pr_f:
            pr_f.write(json.dumps({"id": it["id"], "ids": ids}) + "\n")
        if (k + 1) % 50 == 0:
            print("%d/%d" % (k + 1, len(items)), file=sys.stderr, flush=True)
    rep = {"tasks": {}, "step": step}
    for t, (c, n) in sorted(per.items()):
        rep["tasks"][t] = {"n": n, "correct": c, "accuracy": c / n}
    n = sum(v[1] for v in per.values())
    c = sum(v[0] for v in per.values())
    rep["overall"] = {"n": n, "correct": c, "accuracy": c / max(1, n)}
    print("| task | items | correct | accuracy |\n| --- | ---: | ---: | ---: |")
    for t, v in rep["tasks"].items():
        print("| %s | %d | %d | %.1f%% |" % (t, v["n"], v["correct"], 100 * v["accuracy"]))
    print("| **overall** | %d | %d | %.1f%% |" % (n, c, 100 * c / max(1, n)))
    seed = None
    if items:
        try:
            seed = int(items[0]["id"].split("-")[-2])
        except ValueError:
            pass
    rep["seed"] = seed
    if args.composer:
        if seed is None:
            sys.exit("--composer needs a set made by generate.py (its ids carry the seed)")
        rep["composer"] = score_composer(model, tok, seed, args.composer, 320)
        print("\n| composer turn | items | correct | accuracy |\n| --- | ---: | ---: | ---: |")
        for t, v in rep["composer"].items():
            print("| %s | %d | %d | %.1f%% |" % (t, v["n"], v["correct"], 100 * v["accuracy"]))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rep, f, indent=2)


if __name__ == "__main__":
    main()
