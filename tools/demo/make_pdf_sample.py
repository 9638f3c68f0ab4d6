#!/usr/bin/python3
"""Makes resources/samples/document-pages.pdf: a small 3-page PDF for document question answering.

    /usr/bin/python3 tools/demo/make_pdf_sample.py [--out resources/samples]

The PDF is written by hand (PDF 1.4, uncompressed Helvetica text, a classic xref table) so that
it is tiny, deterministic (no dates, no IDs) and needs nothing but Pillow.  Page 1 is about
opening hours, page 3 about parking; page 2 shows document-receipt.png (made by make_samples.py)
as a JPEG image XObject, and its text layer mentions the receipt, its total and its tax, so a
question like "What is the total?" should pick page 2.  Every page is US Letter (612 x 792 pt);
on page 2 the image fills the square x 156..456, y 200..500 (PDF units, origin bottom left).
"""
import argparse
import io
import os

from PIL import Image

PAGE_W, PAGE_H = 612, 792
IMAGE_BOX = (156, 200, 300)  # x, y, side in points

PAGES = [
    ("Opening hours", [
        "The library is open from nine in the morning to six in the evening",
        "on weekdays, and from ten to four on Saturdays. It is closed on",
        "Sundays and on public holidays. The reading room closes half an",
        "hour earlier than the library itself.",
    ]),
    ("Receipt", [
        "The scanned receipt below lists the cash, the fee and the tip paid",
        "for the visit. The total and the tax are worked out from these",
        "amounts.",
    ]),
    ("Parking rules", [
        "Visitors park in the north lot only. Spaces near the entrance are",
        "kept for people with a permit. Bicycles go in the racks by the",
        "west door. Cars left overnight are towed away at the owner's cost.",
    ]),
]


def pdf_string(text):
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def text_ops(title, lines):
    ops = ["BT", "/F1 24 Tf", "72 720 Td", pdf_string(title) + " Tj", "ET",
           "BT", "/F1 12 Tf", "16 TL", "72 680 Td"]
    for i, line in enumerate(lines):
        ops.append(pdf_string(line) + (" Tj" if i == 0 else " '"))
    ops.append("ET")
    return ops


def make_pdf(receipt_png):
    img = Image.open(receipt_png).convert("RGB")
    jpeg = io.BytesIO()
    img.save(jpeg, "JPEG", quality=90)  # baseline, 4:2:0; Pillow writes no timestamp
    jpeg = jpeg.getvalue()

    objects = {}  # number -> body bytes (without "n 0 obj" / "endobj")

    def stream(n, extra, data):
        objects[n] = b"<< " + extra + b"/Length %d >>\nstream\n" % len(data) + data + b"\nendstream"

    n_pages = len(PAGES)
    page_ids = [3 + i for i in range(n_pages)]
    content_ids = [3 + n_pages + i for i in range(n_pages)]
    font_id, image_id = 3 + 2 * n_pages, 4 + 2 * n_pages
    objects[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % i for i in page_ids), n_pages)
    for i, (title, lines) in enumerate(PAGES):
        ops = text_ops(title, lines)
        resources = b"/Font << /F1 %d 0 R >>" % font_id
        if title == "Receipt":
            x, y, side = IMAGE_BOX
            ops += ["q", "%d 0 0 %d %d %d cm" % (side, side, x, y), "/Im1 Do", "Q"]
            resources += b" /XObject << /Im1 %d 0 R >>" % image_id
        ops += ["BT", "/F1 9 Tf", "72 60 Td", pdf_string("Page %d of %d" % (i + 1, n_pages)) + " Tj", "ET"]
        objects[page_ids[i]] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << %s >> "
                                b"/Contents %d 0 R >>" % (PAGE_W, PAGE_H, resources, content_ids[i]))
        stream(content_ids[i], b"", ("\n".join(ops) + "\n").encode("latin-1"))
    objects[font_id] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    stream(image_id, b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
                     b"/BitsPerComponent 8 /Filter /DCTDecode " % img.size, jpeg)

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")  # the binary comment marks the file as binary
    offsets = {}
    for n in sorted(objects):
        offsets[n] = len(out)
        out += b"%d 0 obj\n" % n + objects[n] + b"\nendobj\n"
    xref = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size  # each entry is exactly 20 bytes
    for n in range(1, size):
        out += b"%010d 00000 n \n" % offsets[n]
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def write_pdf_sample(out_dir):
    data = make_pdf(os.path.join(out_dir, "document-receipt.png"))
    path = os.path.join(out_dir, "document-pages.pdf")
    with open(path, "wb") as f:
        f.write(data)
    return path, len(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                  "resources", "samples"))
    args = ap.parse_args()
    path, n = write_pdf_sample(os.path.abspath(args.out))
    print("wrote %s (%.1f KB)" % (path, n / 1024))


if __name__ == "__main__":
    main()
