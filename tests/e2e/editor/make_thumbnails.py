"""Template-browser cards for the shipped workflows: workflows/<name>.jpg, from the graph editor test's screenshots.

The template browser of the pinned frontend (comfyui-frontend-package 1.27) titles a custom node pack's cards
with the file names and repeats them as descriptions; it reads no title or description from the pack. So each
card image carries the workflow's title and one-line description (extra.infuse in the UI file) above the graph
as the editor draws it.

    COMFYUI_PATH=... python -m pytest tests/e2e/test_editor.py -s --basetemp=/tmp/editor
    python tests/e2e/editor/make_thumbnails.py /tmp/editor/<test folder>      # the folder holding results.json
"""
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WORKFLOWS = Path(__file__).resolve().parents[3] / "workflows"
SIZE = 512                      # the card shows it in a 256 px square
BACKGROUND, TITLE, TEXT, ACCENT = (32, 32, 32), (245, 245, 245), (190, 190, 190), (120, 180, 255)
FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans{}.ttf",
         "/usr/share/fonts/truetype/liberation/LiberationSans{}.ttf")


def font(size: int, bold: bool = False):
    for pattern in FONTS:
        path = pattern.format("-Bold" if bold else ("" if "dejavu" in pattern else "-Regular"))
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def graph_crop(entry: dict) -> Image.Image:
    """The screenshot cut to the nodes (and a margin) within the canvas, the minimap and zoom buttons painted over
    with the canvas's colour."""
    shot = Image.open(entry["screenshot"]).convert("RGB")
    cx, cy, cw, ch = entry["view"]["canvasRect"]
    canvas_colour = max(shot.crop((round(cx), round(cy), round(cx + cw), round(cy + ch))).getcolors(1 << 24))[1]
    draw = ImageDraw.Draw(shot)
    for overlay in entry["view"]["overlays"]:
        x, y, w, h = overlay["rect"]
        draw.rectangle((x - 2, y - 2, x + w + 2, y + h + 2), fill=canvas_colour)
    rects = [n["screenRect"] for n in entry["nodes"]]
    left = max(cx, min(r[0] for r in rects) - 16)
    top = max(cy, min(r[1] for r in rects) - 16)
    right = min(cx + cw, max(r[0] + r[2] for r in rects) + 16)
    bottom = min(cy + ch, max(r[1] + r[3] for r in rects) + 16)
    return shot.crop((round(left), round(top), round(right), round(bottom)))


def wrap(text: str, face, width: int) -> list[str]:
    lines = []
    for word in text.split():
        if lines and face.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def card(name: str, entry: dict) -> Image.Image:
    info = json.loads((WORKFLOWS / f"{name}.json").read_text())["extra"]["infuse"]
    image = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    title_font, text_font, y = font(32, bold=True), font(20), 14
    for line in wrap(info["title"], title_font, SIZE - 40):
        draw.text((20, y), line, font=title_font, fill=TITLE)
        y += 40
    y += 4
    for line in wrap(info["description"], text_font, SIZE - 40):
        draw.text((20, y), line, font=text_font, fill=TEXT)
        y += 25
    y += 10
    draw.line((20, y, SIZE - 20, y), fill=ACCENT, width=3)
    top = y + 10
    graph = graph_crop(entry)
    graph.thumbnail((SIZE - 16, SIZE - top - 8), Image.LANCZOS)
    image.paste(graph, ((SIZE - graph.width) // 2, top + (SIZE - top - graph.height) // 2))
    return image


def main(results_dir: str) -> None:
    results = json.loads((Path(results_dir) / "results.json").read_text())
    for name, entry in results["workflows"].items():
        if entry.get("error") or not entry.get("screenshot"):
            raise SystemExit(f"{name}: no screenshot ({entry.get('error', '')[:300]})")
        out = WORKFLOWS / f"{name}.jpg"
        card(name, entry).save(out, quality=88, optimize=True)
        print(out)


if __name__ == "__main__":
    main(sys.argv[1])
