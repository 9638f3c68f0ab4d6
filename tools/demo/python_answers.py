#!/usr/bin/python3
"""Writes the Python model's greedy answers for a generated set, for the C++ agreement test.

    /usr/bin/python3 tools/demo/python_answers.py --model resources/models/iris-demo --data DIR \\
        --out answers.jsonl [--limit 200] [--prompts prompts.jsonl]

One line per item: {"id", "answer", "tokens"} (answer = decoded greedy output, stripped; tokens =
the generated ids before <|im_end|>).  `iris eval --predictions` must give the same "predicted"
text for every id.  --prompts also writes {"id", "ids"}: the full prompt ids the engine must build.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    argv = ["--answers" if a == "--out" else a for a in argv]
    sys.argv = [sys.argv[0]] + argv
    evaluate.main()
