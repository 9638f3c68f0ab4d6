#!/usr/bin/python3
"""Exports a demo checkpoint as a Hugging Face InternVL folder, laid out like the real checkpoints.

    /usr/bin/python3 tools/demo/export.py [--ckpt tools/demo/work/best.pt] [--out resources/models/iris-demo]
                                         [--card-eval EVAL.json]

Writes config.json (internvl_chat: llm_config InternLM2ForCausalLM + vision_config InternVisionModel),
model.safetensors (F32, real tensor names, written by hand: u64 header length + JSON header + data,
names sorted), tokenizer.model, tokenizer_config.json, added_tokens.json, special_tokens_map.json,
generation_config.json, and MODEL_CARD.md (with the held-out accuracy from --card-eval, the JSON that
evaluate.py writes).
"""
import argparse
import json
import os
import shutil
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from model import InternVL  # noqa: E402


def write_safetensors(path, tensors, metadata=None):
    names = sorted(tensors)
    header = {}
    offset = 0
    blobs = []
    for n in names:
        t = tensors[n].detach().to(torch.float32).contiguous().cpu()
        b = t.numpy().astype("<f4").tobytes()
        header[n] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    header["__metadata__"] = metadata or {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32"
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").copy()).reshape(v["shape"])
    return out


def hf_common(name, arch, auto_map=None):
    """The PretrainedConfig fields save_pretrained writes (transformers 4.37), as in the real files."""
    d = {"_name_or_path": "", "add_cross_attention": False, "architectures": [arch]}
    if auto_map:
        d["auto_map"] = auto_map
    d.update({"bad_words_ids": None, "begin_suppress_tokens": None, "chunk_size_feed_forward": 0,
              "cross_attention_hidden_size": None, "decoder_start_token_id": None, "diversity_penalty": 0.0,
              "do_sample": False, "early_stopping": False, "encoder_no_repeat_ngram_size": 0,
              "exponential_decay_length_penalty": None, "finetuning_task": None, "forced_bos_token_id": None,
              "forced_eos_token_id": None, "id2label": {"0": "LABEL_0", "1": "LABEL_1"}, "is_decoder": False,
              "is_encoder_decoder": False, "label2id": {"LABEL_0": 0, "LABEL_1": 1}, "length_penalty": 1.0,
              "max_length": 20, "min_length": 0, "no_repeat_ngram_size": 0, "num_beam_groups": 1, "num_beams": 1,
              "num_return_sequences": 1, "output_attentions": False, "output_hidden_states": False,
              "output_scores": False, "prefix": None, "problem_type": None, "pruned_heads": {},
              "remove_invalid_values": False, "repetition_penalty": 1.0, "return_dict": True,
              "return_dict_in_generate": False, "sep_token_id": None, "suppress_tokens": None,
              "task_specific_params": None, "temperature": 1.0, "tf_legacy_loss": False,
              "tie_encoder_decoder": False, "tokenizer_class": None, "top_k": 50, "top_p": 1.0,
              "torchscript": False, "transformers_version": "4.37.2", "typical_p": 1.0, "use_bfloat16": False})
    return d


def make_config(cfg):
    llm = hf_common("internlm2", "InternLM2ForCausalLM", {
        "AutoConfig": "configuration_internlm2.InternLM2Config",
        "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
        "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"})
    llm.update({"attn_implementation": "eager", "bias": False, "bos_token_id": 1, "eos_token_id": 2,
                "pad_token_id": 2, "hidden_act": "silu", "hidden_size": cfg["llm_hidden"],
                "initializer_range": 0.02, "intermediate_size": cfg["llm_mlp"], "max_position_embeddings": 32768,
                "model_type": "internlm2", "num_attention_heads": cfg["llm_heads"],
                "num_hidden_layers": cfg["llm_layers"], "num_key_value_heads": cfg["llm_kv_heads"],
                "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 2.0, "type": "dynamic"},
                "rope_theta": cfg["rope_theta"], "tie_word_embeddings": False, "torch_dtype": "float32",
                "use_cache": True, "vocab_size": cfg["vocab_size"]})
    vis = hf_common("intern_vit_6b", "InternVisionModel")
    vis.update({"attention_dropout": 0.0, "bos_token_id": None, "drop_path_rate": 0.0, "dropout": 0.0,
                "eos_token_id": None, "hidden_act": "gelu", "hidden_size": cfg["vit_hidden"],
                "image_size": cfg["image_size"], "initializer_factor": 1.0, "initializer_range": 0.02,
                "intermediate_size": cfg["vit_mlp"], "layer_norm_eps": 1e-06, "model_type": "intern_vit_6b",
                "norm_type": "layer_norm", "num_attention_heads": cfg["vit_heads"], "num_channels": 3,
                "num_hidden_layers": cfg["vit_layers"], "pad_token_id": None, "patch_size": cfg["patch_size"],
                "qk_normalization": False, "qkv_bias": True, "tie_word_embeddings": True, "torch_dtype": None,
                "use_flash_attn": False})
    vis = dict(sorted(vis.items()))
    llm = dict(sorted(llm.items()))
    top = {"_commit_hash": None, "architectures": ["InternVLChatModel"],
           "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                        "AutoModel": "modeling_internvl_chat.InternVLChatModel",
                        "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel"},
           "downsample_ratio": cfg["downsample_ratio"], "dynamic_image_size": True,
           "force_image_size": cfg["image_size"], "hidden_size": cfg["llm_hidden"], "llm_config": llm,
           # trained on single tiles only: every image becomes one tile (no thumbnail)
           "max_dynamic_patch": 1, "min_dynamic_patch": 1, "model_type": "internvl_chat", "pad2square": False,
           "ps_version": "v2", "select_layer": -1, "template": common.TEMPLATE, "tie_word_embeddings": False,
           "torch_dtype": "float32", "transformers_version": None, "use_backbone_lora": 0, "use_llm_lora": 0,
           "use_thumbnail": True, "vision_config": vis}
    return top


def token_entry(content):
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}


def write_tokenizer(out, tok_path):
    shutil.copyfile(tok_path, os.path.join(out, "tokenizer.model"))
    tok = common.Tokenizer(tok_path)
    decoder = {}
    for i in range(3):
        decoder[str(i)] = token_entry(tok.sp.id_to_piece(i))
    for t in common.SP_SPECIALS:
        decoder[str(tok.added[t])] = token_entry(t)
    for t in common.ADDED_AFTER:
        decoder[str(tok.added[t])] = token_entry(t)
    specials = common.SP_SPECIALS + common.ADDED_AFTER
    cfg = {"added_tokens_decoder": decoder, "additional_special_tokens": specials,
           "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
           "bos_token": "<s>", "clean_up_tokenization_spaces": False, "eos_token": "</s>", "model_max_length": 8192,
           "pad_token": "</s>", "tokenizer_class": "InternLM2Tokenizer", "unk_token": "<unk>"}
    dump(os.path.join(out, "tokenizer_config.json"), cfg)
    dump(os.path.join(out, "added_tokens.json"), {t: tok.added[t] for t in sorted(common.ADDED_AFTER)})

    def tokdef(c):
        return {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    dump(os.path.join(out, "special_tokens_map.json"),
         {"additional_special_tokens": specials, "bos_token": tokdef("<s>"), "eos_token": tokdef("</s>"),
          "pad_token": tokdef("</s>"), "unk_token": tokdef("<unk>")})
    return tok


def dump(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=os.path.join(common.WORK, "best.pt"))
    ap.add_argument("--tokenizer", default=None, help="default: tokenizer.model next to the checkpoint")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(common.HERE), "..", "resources", "models",
                                                 "iris-demo"))
    ap.add_argument("--card-eval", default=None, help="JSON written by evaluate.py --json-out")
    ap.add_argument("--card-train", default=None, help="one line about the training run for the card")
    args = ap.parse_args()
    state = torch.load(args.ckpt)
    cfg = state["config"]
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    tok = write_tokenizer(out, args.tokenizer or os.path.join(os.path.dirname(os.path.abspath(args.ckpt)),
                                                                "tokenizer.model"))
    assert tok.vocab_size == cfg["vocab_size"], (tok.vocab_size, cfg["vocab_size"])
    model = InternVL(cfg, tok.img_context)
    model.load_state_dict(state["model"])
    sd = model.state_dict()
    write_safetensors(os.path.join(out, "model.safetensors"), sd)
    dump(os.path.join(out, "config.json"), make_config(cfg))
    dump(os.path.join(out, "generation_config.json"), {"_from_model_config": True, "transformers_version": "4.37.2"})
    back = read_safetensors(os.path.join(out, "model.safetensors"))
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    if args.card_eval:
        write_card(out, cfg, state, json.load(open(args.card_eval)), args.card_train)
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    print("exported %s: %d tensors, %.1f MB, step %s" % (out, len(sd), size / 1e6, state.get("step")))


def default_train_line(state):
    if "train_s" not in state:
        return ""
    return ("Trained %.1f min on the CPU: %d steps, %d generated conversations of 1-8 questions."
            % (state["train_s"] / 60, state["step"], state["seen"]))


def write_card(out, cfg, state, ev, train_line):
    nparams = sum(v.numel() for v in state["model"].values())
    rows = "\n".join("| %s | %d | %d | %.1f%% |" % (t, v["n"], v["correct"], 100 * v["accuracy"])
                     for t, v in sorted(ev["tasks"].items()))
    o = ev["overall"]
    worst = min(v["accuracy"] for v in ev["tasks"].values())
    if o["accuracy"] >= 0.9 and worst >= 0.75:
        status = "Meets the project's targets (>= 90% overall, >= 75% on every task)."
    else:
        below = ", ".join("%s %.1f%%" % (t, 100 * v["accuracy"]) for t, v in sorted(ev["tasks"].items())
                          if v["accuracy"] < 0.75)
        status = ("**Does not meet the project's targets** (>= 90%% overall and >= 75%% on every task): "
                  "%.1f%% overall; below 75%%: %s." % (100 * o["accuracy"], below))
    composer = ""
    if ev.get("composer"):
        comp = ev["composer"]
        composer = COMPOSER.format(n=comp.get("outline", {"n": 0})["n"], rows="\n".join(
            "| %s | %d | %d | %.1f%% |" % (t, v["n"], v["correct"], 100 * v["accuracy"]) for t, v in comp.items()))
    text = CARD.format(status=status, composer=composer,
        params=nparams / 1e6, mb=nparams * 4 / 1e6, cfg=cfg, step=state.get("step"),
        train_line=train_line or default_train_line(state), rows=rows, on=o["n"], oc=o["correct"], oa=100 * o["accuracy"],
        seed=ev.get("seed", "?"), count=o["n"], nit=(cfg["image_size"] // cfg["patch_size"]) ** 2 // 4)
    with open(os.path.join(out, "MODEL_CARD.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


CARD = """# iris-demo — the embedded demo model

A real InternVL (`InternVLChatModel`: InternViT + pixel shuffle v2 + `mlp1` + InternLM2) at a tiny
size, trained from scratch by `tools/demo/` on data the project generates (`tools/demo/generate.py`).
It ships so that Iris answers real questions on a fresh machine with no download. It is loaded
exactly like the downloaded checkpoints (same `config.json` layout, tensor names, tokenizer files).

## What it can and cannot do

It knows only its synthetic world, in English, and answers in a few words. It was trained on the
questions below; the held-out table says how often it answers each kind right:

* scenes of 1-6 coloured shapes (circle, square, triangle, star, diamond, hexagon; red, orange,
  yellow, green, blue, purple, pink, black) on plain or textured backgrounds: a short caption (one
  or two shapes), the colour of a shape, the shape of a colour, how many shapes (or how many of a
  kind), where a shape is on a 3x3 grid ("top left" ... "bottom right"), "Is there ...?";
* documents: the word on a sign, the title of a receipt or form, the value of a `KEY: value` line
  ("What is the total?");
* 4-frame clips (`Frame1: <image>` ... as the video prompt builds them): what appeared, what moved,
  in how many frames something was shown;
* memory prompts (timestamped captions and transcripts in the question, as Iris's memory supplies
  them): when something was seen or said, what was seen or said at a time, what came last.

For `iris compose` it also writes, in one chat, the outline of a short article about one to three
shapes (`# Title` and numbered sections), then each section with an `[[image: a red circle]]`
mark, and simple web pages (a title and a list or a table of given items) from an instruction or a
screenshot of such a page, in one fixed HTML layout.

It cannot follow other instructions, hold a conversation beyond these questions, read long or small
text, or see anything beyond one {cfg[image_size]}x{cfg[image_size]} tile per image (`max_dynamic_patch` 1): a
larger photo is shrunk to one tile. Ask it about a real photograph and it will still answer with a
colour, a shape or a number. It is a test fixture and a demonstration, not an assistant.

## Architecture ({params:.2f} M parameters, {mb:.1f} MB in F32)

| part | configuration |
| --- | --- |
| InternViT | image {cfg[image_size]}, patch {cfg[patch_size]}, hidden {cfg[vit_hidden]}, {cfg[vit_layers]} layers, {cfg[vit_heads]} heads, MLP {cfg[vit_mlp]}, LayerNorm eps 1e-6, qkv bias, ls1/ls2 |
| pixel shuffle | v2, downsample 0.5 -> {nit} visual tokens per tile |
| mlp1 | LayerNorm({cfg[vit_hidden]}*4, eps 1e-5) -> Linear -> GELU -> Linear({cfg[llm_hidden]}) |
| InternLM2 | hidden {cfg[llm_hidden]}, {cfg[llm_layers]} layers, {cfg[llm_heads]} heads / {cfg[llm_kv_heads]} KV heads, FFN {cfg[llm_mlp]}, rope_theta {cfg[rope_theta]:g}, RMSNorm eps 1e-5, untied output |
| tokenizer | SentencePiece BPE ({cfg[vocab_size]} ids incl. added tokens), InternLM2 special-token layout |
| template | `internvl2_5` with its default system message |

Weights are stored in F32 (`model.safetensors`).

## Status

{status}

## Held-out accuracy

Greedy decoding, exact match (trimmed, case-insensitive, trailing full stop ignored), measured by
`tools/demo/evaluate.py` (the Python model) on a set generated with a seed never used in training
(`generate.py --seed {seed} --count {count}`, the tasks in turn). Training step {step}. {train_line}

| task | items | correct | accuracy |
| --- | ---: | ---: | ---: |
{rows}
| **overall** | {on} | {oc} | {oa:.1f}% |

{composer}`iris eval` (the C++ engine) gives the same answers (500 of 500 for this export);
`tests/apps/demo_model_test` checks the first 200 of this set against `tools/demo/parity/`.

## Reproduce

See [tools/demo/README.md](../../../tools/demo/README.md) for the exact commands. Training is CPU
only (Debian's python3-torch, 2 threads, bf16 autocast on a CPU with AVX512-BF16), resumable from
`tools/demo/work/ckpt.pt`, and deterministic in its data stream (conversation j of the stream uses seed 1000 + j).
"""

COMPOSER = """The turns `iris compose` asks for, apart from the tasks above (`evaluate.py --composer {n}`): {n}
generated article conversations, each section asked after the reference outline and sections, and
{n} web pages (from instructions and screenshots). Exact match of the whole text.

| composer turn | items | correct | accuracy |
| --- | ---: | ---: | ---: |
{rows}

"""

if __name__ == "__main__":
    main()
