#!/usr/bin/python3
"""Makes resources/samples/: a few generated scene and document images and a short video clip
with a spoken soundtrack.

    /usr/bin/python3 tools/demo/make_samples.py [--out resources/samples]

Needs the ffmpeg, espeak-ng and sox command-line tools.  Images come from generate.py (same
drawing code as the demo model's training data, fixed seeds); the clip is 224x224, 12 fps, 10 s,
H.264 yuv420p + AAC, with speech from `espeak-ng -w` resampled by `sox -D` to 16 kHz mono (the
16 kHz WAV is kept as well).  document-pages.pdf comes from make_pdf_sample.py.  samples.jsonl
lists questions the demo model was trained to answer; page-screenshot.png is a web page for
`iris compose webpage --screenshot`.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate  # noqa: E402
import make_pdf_sample  # noqa: E402

SPEECH = "Look, the blue square is moving to the right. Now a green star appears. Remember to buy milk."


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                  "resources", "samples"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    items = []

    def sample(name, task, seed, want=None):
        while True:  # the first seed from `seed` on whose question starts with `want`
            rng = random.Random(seed)
            imgs, layout, q, a = generate.make_example(rng, task)
            if want is None or q.startswith(want):
                break
            seed += 1
        path = os.path.join(out, name + ".png")
        imgs[0].save(path, optimize=True)
        items.append({"id": name, "task": task, "images": [name + ".png"], "layout": layout, "question": q,
                      "answer": a})

    sample("scene-shapes", "count", 11)
    sample("scene-position", "position", 12)
    sample("scene-color", "color", 13)
    sample("document-receipt", "key_value", 21)
    sample("document-form", "key_value", 24)
    sample("document-sign", "read_text", 23, want="What does the sign say")
    # a web page as a browser shows it, for `iris compose webpage --screenshot`
    seed = 31
    while True:
        imgs, qa = generate.webpage_dialog(random.Random(seed))
        if imgs:
            break
        seed += 1
    imgs[0].save(os.path.join(out, "page-screenshot.png"), optimize=True)

    # the clip: a red circle stays, a blue square moves left -> right, a green star appears halfway
    rng = random.Random(7)
    bg = generate.background(rng)
    fps, n = 12, 120  # 10 s: the speech lasts about 8 s
    tmp = tempfile.mkdtemp(prefix="iris-samples-")
    try:
        for f in range(n):
            t = f / (n - 1)
            objs = [{"color": "red", "shape": "circle", "size": "medium", "cell": (0, 1), "xy": (112, 45)},
                    {"color": "blue", "shape": "square", "size": "medium", "cell": (1, 0),
                     "xy": (40 + 144 * t, 112)}]
            if f >= n // 2:
                objs.append({"color": "green", "shape": "star", "size": "medium", "cell": (2, 1), "xy": (112, 180)})
            generate.render_scene(random.Random(1000 + f), objs, bg).save(os.path.join(tmp, "f%03d.png" % f))
        raw, wav = os.path.join(tmp, "speech.wav"), os.path.join(out, "clip-speech-16k.wav")
        run(["espeak-ng", "-v", "en-us+f2", "-s", "140", "-w", raw, SPEECH])  # the clearest voice for pocketsphinx
        run(["sox", "-D", raw, "-r", "16000", "-c", "1", "-b", "16", wav])
        run(["ffmpeg", "-y", "-loglevel", "error", "-framerate", str(fps), "-i", os.path.join(tmp, "f%03d.png"),
             "-i", wav, "-c:v", "libx264", "-preset", "veryslow", "-crf", "30", "-pix_fmt", "yuv420p",
             "-threads", "1", "-c:a", "aac", "-b:a", "32k", "-shortest", "-fflags", "+bitexact",
             "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1",
             os.path.join(out, "clip-shapes.mp4")])
        # four evenly spaced frames as the model sees a clip (load_video, num_segments 4)
        frames = []
        for k in range(4):
            src = os.path.join(tmp, "f%03d.png" % min(n - 1, int((n - 1) / 4 / 2 + round((n - 1) / 4 * k))))
            dst = "clip-frame%d.png" % (k + 1)
            shutil.copyfile(src, os.path.join(out, dst))
            frames.append(dst)
    finally:
        shutil.rmtree(tmp)
    items.append({"id": "clip-appeared", "task": "video", "images": frames, "layout": "frames",
                  "question": "What appeared in the video?", "answer": "a green star"})
    items.append({"id": "clip-moved", "task": "video", "images": frames, "layout": "frames",
                  "question": "What moved in the video?", "answer": "the blue square"})
    items.append({"id": "memory-transcript", "task": "memory", "images": [], "layout": "single",
                  "question": "Memory:\n[09:12] caption: a blue square\n[09:13] transcript: buy milk\n"
                              "[09:14] caption: a green star\nQuestion: When did I see a green star?",
                  "answer": "09:14"})
    make_pdf_sample.write_pdf_sample(out)  # shows document-receipt.png on its page 2
    with open(os.path.join(out, "samples.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    total = sum(os.path.getsize(os.path.join(out, x)) for x in os.listdir(out))
    print("wrote %s (%d files, %.0f KB)" % (out, len(os.listdir(out)), total / 1024))


if __name__ == "__main__":
    main()
