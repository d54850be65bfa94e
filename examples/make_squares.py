"""Write a small image folder of red, blue and yellow squares: ``ROOT/<colour>/*.png``.

    python examples/make_squares.py photos/ [--per-class 30] [--size 40]

The stand-in for "your own folder of photos" in the examples: one subfolder per class, as
Keras's ``image_dataset_from_directory`` (and specnet's folder source) reads it. Each image is
a square of the class's colour, of random size and place, on a noisy grey background. A few
images sit in a nested folder (``2019/``), which is read as well, and a notebook's
``.ipynb_checkpoints/`` folder, which is skipped, as Keras skips it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "yellow": (235, 215, 30)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--size", type=int, default=40)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        for i in range(args.per_class):
            image = rng.normal(110, 25, size=(args.size, args.size, 3))
            side = int(rng.integers(args.size // 3, args.size * 2 // 3))
            top, left = rng.integers(0, args.size - side, size=2)
            image[top : top + side, left : left + side] = colour
            folder = args.root / name / ("2019" if i % 5 == 0 else "")
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.clip(image, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i:03d}.png")
        hidden = args.root / name / ".ipynb_checkpoints"
        hidden.mkdir(exist_ok=True)
        (hidden / "notes.png").write_bytes(b"not an image: skipped, as Keras skips dot-folders")
    print(f"wrote {3 * args.per_class} images under {args.root}/{{red,blue,yellow}}/")


if __name__ == "__main__":
    main()
