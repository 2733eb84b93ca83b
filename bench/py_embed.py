#!/usr/bin/python3
"""Images per second of portclip's Python module (python/portclip), for
bench/busy.sh's py-b1 and py-b32 workloads:

    py_embed.py MODEL BATCH SECONDS

Model.embed_images on BATCH random 640x480 RGB arrays per call (the model's
preprocessing and the vision tower; no decoding), after one warm-up call, for
at least SECONDS and 2 calls. Prints one JSON line with "batch" and
"median_s" (seconds per call), as bench_clip does. The library is the one
PORTCLIP_LIBRARY names, else the module's own search. Not a test."""

import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import numpy as np  # noqa: E402

import portclip  # noqa: E402


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    model, batch, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(batch)]
    with portclip.Model(model, backend="cpu") as m:
        m.embed_images(images)
        times = []
        t_end = time.perf_counter() + seconds
        while len(times) < 2 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            m.embed_images(images)
            times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"impl": "portclip-python", "batch": batch,
                      "median_s": times[len(times) // 2], "calls": len(times)}))


if __name__ == "__main__":
    main()
