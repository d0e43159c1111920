"""Regenerate the demo's synthetic example images (small PNGs, no downloads).

python assets/examples/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def _background(h: int, w: int, top: tuple[int, int, int], bottom: tuple[int, int, int]):
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    grad = np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t
    return Image.fromarray(np.clip(np.broadcast_to(grad, (h, w, 3)), 0, 255).astype(np.uint8))


def shapes() -> Image.Image:
    """A red ball, a blue box and a yellow triangle on a table."""
    img = _background(360, 480, (200, 225, 245), (120, 100, 80))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 250, 480, 360), fill=(150, 110, 70))
    d.ellipse((60, 150, 170, 260), fill=(215, 40, 40), outline=(120, 20, 20), width=3)
    d.rectangle((220, 140, 330, 260), fill=(40, 80, 200), outline=(20, 40, 110), width=3)
    d.polygon([(360, 260), (420, 150), (470, 260)], fill=(240, 200, 40), outline=(140, 110, 20))
    return img


def fruit() -> Image.Image:
    """Three oranges and a green apple on a plate."""
    img = _background(320, 420, (250, 245, 235), (210, 200, 190))
    d = ImageDraw.Draw(img)
    d.ellipse((30, 60, 390, 290), fill=(245, 245, 245), outline=(180, 180, 180), width=4)
    for x, y in ((90, 120), (170, 160), (230, 100)):
        d.ellipse((x, y, x + 70, y + 70), fill=(245, 140, 30), outline=(190, 100, 10), width=2)
    d.ellipse((290, 150, 360, 222), fill=(120, 200, 60), outline=(70, 140, 30), width=2)
    d.line((325, 150, 330, 132), fill=(90, 60, 30), width=4)
    return img


if __name__ == "__main__":
    for name, make in (("shapes.png", shapes), ("fruit.png", fruit)):
        make().save(HERE / name, optimize=True)
        print(HERE / name)
