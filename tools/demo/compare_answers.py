#!/usr/bin/python3
"""Compares the Python model's greedy answers with the engine's.

    /usr/bin/python3 tools/demo/compare_answers.py PY_ANSWERS.jsonl IRIS_PREDICTIONS.jsonl

PY_ANSWERS from python_answers.py / evaluate.py --answers ({id, answer}); IRIS_PREDICTIONS from
`iris eval --predictions` ({id, predicted, correct}).  Exit status 1 on any difference.
"""
import json
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    py = {}
    for line in open(sys.argv[1], encoding="utf-8"):
        if line.strip():
            d = json.loads(line)
            py[d["id"]] = d["answer"]
    n = same = 0
    for line in open(sys.argv[2], encoding="utf-8"):
        if not line.strip():
            continue
        d = json.loads(line)
        if d["id"] not in py:
            continue
        n += 1
        if py[d["id"]].strip() == d["predicted"].strip():
            same += 1
        else:
            print("DIFF %s: python %r, engine %r" % (d["id"], py[d["id"]], d["predicted"]))
    print("%d / %d answers equal" % (same, n))
    sys.exit(0 if n and same == n else 1)


if __name__ == "__main__":
    main()
