#!/usr/bin/env python3
"""Records the official InternVL candidate-grid order for the C++ replay of CPython's set.

dynamic_preprocess() builds
    set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1)
        for j in range(1, n + 1) if i * j <= max_num and i * j >= min_num)
and stably sorts it by i * j, so grids of equal area keep CPython's set iteration order (it
decides find_closest_aspect_ratio ties). reasoning/image-tiling.cpp replays that order; this
script writes what CPython really does, for tests/reasoning/image_tiling_test.cpp.

Usage: python3 tools/gen_grid_orders.py [out.json]   (default tests/reasoning/data/grid_orders.json)
Needs 64-bit CPython >= 3.8 (the xxHash-based tuple hash); int and tuple hashes are not
randomised, so the output is deterministic.
"""
import json
import os
import platform
import sys


def official_order(min_num, max_num):
    target_ratios = set(
        (i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1) if
        i * j <= max_num and i * j >= min_num)
    return sorted(target_ratios, key=lambda x: x[0] * x[1])


def main():
    if platform.python_implementation() != "CPython" or sys.version_info < (3, 8) or sys.maxsize < 2**63 - 1:
        sys.exit("needs 64-bit CPython >= 3.8")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "reasoning", "data", "grid_orders.json")
    cases = [(1, m) for m in range(1, 65)]
    cases += [(2, 12), (3, 12), (4, 40), (6, 6), (5, 64), (12, 12), (7, 30)]
    lines = []
    for mn, mx in cases:
        flat = [v for pair in official_order(mn, mx) for v in pair]
        lines.append(json.dumps({"min": mn, "max": mx, "order": flat}, separators=(",", ":")))
    with open(out, "w") as f:
        f.write("{\n")
        f.write('"generator":"tools/gen_grid_orders.py",\n')
        f.write('"python":%s,\n' % json.dumps(platform.python_version()))
        f.write('"note":"order = flattened (cols, rows) pairs in the official sorted(set(...)) order",\n')
        f.write('"cases":[\n' + ",\n".join(lines) + "\n]\n}\n")
    print("wrote", out, len(cases), "cases")


if __name__ == "__main__":
    main()
