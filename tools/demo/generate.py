#!/usr/bin/python3
"""Deterministic generator of the Iris demo data: images with questions and answers.

    /usr/bin/python3 tools/demo/generate.py --seed S --count N --out DIR [--tasks caption,color,...]

writes DIR/images/*.png and DIR/data.jsonl, one JSON object per line:
    {"id", "task", "images": [relative png paths], "layout": "single"|"frames",
     "question", "answer"}
The question never contains an <image> placeholder: the engine puts "<image>\\n" (single) or
"Frame1: <image>\\nFrame2: <image>\\n..." (frames) in front of it, as the official chat() and
video prompt do.  Memory questions carry the remembered lines (with timestamps) in the question.

The same seed gives byte-identical output.  train.py uses make_example() directly (examples are
generated on the fly, images never touch the disk there).
"""
import argparse
import json
import math
import os
import random
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_SIZE = 224
N_FRAMES = 4
FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONT_FILES = ["DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif.ttf",
              "DejaVuSansMono-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSansCondensed-Bold.ttf"]

TASKS = ["caption", "color", "shape", "count", "position", "yesno", "read_text", "key_value", "video",
         "memory"]

COLORS = {
    "red": (220, 30, 30), "orange": (245, 140, 0), "yellow": (240, 215, 0), "green": (30, 160, 50),
    "blue": (30, 70, 220), "purple": (130, 40, 170), "pink": (250, 120, 190), "black": (20, 20, 20),
}
COLOR_NAMES = list(COLORS)
SHAPES = ["circle", "square", "triangle", "star", "diamond", "hexagon"]
# 3x3 grid of cells for positions (row, col) -> name
POS_NAMES = [["top left", "top", "top right"], ["left", "center", "right"],
             ["bottom left", "bottom", "bottom right"]]
SIZES = {"small": 22, "medium": 30, "large": 38}  # radius in pixels

SIGN_WORDS = ["OPEN", "CLOSED", "EXIT", "STOP", "SALE", "PUSH", "PULL", "PARKING", "HOTEL", "CAFE",
              "PHARMACY", "BAKERY", "TAXI", "POLICE", "WELCOME", "DANGER", "NO ENTRY", "TOILETS",
              "BUS STOP", "LIBRARY", "MUSEUM", "PIZZA", "BANK", "GARDEN"]
DOC_TITLES = {"receipt": ["RECEIPT", "INVOICE", "BILL"], "form": ["FORM", "PERMIT", "TICKET"]}
RECEIPT_KEYS = ["ITEM", "TAX", "TIP", "FEE", "TOTAL", "CASH", "CHANGE"]
FORM_KEYS = {"NAME": ["ANNA", "BEN", "CARLA", "DAVID", "EMMA", "FELIX", "GRACE", "HUGO", "IRIS", "JACK",
                      "KIM", "LEO", "MIA", "NOAH", "OLGA", "PAUL", "ROSA", "SAM", "TOM", "ZOE"],
             "CITY": ["PARIS", "ROME", "OSLO", "LIMA", "CAIRO", "TOKYO", "DELHI", "BERLIN", "MADRID",
                      "VIENNA", "DUBLIN", "LONDON"],
             "AGE": None, "ROOM": None, "SEAT": None,
             "COLOR": ["RED", "BLUE", "GREEN", "BLACK", "WHITE", "PINK"]}

MEM_OBJECTS = ["car", "dog", "cat", "cup", "book", "phone", "bag", "bike", "lamp", "box", "hat", "ball"]
MEM_PHRASES = ["buy milk", "call mom", "feed the cat", "meeting at noon", "water the plants",
               "pay the rent", "book a table", "charge the phone", "take the keys", "send the report",
               "pick up the kids", "lock the door", "bring an umbrella", "order pizza", "walk the dog",
               "clean the kitchen"]

PAPER = [(250, 250, 245), (245, 240, 225), (235, 235, 235), (255, 255, 255), (240, 245, 255)]
INK = [(10, 10, 10), (30, 30, 90), (60, 20, 20), (20, 60, 30)]
SIGN_BG = [((200, 30, 30), (255, 255, 255)), ((20, 90, 180), (255, 255, 255)), ((30, 130, 60), (255, 255, 255)),
           ((250, 210, 0), (0, 0, 0)), ((255, 255, 255), (0, 0, 0)), ((20, 20, 20), (255, 255, 255))]

_font_cache = {}


def font(name, size):
    key = (name, size)
    if key not in _font_cache:
        _font_cache[key] = ImageFont.truetype(os.path.join(FONT_DIR, name), size)
    return _font_cache[key]


# ----------------------------------------------------------------------------- scenes

def background(rng):
    """A plain or lightly textured pale background."""
    base = tuple(rng.randint(200, 255) for _ in range(3))
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), base)
    kind = rng.choice(["plain", "plain", "stripes", "checker", "noise", "gradient"])
    d = ImageDraw.Draw(img)
    if kind == "stripes":
        other = tuple(max(0, c - rng.randint(15, 35)) for c in base)
        w = rng.randint(6, 20)
        vertical = rng.random() < 0.5
        for k in range(0, IMAGE_SIZE, 2 * w):
            d.rectangle([k, 0, k + w - 1, IMAGE_SIZE] if vertical else [0, k, IMAGE_SIZE, k + w - 1], fill=other)
    elif kind == "checker":
        other = tuple(max(0, c - rng.randint(15, 35)) for c in base)
        w = rng.randint(12, 32)
        for y in range(0, IMAGE_SIZE, w):
            for x in range(0, IMAGE_SIZE, w):
                if ((x // w) + (y // w)) % 2:
                    d.rectangle([x, y, x + w - 1, y + w - 1], fill=other)
    elif kind == "noise":
        nrng = np.random.RandomState(rng.getrandbits(32))
        arr = np.asarray(img, dtype=np.int16) + nrng.randint(-25, 26, size=(IMAGE_SIZE, IMAGE_SIZE, 1))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    elif kind == "gradient":
        other = np.array([rng.randint(180, 255) for _ in range(3)], dtype=np.float32)
        t = np.linspace(0, 1, IMAGE_SIZE, dtype=np.float32)[:, None, None]
        arr = (1 - t) * np.array(base, dtype=np.float32) + t * other
        arr = np.broadcast_to(arr, (IMAGE_SIZE, IMAGE_SIZE, 3))
        img = Image.fromarray(np.round(arr).astype(np.uint8))
    return img


def star_points(cx, cy, r, n=5):
    pts = []
    for k in range(2 * n):
        rr = r if k % 2 == 0 else r * 0.45
        a = -math.pi / 2 + k * math.pi / n
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def draw_shape(d, shape, color, cx, cy, r, fill=None):
    fill = COLORS[color] if fill is None else fill
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.85
        d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx + r * 0.95, cy + r * 0.75), (cx - r * 0.95, cy + r * 0.75)], fill=fill)
    elif shape == "star":
        d.polygon(star_points(cx, cy, r * 1.1), fill=fill)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)], fill=fill)
    elif shape == "hexagon":
        d.polygon([(cx + r * math.cos(math.pi / 3 * k), cy + r * math.sin(math.pi / 3 * k)) for k in range(6)],
                  fill=fill)


def cell_center(rng, cell):
    row, col = cell
    step = IMAGE_SIZE / 3
    jit = 10
    return (step * (col + 0.5) + rng.uniform(-jit, jit), step * (row + 0.5) + rng.uniform(-jit, jit))


def random_objects(rng, n, unique_pairs=True):
    """n objects, each a dict(color, shape, size, cell); cells distinct; (color, shape) pairs distinct."""
    cells = rng.sample([(r, c) for r in range(3) for c in range(3)], n)
    objs, seen = [], set()
    for cell in cells:
        while True:
            col, shp = rng.choice(COLOR_NAMES), rng.choice(SHAPES)
            if not unique_pairs or (col, shp) not in seen:
                break
        seen.add((col, shp))
        objs.append({"color": col, "shape": shp, "size": rng.choice(list(SIZES)), "cell": cell})
    return objs


def render_scene(rng, objs, bg=None):
    """The scene; img.info["objects"] is an "L" map of which object (1-based index into objs, 0 none)
    covers each pixel, for train.py's auxiliary per-token loss."""
    img = bg.copy() if bg is not None else background(rng)
    d = ImageDraw.Draw(img)
    which = Image.new("L", img.size, 0)
    dw = ImageDraw.Draw(which)
    for i, o in enumerate(objs):
        if "xy" not in o:
            o["xy"] = cell_center(rng, o["cell"])
        cx, cy = o["xy"]
        r = SIZES[o["size"]] + rng.uniform(-2, 2)
        draw_shape(d, o["shape"], o["color"], cx, cy, r)
        draw_shape(dw, o["shape"], o["color"], cx, cy, r, fill=i + 1)
    img.info["objects"] = (which, [(o["color"], o["shape"]) for o in objs])
    return img


def art(color, shape):
    """'a red circle' / 'an orange star'."""
    return ("an %s %s" if color[0] in "aeiou" else "a %s %s") % (color, shape)


def reading_order(objs):
    return sorted(objs, key=lambda o: (o["cell"][0], o["cell"][1]))


def kind_count_objects(rng, n):
    """n objects of which k (0..n) are of one shape, the others of other shapes -> (objs, shape, k)."""
    shp = rng.choice(SHAPES)
    k = rng.randint(0, n)
    objs = random_objects(rng, n, unique_pairs=False)
    others = [s for s in SHAPES if s != shp]
    for i, o in enumerate(objs):
        o["shape"] = shp if i < k else rng.choice(others)
    rng.shuffle(objs)
    return objs, shp, k


def scene_example(rng, task):
    if task == "caption":
        n = rng.choice([1, 1, 2])
        objs = random_objects(rng, n)
        img = render_scene(rng, objs)
        names = [art(o["color"], o["shape"]) for o in reading_order(objs)]
        q = rng.choice(["Describe the image briefly.", "What is in the image?", "Give a short caption."])
        return [img], q, " and ".join(names)
    if task == "count":
        n = rng.randint(1, 6)
        if rng.random() < 0.5:
            objs = random_objects(rng, n)
            return [render_scene(rng, objs)], "How many shapes are there?", str(n)
        objs, shp, k = kind_count_objects(rng, n)
        return [render_scene(rng, objs)], "How many %ss are there?" % shp, str(k)
    n = rng.randint(1, 5)
    objs = random_objects(rng, n)
    if task == "color":
        # ask about a shape that is unique in the scene
        counts = {}
        for o in objs:
            counts[o["shape"]] = counts.get(o["shape"], 0) + 1
        cands = [o for o in objs if counts[o["shape"]] == 1]
        o = rng.choice(cands) if cands else objs[0]
        if not cands:
            objs = [o]
        return [render_scene(rng, objs)], "What color is the %s?" % o["shape"], o["color"]
    if task == "shape":
        counts = {}
        for o in objs:
            counts[o["color"]] = counts.get(o["color"], 0) + 1
        cands = [o for o in objs if counts[o["color"]] == 1]
        o = rng.choice(cands) if cands else objs[0]
        if not cands:
            objs = [o]
        return [render_scene(rng, objs)], "What shape is the %s object?" % o["color"], o["shape"]
    if task == "position":
        o = rng.choice(objs)
        r, c = o["cell"]
        return [render_scene(rng, objs)], "Where is the %s %s?" % (o["color"], o["shape"]), POS_NAMES[r][c]
    if task == "yesno":
        present = {(o["color"], o["shape"]) for o in objs}
        if rng.random() < 0.5:
            col, shp = rng.choice(sorted(present))
            ans = "yes"
        else:
            # a near miss half of the time: right colour or right shape
            while True:
                col, shp = rng.choice(COLOR_NAMES), rng.choice(SHAPES)
                if rng.random() < 0.5:
                    base = rng.choice(objs)
                    if rng.random() < 0.5:
                        col = base["color"]
                    else:
                        shp = base["shape"]
                if (col, shp) not in present:
                    break
            ans = "no"
        return [render_scene(rng, objs)], "Is there %s?" % art(col, shp), ans
    raise ValueError(task)


# ----------------------------------------------------------------------------- documents

def text_chars(d, x, y, text, f):
    """Centres of the characters of `text` drawn at (x, y): [(char, cx, cy)], spaces left out."""
    top, bottom = f.getbbox(text)[1::2]
    return [(ch, x + d.textlength(text[:i], font=f) + d.textlength(ch, font=f) / 2, y + (top + bottom) / 2)
            for i, ch in enumerate(text) if ch != " "]


def finish_document(rng, img, bg, chars):
    """Rotates and noises a page; img.info["chars"] gets where each character ended up (training targets)."""
    angle = rng.uniform(-3, 3)
    img = img.rotate(angle, resample=Image.BILINEAR, fillcolor=bg)
    a, c = math.radians(angle), IMAGE_SIZE / 2  # PIL turns counter-clockwise about the centre
    chars = [(ch, c + (x - c) * math.cos(a) + (y - c) * math.sin(a), c - (x - c) * math.sin(a) + (y - c) * math.cos(a))
             for ch, x, y in chars]
    nrng = np.random.RandomState(rng.getrandbits(32))
    amp = rng.choice([0, 6, 12])
    if amp:
        arr = np.asarray(img, dtype=np.int16) + nrng.randint(-amp, amp + 1, size=(IMAGE_SIZE, IMAGE_SIZE, 1))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    img.info["chars"] = chars
    return img


def draw_lines(rng, lines, title=None):
    bg = rng.choice(PAPER)
    ink = rng.choice(INK)
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), bg)
    d = ImageDraw.Draw(img)
    fname = rng.choice(FONT_FILES)
    size = rng.choice([22, 24, 26])
    f = font(fname, size)
    rows = ([title] if title else []) + lines
    step = size + rng.randint(8, 14)
    y = (IMAGE_SIZE - step * len(rows)) // 2 + rng.randint(-6, 6)
    x0 = rng.randint(10, 24)
    chars = []
    for i, text in enumerate(rows):
        if title and i == 0:
            tf = font(fname, size + 4)
            w = d.textlength(text, font=tf)
            d.text(((IMAGE_SIZE - w) / 2, y - 4), text, font=tf, fill=ink)
            chars += text_chars(d, (IMAGE_SIZE - w) / 2, y - 4, text, tf)
            d.line([x0, y + step - 6, IMAGE_SIZE - x0, y + step - 6], fill=ink, width=1)
        else:
            d.text((x0, y), text, font=f, fill=ink)
            chars += text_chars(d, x0, y, text, f)
        y += step
    return finish_document(rng, img, bg, chars)


def form_value(rng, key):
    vals = FORM_KEYS[key]
    if vals is None:
        return str(rng.randint(1, 99) if key != "ROOM" else rng.randint(100, 999))
    return rng.choice(vals)


def document_fields(rng, kind):
    n = rng.randint(2, 3)
    if kind == "receipt":
        keys = rng.sample(RECEIPT_KEYS, n)
        return [(k, str(rng.randint(1, 99) if rng.random() < 0.6 else rng.randint(100, 999))) for k in keys]
    keys = rng.sample(list(FORM_KEYS), n)
    return [(k, form_value(rng, k)) for k in keys]


def render_sign(rng, word):
    bgc, fg = rng.choice(SIGN_BG)
    img = background(rng)
    d = ImageDraw.Draw(img)
    fname = rng.choice(FONT_FILES)
    size = rng.choice([28, 32, 36]) if len(word) <= 7 else 24
    f = font(fname, size)
    w = d.textlength(word, font=f)
    while w > IMAGE_SIZE - 36:
        size -= 2
        f = font(fname, size)
        w = d.textlength(word, font=f)
    bw, bh = w + 24, size + 28
    x = (IMAGE_SIZE - bw) / 2 + rng.uniform(-10, 10)
    y = (IMAGE_SIZE - bh) / 2 + rng.uniform(-30, 30)
    d.rectangle([x, y, x + bw, y + bh], fill=bgc, outline=(60, 60, 60), width=2)
    d.text((x + 12, y + 10), word, font=f, fill=fg)
    return finish_document(rng, img, img.getpixel((0, 0)), text_chars(d, x + 12, y + 10, word, f))


def document_example(rng, task):
    if task == "read_text":
        if rng.random() < 0.6:
            word = rng.choice(SIGN_WORDS)
            return [render_sign(rng, word)], rng.choice(["What does the sign say?", "Read the text in the image."]), word
        kind = rng.choice(["receipt", "form"])
        title = rng.choice(DOC_TITLES[kind])
        return [draw_lines(rng, ["%s: %s" % kv for kv in document_fields(rng, kind)], title)], \
            "What is the title of the document?", title
    if task == "key_value":
        kind = rng.choice(["receipt", "form"])
        fields = document_fields(rng, kind)
        title = rng.choice(DOC_TITLES[kind]) if rng.random() < 0.5 else None
        img = draw_lines(rng, ["%s: %s" % kv for kv in fields], title)
        k, v = rng.choice(fields)
        return [img], "What is the %s?" % k.lower(), v
    if task == "caption":
        kind = rng.choice(["receipt", "form", "sign"])
        if kind == "sign":
            img = render_sign(rng, rng.choice(SIGN_WORDS))
        else:
            img = draw_lines(rng, ["%s: %s" % kv for kv in document_fields(rng, kind)], rng.choice(DOC_TITLES[kind]))
        return [img], rng.choice(["Describe the image briefly.", "What is in the image?", "Give a short caption."]), \
            "a " + kind
    raise ValueError(task)


# ----------------------------------------------------------------------------- clips

def video_example(rng):
    frames, qa = video_clip(rng)
    return (frames,) + qa[0]


def video_clip(rng):
    """-> (frames, [(question, answer), ...]): the clip's question, then any other it answers."""
    bg = background(rng)
    kind = rng.choice(["appeared", "moved", "frames"])
    n = rng.randint(1, 3)
    objs = random_objects(rng, n + 1)
    for o in objs:
        o["xy"] = cell_center(rng, o["cell"])
    frames = []
    if kind == "appeared":
        new, rest = objs[-1], objs[:-1]
        t = rng.randint(1, N_FRAMES - 1)  # 0-based frame where it appears
        for f in range(N_FRAMES):
            frames.append(render_scene(rng, rest + ([new] if f >= t else []), bg))
        q = rng.choice(["What appeared in the video?", "Which shape appeared?"])
        return frames, [(q, art(new["color"], new["shape"])),
                        ("How many frames showed %s?" % art(new["color"], new["shape"]), str(N_FRAMES - t))]
    if kind == "moved":
        mover, rest = objs[-1], objs[:-1]
        free = [(r, c) for r in range(3) for c in range(3) if (r, c) not in {o["cell"] for o in objs}]
        dest = rng.choice(free)
        x0, y0 = mover["xy"]
        x1, y1 = cell_center(rng, dest)
        for f in range(N_FRAMES):
            t = f / (N_FRAMES - 1)
            m = dict(mover, xy=(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
            frames.append(render_scene(rng, rest + [m], bg))
        q = rng.choice(["What moved in the video?", "Which shape moved?"])
        return frames, [(q, "the %s %s" % (mover["color"], mover["shape"]))]
    # frames: how many frames showed X
    target, rest = objs[-1], objs[:-1]
    k = rng.randint(1, N_FRAMES)
    shown = set(rng.sample(range(N_FRAMES), k))
    for f in range(N_FRAMES):
        frames.append(render_scene(rng, rest + ([target] if f in shown else []), bg))
    return frames, [("How many frames showed %s?" % art(target["color"], target["shape"]), str(k))]


# ----------------------------------------------------------------------------- memory

def memory_entries(rng):
    """3-5 remembered lines (stamp, kind, text) within three hours, in time order."""
    n = rng.randint(3, 5)
    start = rng.randint(7 * 60, 20 * 60)
    times = sorted(rng.sample(range(start, start + 180), n))
    entries = []
    used_caps, used_phr = set(), set()
    for t in times:
        stamp = "%02d:%02d" % (t // 60, t % 60)
        if rng.random() < 0.5:
            while True:
                cap = art(rng.choice(COLOR_NAMES), rng.choice(MEM_OBJECTS))
                if cap not in used_caps:
                    break
            used_caps.add(cap)
            entries.append((stamp, "caption", cap))
        else:
            while True:
                phr = rng.choice(MEM_PHRASES)
                if phr not in used_phr:
                    break
            used_phr.add(phr)
            entries.append((stamp, "transcript", phr))
    return entries


def memory_question(rng, entries):
    e = rng.choice(entries)
    kind = rng.choice(["when", "what", "last"])
    if kind == "when":
        if e[1] == "caption":
            q = "When did I see %s?" % e[2]
        else:
            q = "When did I say \"%s\"?" % e[2]
        return q, e[0]
    if kind == "what":
        q = ("What did I see at %s?" if e[1] == "caption" else "What did I say at %s?") % e[0]
        return q, e[2]
    which = rng.choice(["caption", "transcript"])
    sel = [x for x in entries if x[1] == which]
    if not sel:
        which = entries[-1][1]
        sel = [x for x in entries if x[1] == which]
    last = sel[-1]
    q = "What did I see last, and when?" if which == "caption" else "What did I say last, and when?"
    return q, "%s at %s" % (last[2], last[0])


def memory_example(rng):
    entries = memory_entries(rng)
    q, a = memory_question(rng, entries)
    return [], "Memory:\n" + "\n".join("[%s] %s: %s" % e for e in entries) + "\nQuestion: " + q, a


# ----------------------------------------------------------------------------- dialogs (training)

def scene_dialog(rng):
    """One scene and every question of the scene tasks that has a single right answer."""
    if rng.random() < 0.3:  # a counting scene: several shapes of one kind among others
        n = rng.randint(1, 6)
        objs, shp, k = kind_count_objects(rng, n)
        img = render_scene(rng, objs)
        qa = [("count", "How many %ss are there?" % shp, str(k)), ("count", "How many shapes are there?", str(n))]
        return [img], qa
    n = rng.randint(1, 6)
    objs = random_objects(rng, n)
    img = render_scene(rng, objs)
    qa = [("count", "How many shapes are there?", str(n))]
    if n <= 2:
        q = rng.choice(["Describe the image briefly.", "What is in the image?", "Give a short caption."])
        qa.append(("caption", q, " and ".join(art(o["color"], o["shape"]) for o in reading_order(objs))))
    shapes = [o["shape"] for o in objs]
    colors = [o["color"] for o in objs]
    for o in objs:
        if shapes.count(o["shape"]) == 1:
            qa.append(("color", "What color is the %s?" % o["shape"], o["color"]))
        if colors.count(o["color"]) == 1:
            qa.append(("shape", "What shape is the %s object?" % o["color"], o["shape"]))
        r, c = o["cell"]
        qa.append(("position", "Where is the %s %s?" % (o["color"], o["shape"]), POS_NAMES[r][c]))
    qa.append(("describe", "List every shape and where it is.",
               ", ".join("%s at %s" % (art(o["color"], o["shape"]), POS_NAMES[o["cell"][0]][o["cell"][1]])
                         for o in reading_order(objs))))
    present = {(o["color"], o["shape"]) for o in objs}
    o = rng.choice(objs)
    qa.append(("yesno", "Is there %s?" % art(o["color"], o["shape"]), "yes"))
    while True:
        col, shp = rng.choice(COLOR_NAMES), rng.choice(SHAPES)
        if rng.random() < 0.5:
            base = rng.choice(objs)
            col, shp = (base["color"], shp) if rng.random() < 0.5 else (col, base["shape"])
        if (col, shp) not in present:
            break
    qa.append(("yesno", "Is there %s?" % art(col, shp), "no"))
    shp = rng.choice(SHAPES)
    qa.append(("count", "How many %ss are there?" % shp, str(shapes.count(shp))))
    return [img], qa


def document_dialog(rng):
    kind = rng.choice(["receipt", "form", "sign", "sign"])
    cap = ("caption", rng.choice(["Describe the image briefly.", "What is in the image?", "Give a short caption."]),
           "a " + kind)
    if kind == "sign":
        word = rng.choice(SIGN_WORDS)
        q = rng.choice(["What does the sign say?", "Read the text in the image."])
        return [render_sign(rng, word)], [("read_text", q, word), cap]
    fields = document_fields(rng, kind)
    title = rng.choice(DOC_TITLES[kind]) if rng.random() < 0.7 else None
    img = draw_lines(rng, ["%s: %s" % kv for kv in fields], title)
    qa = [("key_value", "What is the %s?" % k.lower(), v) for k, v in fields] + [cap]
    qa.append(("describe", "Read all the text.", "; ".join(([title] if title else []) +
                                                           ["%s: %s" % kv for kv in fields])))
    if title:
        qa.append(("read_text", "What is the title of the document?", title))
    return [img], qa


def video_dialog(rng):
    frames, qa = video_clip(rng)
    return frames, [("video", q, a) for q, a in qa]


def memory_dialog(rng):
    """Up to six questions about one memory list; the list is carried by the first question only."""
    entries = memory_entries(rng)
    qa = []
    for _ in range(16):
        q, a = memory_question(rng, entries)
        if len(qa) < 6 and q not in [x[0] for x in qa]:
            qa.append((q, a))
    head = "Memory:\n" + "\n".join("[%s] %s: %s" % e for e in entries) + "\nQuestion: "
    return [], [("memory", (head if i == 0 else "") + q, a) for i, (q, a) in enumerate(qa)]


# ----------------------------------------------------------------------------- composing (training)
# The prompts are those of the C++ composer (reasoning/composer.cpp): an outline, then each
# section with "[[image: description]]" marks, scored images; web pages from an instruction or a
# screenshot.

SHAPE_FACTS = {"circle": "has no corners", "square": "has four equal sides", "triangle": "has three sides",
               "star": "has five points", "diamond": "stands on one of its four corners",
               "hexagon": "has six sides"}
PAGE_WORDS = ["apple", "pear", "plum", "lemon", "grape", "melon", "bread", "milk", "tea", "rice"] + MEM_OBJECTS
PAGE_TITLES = ["Fruit", "Shopping", "Prices", "Things", "My List", "Market", "Pantry", "Inventory"]
PAGE_STYLE = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px}"


def title_case(s):
    words = s.split(" ")
    return " ".join(w if i and w in ("a", "an", "and") else w[:1].upper() + w[1:] for i, w in enumerate(words))


def article_dialog(rng):
    """An outline, then every section, about 1-3 shapes; each section marks its image."""
    n = rng.choice([1, 2, 2, 3])
    pairs = []
    while len(pairs) < n:
        p = (rng.choice(COLOR_NAMES), rng.choice(SHAPES))
        if p not in pairs:
            pairs.append(p)
    arts = [art(c, s) for c, s in pairs]
    about = arts[0] if n == 1 else ", ".join(arts[:-1]) + " and " + arts[-1]
    verb = rng.choice(["Write a short article about", "Write an article about", "Write about"])
    title = title_case(about)
    sections = ["The %s %s" % (c, s) for c, s in pairs]
    qa = [("outline", "Write an outline for an article.\nInstruction: %s %s." % (verb, about),
           "# %s\n" % title + "\n".join("%d. %s" % (i + 1, t) for i, t in enumerate(sections)))]
    for (c, s), a, t in zip(pairs, arts, sections):
        body = "%s is %s. A %s %s." % (a[0].upper() + a[1:], c, s, SHAPE_FACTS[s])
        qa.append(("section", "Write the section \"%s\"." % t, "## %s\n\n%s\n\n[[image: %s]]" % (t, body, a)))
    return [], qa


def page_html(title, items, table):
    if table:
        rows = "\n".join("<tr><td>%s</td><td>%s</td></tr>" % it for it in items)
        body = "<table>\n<tr><th>Item</th><th>Value</th></tr>\n%s\n</table>" % rows
    else:
        body = "<ul>\n%s\n</ul>" % "\n".join("<li>%s</li>" % it[0] for it in items)
    return ("<!DOCTYPE html>\n<html>\n<head>\n<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n"
            "<h1>%s</h1>\n%s\n</body>\n</html>" % (title, PAGE_STYLE, title, body))


def render_page(rng, title, items, table):
    """A screenshot of page_html as a browser would show it, roughly."""
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
    d = ImageDraw.Draw(img)
    big, small = font("DejaVuSans-Bold.ttf", 24), font("DejaVuSans.ttf", 18)
    y = 14
    d.text((14, y), title, font=big, fill=(0, 0, 0))
    y += 40
    for name, value in items:
        if table:
            d.rectangle([14, y - 2, 120, y + 22], outline=(150, 150, 150))
            d.rectangle([120, y - 2, 190, y + 22], outline=(150, 150, 150))
            d.text((18, y), name, font=small, fill=(0, 0, 0))
            d.text((124, y), value, font=small, fill=(0, 0, 0))
            y += 26
        else:
            d.ellipse([20, y + 7, 26, y + 13], fill=(0, 0, 0))
            d.text((34, y), name, font=small, fill=(0, 0, 0))
            y += 26
    return img


def webpage_dialog(rng):
    title = rng.choice(PAGE_TITLES)
    names = rng.sample(PAGE_WORDS, rng.randint(2, 4))
    table = rng.random() < 0.4
    items = [(w, str(rng.randint(1, 99))) for w in names]
    html = page_html(title, items, table)
    if rng.random() < 0.3:
        return [render_page(rng, title, items, table)], [("webpage", "Write the HTML of this web page.", html)]
    if table:
        what = "a table of " + ", ".join("%s %s" % it for it in items)
    else:
        what = "a list of " + ", ".join(names[:-1]) + " and " + names[-1]
    return [], [("webpage", "Write a web page as one HTML file.\nInstruction: A page titled %s with %s." %
                 (title, what), html)]


DIALOG_KINDS = {"scene": scene_dialog, "document": document_dialog, "video": video_dialog,
                "memory": memory_dialog, "article": article_dialog, "webpage": webpage_dialog}


def make_dialog(rng, kind):
    """Training conversation about one image set: (images, layout, [(task, question, answer), ...]) with the
    questions in random order.  Its first turn has exactly the form of make_example()'s prompts."""
    imgs, qa = DIALOG_KINDS[kind](rng)
    if kind not in ("memory", "article"):  # a memory list and an outline come first
        rng.shuffle(qa)
    return imgs, ("frames" if kind == "video" else "single"), qa


# ----------------------------------------------------------------------------- api

def make_example(rng, task):
    """-> (list of PIL images, layout, question, answer)."""
    if task in ("color", "shape", "count", "position", "yesno"):
        imgs, q, a = scene_example(rng, task)
    elif task == "caption":
        imgs, q, a = (document_example if rng.random() < 0.25 else scene_example)(rng, task)
    elif task in ("read_text", "key_value"):
        imgs, q, a = document_example(rng, task)
    elif task == "video":
        imgs, q, a = video_example(rng)
        return imgs, "frames", q, a
    elif task == "memory":
        imgs, q, a = memory_example(rng)
        return imgs, "single", q, a
    else:
        raise ValueError("unknown task " + task)
    return imgs, "single", q, a


def example_rng(seed, index):
    return random.Random(seed * 1000003 + index)


def corpus_texts():
    """Every word the generator can emit (for tokenizer training)."""
    words = set(TASKS) | set(COLOR_NAMES) | set(SHAPES) | set(SIGN_WORDS) | set(MEM_OBJECTS)
    for t in DOC_TITLES.values():
        words |= set(t)
    words |= set(RECEIPT_KEYS) | set(FORM_KEYS)
    for v in FORM_KEYS.values():
        if v:
            words |= set(v)
    words |= set(PAGE_WORDS) | set(PAGE_TITLES)
    return sorted(words) + MEM_PHRASES + [PAGE_STYLE] + list(SHAPE_FACTS.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of " + ",".join(TASKS))
    args = ap.parse_args()
    tasks = [t for t in args.tasks.replace(" ", ",").split(",") if t]
    for t in tasks:
        if t not in TASKS:
            sys.exit("unknown task '%s' (known: %s)" % (t, ", ".join(TASKS)))
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    with open(os.path.join(args.out, "data.jsonl"), "w", encoding="utf-8", newline="\n") as out:
        for i in range(args.count):
            task = tasks[i % len(tasks)]
            rng = example_rng(args.seed, i)
            imgs, layout, q, a = make_example(rng, task)
            ex_id = "%s-%d-%05d" % (task, args.seed, i)
            paths = []
            for k, im in enumerate(imgs):
                rel = "images/%s%s.png" % (ex_id, "" if layout == "single" else "-f%d" % (k + 1))
                im.save(os.path.join(args.out, rel), optimize=False)
                paths.append(rel)
            rec = {"id": ex_id, "task": task, "images": paths, "layout": layout, "question": q, "answer": a}
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            if (i + 1) % 500 == 0:
                print("%d/%d" % (i + 1, args.count), file=sys.stderr)


if __name__ == "__main__":
    main()
