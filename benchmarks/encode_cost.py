"""What the encoder costs next to the model: x264 CPU seconds per frame, by preset and output size.

On a 2-core CPU the encoder shares the cores with the model, so its CPU time per frame is taken
from the model's (see ``pipeline_overlap.py``). This encodes frames of the example clip, resized
(bicubic) to each output size, with libx264 at ``--crf`` (the default 18) in-process with PyAV, the
encoder's threads left to x264, and reports CPU seconds (user + system, all threads) and wall
seconds per frame, and the bytes per frame, for each preset. The RGB -> YUV conversion is done
before the timed span.

    python benchmarks/encode_cost.py --sizes 1280x720,1920x1088,3840x2160 --presets medium,fast,veryfast

Writes ``--out``/encode_cost.md.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def measure(frames: list[np.ndarray], preset: str, crf: int, n: int, path: Path) -> dict:
    h, w = frames[0].shape[:2]
    yuv = [av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24").reformat(format="yuv420p")
           for i in range(n)]  # one frame object per pts
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": str(crf), "preset": preset}
        t0, c0 = time.perf_counter(), time.process_time()
        for i, f in enumerate(yuv):
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"cpu_s": cpu / n, "wall_s": wall / n, "kib": path.stat().st_size / n / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=REPO / "examples" / "cockatoo_320x180.mp4")
    ap.add_argument("--sizes", default="1280x720,1920x1088,3840x2160")
    ap.add_argument("--presets", default="medium,fast,veryfast")
    ap.add_argument("--crf", type=int, default=18)
    ap.add_argument("--frames", type=int, default=24, help="frames encoded per measurement")
    ap.add_argument("--out", type=Path, default=None, help="folder for encode_cost.md (default: print only)")
    a = ap.parse_args()
    src = []
    with av.open(str(a.clip)) as c:
        for f in c.decode(video=0):
            src.append(f.to_image())
            if len(src) == 12:
                break
    lines = [f"libx264 crf {a.crf}, frames of {a.clip.name} resized (bicubic), {a.frames} frames each, "
             "encoder threads x264's own choice.", "",
             "| output | preset | CPU s/frame | wall s/frame | KiB/frame |", "|---|---|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            frames = [np.asarray(im.resize((w, h), Image.BICUBIC)) for im in src]
            for preset in a.presets.split(","):
                r = measure(frames, preset, a.crf, a.frames, Path(tmp) / "out.mp4")
                lines.append(f"| {w}x{h} | {preset} | {r['cpu_s']:.3f} | {r['wall_s']:.3f} | {r['kib']:.0f} |")
                print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "encode_cost.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
