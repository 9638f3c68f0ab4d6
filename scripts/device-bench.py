#!/usr/bin/env python3
"""The Python half of scripts/device-check.

  device-bench.py transformers --like SHAPE --attn sdpa|eager [-p 512] [-n 128] [--tiles 1]
      times Hugging Face transformers on random bf16 weights of the shape `iris make-random
      --like SHAPE` writes, as `iris bench` times Iris: ppP into an empty cache, tgN after it,
      one 448 tile through the vision tower and projector. Prints one JSON line.
  device-bench.py report OUT
      reads OUT/tests.xml, OUT/bench.jsonl and OUT/machine.txt and prints the summary (Markdown).

transformers has InternVL (InternVLForConditionalGeneration) but not InternLM2, whose layers are
Llama's with q, k and v in one matrix; the 8B's language model is timed as a Llama of its shapes,
which reads the same bytes and does the same products.
"""

import argparse
import json
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

# The shapes of apps/cmd-random.cpp's presets that the check times.
QWEN2_05B = dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, vocab_size=151674,
                 rms_norm_eps=1e-6)
INTERNLM2_7B = dict(model_type="llama", hidden_size=4096, intermediate_size=14336,
                    num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                    vocab_size=92553, rms_norm_eps=1e-5)
VIT_300M = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                intermediate_size=4096, attention_bias=True, use_qk_norm=False,
                norm_type="layer_norm")
VIT_6B = dict(hidden_size=3200, num_hidden_layers=45, num_attention_heads=25,
              intermediate_size=12800, attention_bias=False, use_qk_norm=True, norm_type="rms_norm")
SHAPES = {
    "internvl2_5-1b": (QWEN2_05B, VIT_300M),
    "internvl2_5-8b": (INTERNLM2_7B, VIT_300M),
    "internvit-6b": (QWEN2_05B, VIT_6B),
}
# HBM bandwidth by GPU, bytes/s: the 4.8 TB/s for the H200, the datasheet's for the H100.
HBM = {"H200": 4.8e12, "H100": 3.35e12}


def build(like, attn):
    import torch
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    text, vision = SHAPES[like]
    config = InternVLConfig(
        text_config=dict(text, max_position_embeddings=32768, tie_word_embeddings=False),
        vision_config=dict(vision, image_size=448, patch_size=14, layer_norm_eps=1e-6,
                           layer_scale_init_value=0.1, use_mean_pooling=False),
        image_token_id=text["vocab_size"] - 7, downsample_ratio=0.5, projector_hidden_act="gelu",
        vision_feature_layer=-1, vision_feature_select_strategy="default",
        tie_word_embeddings=False)
    with torch.device("cuda"):
        try:
            model = InternVLForConditionalGeneration._from_config(
                config, dtype=torch.bfloat16, attn_implementation=attn)
        except TypeError:  # transformers before 4.56 names it torch_dtype
            model = InternVLForConditionalGeneration._from_config(
                config, torch_dtype=torch.bfloat16, attn_implementation=attn)
    return model.eval(), text["vocab_size"]


def timed(fn, reps):
    import torch

    ms = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ms.append((time.perf_counter() - t) * 1e3)
    return ms


def transformers_bench(args):
    import torch
    import transformers

    result = {"source": "transformers", "like": args.like, "attn": args.attn,
              "torch": torch.__version__, "transformers": transformers.__version__,
              "device": torch.cuda.get_device_name(0), "tests": []}
    try:
        model, vocab = build(args.like, args.attn)
        decoder, head = model.model.language_model, model.lm_head
        g = torch.Generator(device="cuda").manual_seed(42)
        prompt = torch.randint(0, vocab, (1, max(args.p, 1)), device="cuda", generator=g)
        gen = torch.randint(0, vocab, (1, max(args.n, 1)), device="cuda", generator=g)

        def prefill():
            out = decoder(input_ids=prompt, use_cache=True)
            head(out.last_hidden_state[:, -1:])  # the last position's logits, as Iris does
            return out.past_key_values

        def decode(cache):
            for i in range(args.n):
                out = decoder(input_ids=gen[:, i:i + 1], past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                head(out.last_hidden_state)

        def add(name, unit, n, ms):
            med = statistics.median(ms)
            result["tests"].append({"test": name, "unit": unit, "n": n, "samples_ms": ms,
                                    "median_ms": med, "median_per_s": n * 1e3 / med,
                                    "median_ms_per_unit": med / n})

        with torch.inference_mode():
            prefill()  # warm-up: kernels chosen, memory pools grown
            if args.p > 0:
                add(f"pp{args.p}", "token", args.p, timed(prefill, args.reps))
            if args.n > 0:
                ms = []
                for _ in range(args.reps):
                    cache = prefill()
                    ms += timed(lambda: decode(cache), 1)
                name = f"tg{args.n} @ d{args.p}" if args.p > 0 else f"tg{args.n}"
                add(name, "token", args.n, ms)
            if args.tiles > 0:
                pixels = torch.randn(args.tiles, 3, 448, 448, device="cuda", dtype=torch.bfloat16,
                                     generator=g)
                encode = lambda: model.model.get_image_features(pixel_values=pixels)
                encode()
                add(f"vit448 x{args.tiles}", "tile", args.tiles, timed(encode, max(args.reps, 5)))
    except Exception as e:  # noqa: BLE001 - the figure is missing, the report says why
        result["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(result))


# --------------------------------------------------------------------------------------------
# The report


def median_rate(entry, prefix):
    for t in entry.get("tests", []):
        if t["test"].startswith(prefix):
            return t["median_per_s"], t["median_ms_per_unit"]
    return None


def llm_bytes_per_token(like, depth):
    """Bytes one decode step reads: every bf16 matrix of the language model once (one row of the
    embedding table), and the f16 K and V of `depth` positions in every layer."""
    c = SHAPES[like][0]
    h, f, layers, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    d = h // c["num_attention_heads"]
    q, kv = h, c["num_key_value_heads"] * d
    per_layer = (q + 2 * kv) * h + h * q + 3 * h * f
    return 2 * (layers * per_layer + v * h) + 2 * layers * 2 * kv * depth


def tests_summary(out):
    path = out / "tests.xml"
    if not path.exists():
        return "no tests.xml: the tests did not run", []
    root = ET.parse(path).getroot()
    cases = root.iter("testcase")
    passed, failed, skipped = [], [], []
    for c in cases:
        name = c.get("name")
        if c.find("failure") is not None or c.find("error") is not None:
            failed.append(name)
        elif c.find("skipped") is not None or c.get("status") in ("notrun", "disabled"):
            skipped.append(name)
        else:
            passed.append(name)
    total = len(passed) + len(failed) + len(skipped)
    return f"{len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped of {total}", failed


def report(out):
    out = Path(out)
    lines = ["# scripts/device-check", ""]
    machine = (out / "machine.txt").read_text() if (out / "machine.txt").exists() else ""
    gpu = next((name for name in HBM if name in machine), None)
    lines += ["```", machine.strip(), "```", ""]
    counts, failed = tests_summary(out)
    lines += [f"Tests: {counts}."]
    lines += [f"- failed: {name}" for name in failed[:40]]
    steps = (out / "steps.log").read_text() if (out / "steps.log").exists() else ""
    if "build failed" in steps:
        lines += ["", "**The build failed**: see build.log."]
    entries = []
    if (out / "bench.jsonl").exists():
        for line in (out / "bench.jsonl").read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                lines.append(f"unreadable bench line: {line[:200]}")
    lines += ["", "| shape | engine | pp512 tok/s | tg128 tok/s | ms/token | vit448 ms/tile |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    by = {}
    batched = {}
    for e in entries:
        if e["source"] == "iris-batch":
            batched[e["batch"]] = median_rate(e, "tg")
            continue
        if e["source"] == "skipped":
            lines.append(f"| {e['like']} | skipped: {e['why']} | | | | |")
            continue
        engine = "Iris" if e["source"] == "iris" else f"transformers {e['attn']}"
        if "error" in e:
            lines.append(f"| {e['like']} | {engine} | error: {e['error'][:120]} | | | |")
            continue
        pp, tg, vit = median_rate(e, "pp"), median_rate(e, "tg"), median_rate(e, "vit")
        by[(e["like"], engine)] = (pp, tg, vit)
        cell = lambda r, i, fmt: fmt.format(r[i]) if r else ""
        lines.append(f"| {e['like']} | {engine} | {cell(pp, 0, '{:.0f}')} | {cell(tg, 0, '{:.1f}')} "
                     f"| {cell(tg, 1, '{:.2f}')} | {cell(vit, 1, '{:.1f}')} |")

    lines += ["", "Targets (issue 20):", ""]

    def target(text, ok, figure):
        mark = "met" if ok else ("MISSED" if ok is not None else "not measured")
        lines.append(f"- {text}: {mark}{' (' + figure + ')' if figure else ''}")

    for like in ("internvl2_5-1b", "internvl2_5-8b"):
        mine = by.get((like, "Iris"))
        for attn in ("eager", "sdpa"):
            theirs = by.get((like, f"transformers {attn}"))
            if mine and theirs and mine[1] and theirs[1]:
                ratio = mine[1][0] / theirs[1][0]
                target(f"{like} decode >= 3x transformers {attn}", ratio >= 3, f"{ratio:.2f}x")
            else:
                target(f"{like} decode >= 3x transformers {attn}", None, "")
        if mine and mine[0]:
            best = [by[(like, f"transformers {a}")][0][0] for a in ("eager", "sdpa")
                    if by.get((like, f"transformers {a}")) and by[(like, f"transformers {a}")][0]]
            if best:
                ratio = mine[0][0] / max(best)
                target(f"{like} pp512 >= transformers", ratio >= 1, f"{ratio:.2f}x the faster")
    mine = by.get(("internvl2_5-8b", "Iris"))
    if mine and mine[1] and gpu:
        floor_ms = llm_bytes_per_token("internvl2_5-8b", 512 + 64) / HBM[gpu] * 1e3
        share = floor_ms / mine[1][1]
        target(f"internvl2_5-8b decode >= 50% of the {gpu} HBM roofline", share >= 0.5,
               f"{share:.0%}: {mine[1][1]:.2f} ms/token against {floor_ms:.2f} ms at "
               f"{HBM[gpu] / 1e12:.2f} TB/s")
    else:
        target("internvl2_5-8b decode >= 50% of the HBM roofline", None, "")
    for like, limit in (("internvl2_5-1b", 10), ("internvit-6b", 60)):
        mine = by.get((like, "Iris"))
        tower = "InternViT-300M" if like == "internvl2_5-1b" else "InternViT-6B"
        if mine and mine[2]:
            target(f"{tower} 448 tile <= {limit} ms", mine[2][1] <= limit, f"{mine[2][1]:.1f} ms")
        else:
            target(f"{tower} 448 tile <= {limit} ms", None, "")
    one, eight = batched.get(1), batched.get(8)
    if one and eight:
        ratio = eight[0] / one[0]
        target("issue 21: internvl2_5-1b, 8 sequences decoded together >= 5x one", ratio >= 5,
               f"{ratio:.2f}x: {eight[0]:.0f} against {one[0]:.0f} tokens/s")
    else:
        target("issue 21: internvl2_5-1b, 8 sequences decoded together >= 5x one", None, "")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("transformers")
    t.add_argument("--like", required=True, choices=sorted(SHAPES))
    t.add_argument("--attn", required=True, choices=["eager", "sdpa"])
    t.add_argument("-p", type=int, default=512)
    t.add_argument("-n", type=int, default=128)
    t.add_argument("--tiles", type=int, default=1)
    t.add_argument("--reps", type=int, default=3)
    r = sub.add_parser("report")
    r.add_argument("out")
    args = ap.parse_args()
    if args.command == "transformers":
        transformers_bench(args)
    else:
        report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
