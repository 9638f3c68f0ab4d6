#!/usr/bin/python3
"""Trains the demo SentencePiece BPE tokenizer on generated text (InternLM2 layout).

    /usr/bin/python3 tools/demo/tokenizer.py [--out tools/demo/work/tokenizer.model] [--vocab 1000]

Pieces: 0 <unk>, 1 <s>, 2 </s>, 3..8 <|plugin|> <|interpreter|> <|action_end|> <|action_start|>
<|im_end|> <|im_start|> (user-defined, as the tiny_internlm2 golden), then "\\n" (user-defined),
the 256 byte pieces and the BPE pieces.  <img> </img> <IMG_CONTEXT> <quad> </quad> <ref> </ref>
<box> </box> are added tokens with ids right after the model (tokenizer_config.json).
Normalizer identity, no dummy prefix, no whitespace folding, split_digits, byte_fallback.
"""
import argparse
import io
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import generate  # noqa: E402


def corpus(n=4000, seed=12345):
    lines = []
    for i in range(n):
        task = generate.TASKS[i % len(generate.TASKS)]
        rng = random.Random(seed * 7 + i)
        # text only: render with the real generator (images are cheap enough at this count)
        _, layout, q, a = generate.make_example(rng, task)
        lines += q.split("\n") + [a]
    for i in range(600):  # composer conversations: outlines, sections, HTML
        rng = random.Random(seed * 11 + i)
        _, _, qa = generate.make_dialog(rng, "article" if i % 2 else "webpage")
        for _, q, a in qa:
            lines += q.split("\n") + a.split("\n")
    for i in range(400):
        lines += [common.SYSTEM_MESSAGE, "system", "user", "assistant", "Frame%d: " % (1 + i % 8),
                  "Image-%d: " % (1 + i % 4)]
    lines += generate.corpus_texts() * 20
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(common.WORK, "tokenizer.model"))
    ap.add_argument("--vocab", type=int, default=1400)
    args = ap.parse_args()
    import sentencepiece as spm
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    text = corpus()
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text), model_writer=buf, model_type="bpe", vocab_size=args.vocab,
        character_coverage=1.0, byte_fallback=True, split_digits=True, add_dummy_prefix=False,
        remove_extra_whitespaces=False, normalization_rule_name="identity", split_by_whitespace=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
        user_defined_symbols=common.SP_SPECIALS + ["\n"], num_threads=1, shuffle_input_sentence=False,
        max_sentence_length=4096, minloglevel=2)
    with open(args.out, "wb") as f:
        f.write(buf.getvalue())
    tok = common.Tokenizer(args.out)
    print("pieces", tok.n_sp, "vocab", tok.vocab_size, file=sys.stderr)
    for s in ["<|im_start|>system\n" + common.SYSTEM_MESSAGE + "<|im_end|>\n", "What is the total?",
              "Memory:\n[09:12] caption: a red car"]:
        ids = tok.encode(s)
        print(len(ids), [tok.sp.id_to_piece(i) if i < tok.n_sp else i for i in ids], file=sys.stderr)


if __name__ == "__main__":
    main()
