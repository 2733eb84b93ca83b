#!/usr/bin/python3
"""Write N photo-sized JPEGs for bench_index's build benchmark.

    /usr/bin/python3 bench/make_photos.py OUT_DIR [N] [WIDTH HEIGHT]

Defaults: 64 images of 1600x1200, quality 90, 4:2:0 (what cameras and phones
write). The content is smooth random colour fields with fine noise, so the
files decode like photographs (about 0.3-0.6 MB each) rather than like flat
test patterns. Deterministic (fixed seed). Needs python3-pil and python3-numpy.
"""
import os
import sys

import numpy as np
from PIL import Image


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    w, h = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (1600, 1200)
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(13)
    for i in range(n):
        coarse = rng.integers(0, 256, size=(h // 50 + 2, w // 50 + 2, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
        px = np.asarray(img).astype(np.int16) + rng.integers(-12, 13, size=(h, w, 3))
        Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(
            os.path.join(out, "photo_%03d.jpg" % i), quality=90, subsampling=2)


if __name__ == "__main__":
    main()
