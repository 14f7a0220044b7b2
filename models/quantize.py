"""Derives the edge pre-screen variants of platedet: fp32, int8 (QDQ) and 320-input.

Run through `models/quantize.sh`, which creates the pinned virtualenv. Steps:

1. fp16 -> fp32: platedet ships as a float16 export; every fp16 initializer,
   Cast target and graph type becomes float32 (the graph is otherwise unchanged).
2. A calibration set: the two fetched photos, deterministic variants of them
   (crops, flips, brightness/contrast) and seeded synthetic frames with
   plate-like rectangles, letterboxed exactly as Ultralytics does (pad 114, /255).
3. ONNX Runtime static quantization, QDQ format, int8 weights per channel,
   uint8 activations, with the head's tail (`/model.22/` DFL, reshapes,
   concats, box arithmetic and sigmoid) kept in float: quantizing that tail
   drives every confidence to 0 (BUILD-NOTES.md).
4. 320-input variants of both: the export bakes the 640 anchor grid (8400
   anchors) into the head's constants; those constants are regenerated for a
   320 grid (2100 anchors), exactly as Ultralytics' `make_anchors` builds them.
5. A dynamic-batch fp32 variant (`platedet.fp32.batch.onnx`) for the central
   inference role's batching: the input's and outputs' batch dimension
   becomes the symbol `batch`, and the head's Reshape targets (which the
   export baked as `[1, ...]`) copy the batch from their input (`0`). It must
   give, image for image, the same outputs as the batch-1 model.

Every output is checked before it is written: ONNX Runtime must run it and find
the bus's front plate on the bus photo (the same check the Rust tests make).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

SEED = 20240611
# Bus front plate (models/README.md), x1, y1, x2, y2 in photo pixels.
BUS_PLATE = (416.0, 366.0, 443.0, 376.0)
STRIDES = (8, 16, 32)
REG_MAX = 16


def log(msg: str) -> None:
    print(f"quantize: {msg}", flush=True)


# ---------------------------------------------------------------- fp16 -> fp32


def to_fp32(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrites every float16 tensor and type of the graph as float32."""
    g = model.graph
    for i, init in enumerate(g.initializer):
        if init.data_type == TensorProto.FLOAT16:
            arr = numpy_helper.to_array(init).astype(np.float32)
            g.initializer[i].CopyFrom(numpy_helper.from_array(arr, init.name))
    for node in g.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT16:
                arr = numpy_helper.to_array(attr.t).astype(np.float32)
                attr.t.CopyFrom(numpy_helper.from_array(arr, attr.t.name))
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        tt = vi.type.tensor_type
        if tt.elem_type == TensorProto.FLOAT16:
            tt.elem_type = TensorProto.FLOAT
    onnx.checker.check_model(model)
    return model


# ------------------------------------------------------------- letterbox/decode


def letterbox(img: Image.Image, size: int) -> np.ndarray:
    """Ultralytics letterbox: keep aspect, centre, pad 114, NCHW float /255."""
    w, h = img.size
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (size, size), (114, 114, 114))
    canvas.paste(img.convert("RGB").resize((nw, nh), Image.BILINEAR), ((size - nw) // 2, (size - nh) // 2))
    arr = np.asarray(canvas, dtype=np.float32) / 255.0
    return arr.transpose(2, 0, 1)[None].copy()


def best_plate(session: ort.InferenceSession, img: Image.Image, size: int) -> tuple[float, tuple[float, ...]]:
    """Score and box (photo pixels) of the best anchor of a 1-class head."""
    x = letterbox(img, size)
    (name,) = [i.name for i in session.get_inputs()]
    out = session.run(None, {name: x})[0][0]  # [37, N]
    k = int(np.argmax(out[4]))
    cx, cy, bw, bh = (float(v) for v in out[:4, k])
    w, h = img.size
    scale = min(size / w, size / h)
    px, py = (size - round(w * scale)) // 2, (size - round(h * scale)) // 2
    box = ((cx - bw / 2 - px) / scale, (cy - bh / 2 - py) / scale, (cx + bw / 2 - px) / scale, (cy + bh / 2 - py) / scale)
    return float(out[4, k]), box


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def check_finds_bus_plate(path: Path, bus: Image.Image, size: int, min_iou: float) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # At 320 the whole photo leaves the plate about 15x5 px: check on the crop
    # the README documents instead, where the plate is large enough.
    if size < 640:
        crop = (273, 206, 546, 413)
        img = bus.crop(crop)
        target = (BUS_PLATE[0] - crop[0], BUS_PLATE[1] - crop[1], BUS_PLATE[2] - crop[0], BUS_PLATE[3] - crop[1])
    else:
        img, target = bus, BUS_PLATE
    score, box = best_plate(session, img, size)
    overlap = iou(box, target)
    log(f"  check {path.name}: best plate score {score:.3f}, IoU with the bus plate {overlap:.2f}")
    if score < 0.25 or overlap < min_iou:
        raise SystemExit(f"quantize: {path.name} does not find the bus plate (score {score:.3f}, IoU {overlap:.2f})")


# ------------------------------------------------------------ calibration set


def synthetic_frame(rng: np.random.Generator, size: int = 640) -> Image.Image:
    """A road-like gradient with car-like blocks and white plate rectangles with dark glyphs."""
    top, bottom = rng.integers(30, 220, size=3), rng.integers(30, 220, size=3)
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    grad = (top[None, None, :] * (1 - t) + bottom[None, None, :] * t).repeat(size, axis=1)
    grad += rng.normal(0, 6, size=grad.shape)
    img = Image.fromarray(np.clip(grad, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        x, y = int(rng.integers(0, size - 200)), int(rng.integers(size // 4, size - 150))
        w, h = int(rng.integers(120, 400)), int(rng.integers(80, 250))
        d.rectangle((x, y, x + w, y + h), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        pw = int(rng.integers(30, 160))
        ph = max(8, pw // int(rng.integers(3, 6)))
        px, py = x + int(rng.integers(0, max(1, w - pw))), y + int(rng.integers(0, max(1, h - ph)))
        d.rectangle((px - 2, py - 2, px + pw + 2, py + ph + 2), fill=(20, 20, 20))
        d.rectangle((px, py, px + pw, py + ph), fill=(235, 235, 230) if rng.random() < 0.7 else (240, 200, 40))
        glyphs = int(rng.integers(5, 9))
        gw = pw / (glyphs + 1)
        for g in range(glyphs):
            gx = px + gw * (g + 0.5)
            d.rectangle((gx, py + ph * 0.2, gx + gw * 0.6, py + ph * 0.8), fill=(15, 15, 15))
    return img


def calibration_images(photos: list[Image.Image], synthetic: int) -> list[Image.Image]:
    rng = np.random.default_rng(SEED)
    out: list[Image.Image] = []
    for photo in photos:
        w, h = photo.size
        out += [photo, ImageOps.mirror(photo)]
        for factor in (0.6, 1.4):
            out.append(ImageEnhance.Brightness(photo).enhance(factor))
        out.append(ImageEnhance.Contrast(photo).enhance(0.7))
        for _ in range(4):
            cw, ch = int(w * rng.uniform(0.4, 0.8)), int(h * rng.uniform(0.4, 0.8))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            out.append(photo.crop((x, y, x + cw, y + ch)))
    out += [synthetic_frame(rng) for _ in range(synthetic)]
    return out


class Reader(CalibrationDataReader):
    def __init__(self, input_name: str, images: list[Image.Image], size: int):
        self.items = iter([{input_name: letterbox(img, size)} for img in images])

    def get_next(self):
        return next(self.items, None)


# ---------------------------------------------------------------- quantization


def float_tail(model: onnx.ModelProto) -> list[str]:
    """The head's nodes after its convolutions: reshapes, concats, DFL, box maths, sigmoid."""
    return [n.name for n in model.graph.node if n.name.startswith("/model.22/") and n.op_type != "Conv" and "/proto/" not in n.name and "/cv" not in n.name]


def quantize(fp32: Path, out: Path, images: list[Image.Image], size: int) -> None:
    model = onnx.load(str(fp32))
    input_name = model.graph.input[0].name
    exclude = float_tail(model)
    log(f"  {len(exclude)} head-tail nodes stay float: {', '.join(sorted(exclude)[:4])}, ...")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            Reader(input_name, images, size),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
        )
    # quant_pre_process keeps metadata_props, but be sure: the edge reads `names` from it.
    q = onnx.load(str(out))
    keep = {p.key: p.value for p in model.metadata_props}
    have = {p.key for p in q.metadata_props}
    for k, v in keep.items():
        if k not in have:
            q.metadata_props.add(key=k, value=v)
    onnx.save(q, str(out))


# ------------------------------------------------------------- 320-input edit


def make_anchors(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Ultralytics `make_anchors(feats, strides, 0.5)`: cell centres and strides."""
    points, strides = [], []
    for s in STRIDES:
        n = size // s
        sy, sx = np.meshgrid(np.arange(n, dtype=np.float32) + 0.5, np.arange(n, dtype=np.float32) + 0.5, indexing="ij")
        points.append(np.stack([sx.ravel(), sy.ravel()], axis=0))
        strides.append(np.full(n * n, s, dtype=np.float32))
    return np.concatenate(points, axis=1)[None], np.concatenate(strides)[None]


def resize_input(model: onnx.ModelProto, size: int) -> onnx.ModelProto:
    """Rewrites a fixed-640 YOLOv8 export for a fixed `size` input.

    Replaces every constant that holds the anchor count: the anchor grid
    `[1, 2, N]`, the stride row `[1, N]` and the DFL reshape shapes that end
    in N. Refuses graphs where any of them is not found, rather than guess.
    """
    old_anchors, old_strides = make_anchors(640)
    n_old = old_anchors.shape[2]
    anchors, strides = make_anchors(size)
    n = anchors.shape[2]
    replaced = {"anchors": 0, "strides": 0, "shapes": 0}
    g = model.graph
    for i, init in enumerate(g.initializer):
        arr = numpy_helper.to_array(init)
        if arr.shape == (1, 2, n_old) and np.allclose(arr, old_anchors):
            g.initializer[i].CopyFrom(numpy_helper.from_array(anchors.astype(arr.dtype), init.name))
            replaced["anchors"] += 1
        elif arr.shape == (1, n_old) and np.allclose(arr, old_strides):
            g.initializer[i].CopyFrom(numpy_helper.from_array(strides.astype(arr.dtype), init.name))
            replaced["strides"] += 1
        elif arr.dtype == np.int64 and arr.ndim == 1 and arr.size >= 3 and arr[-1] == n_old:
            new = arr.copy()
            new[-1] = n
            g.initializer[i].CopyFrom(numpy_helper.from_array(new, init.name))
            replaced["shapes"] += 1
    if replaced["anchors"] != 1 or replaced["strides"] != 1 or replaced["shapes"] < 1:
        raise SystemExit(f"quantize: cannot find the anchor constants to rewrite for {size} ({replaced})")
    dims = {"images": [1, 3, size, size]}
    for vi in g.input:
        for d, v in zip(vi.type.tensor_type.shape.dim, dims.get(vi.name, [])):
            d.dim_value = v
    # Output and intermediate shapes are re-inferred from the new input.
    del g.value_info[:]
    for vi in g.output:
        vi.type.tensor_type.ClearField("shape")
    for p in model.metadata_props:
        if p.key == "imgsz":
            p.value = f"[{size}, {size}]"
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


# ----------------------------------------------------------------------- main


# ------------------------------------------------------------ dynamic batch


def make_batch_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turns a batch-1 export into one whose batch dimension is `batch`."""
    g = model.graph
    for v in list(g.input) + list(g.output):
        dim = v.type.tensor_type.shape.dim[0]
        if dim.dim_value != 1:
            raise SystemExit(f"quantize: {v.name} has batch {dim.dim_value or dim.dim_param!r}, expected 1")
        dim.Clear()
        dim.dim_param = "batch"
    # Inferred shapes name batch 1; ONNX Runtime re-infers them.
    del g.value_info[:]
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    done: set[str] = set()
    for node in g.node:
        if node.op_type != "Reshape" or node.input[1] in done:
            continue
        name = node.input[1]
        done.add(name)
        if name in inits:
            tensor = inits[name]
        elif name in consts:
            tensor = consts[name].attribute[0].t
        else:
            raise SystemExit(f"quantize: {node.name} has a computed shape; cannot make it batch-dynamic")
        shape = numpy_helper.to_array(tensor).copy()
        if shape[0] != 1:
            raise SystemExit(f"quantize: {node.name} reshapes to {shape.tolist()}, expected a leading 1")
        # 0 copies the input's dimension (allowzero is 0 in these exports).
        shape[0] = 0
        tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
    onnx.checker.check_model(model)
    return model


def check_batch_matches(path: Path, reference: Path, batch: int = 3) -> None:
    """The batch model on N images gives each image's batch-1 outputs."""
    dynamic = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    single = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in dynamic.get_inputs()]
    x = np.random.default_rng(SEED).random((batch, 3, 640, 640), dtype=np.float32)
    together = dynamic.run(None, {name: x})
    worst = 0.0
    for k in range(batch):
        alone = single.run(None, {name: x[k : k + 1]})
        for a, b in zip(alone, together):
            worst = max(worst, float(np.abs(a - b[k : k + 1]).max()))
    log(f"  check {path.name}: batch of {batch} vs one by one, max difference {worst:.2e}")
    if worst > 1e-3:
        raise SystemExit(f"quantize: {path.name} differs from {reference.name} by {worst}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, required=True, help="the cache's models/ folder")
    ap.add_argument("--synthetic", type=int, default=48, help="synthetic calibration frames (default 48)")
    ap.add_argument("--force", action="store_true", help="rebuild even when outputs are up to date")
    args = ap.parse_args()

    src = args.models / "platedet" / "platedet.onnx"
    bus_path = args.models / "photos" / "pexels_double_decker_bus.jpg"
    sedan_path = args.models / "photos" / "licenseplate_motion.jpg"
    for p in (src, bus_path, sedan_path):
        if not p.is_file():
            raise SystemExit(f"quantize: {p} is missing: run `bash models/fetch.sh` first")
    out_dir = src.parent
    fp32 = out_dir / "platedet.fp32.onnx"
    int8 = out_dir / "platedet.int8.onnx"
    fp32_320 = out_dir / "platedet.fp32.320.onnx"
    int8_320 = out_dir / "platedet.int8.320.onnx"
    fp32_batch = out_dir / "platedet.fp32.batch.onnx"
    # An output is current when it was made by this exact recipe: the same
    # scripts, input model and calibration size. Content hashes, not mtimes,
    # because a fresh clone gives the scripts a new mtime every time.
    recipe = hashlib.sha256()
    for part in (Path(__file__), Path(os.environ.get("QUANTIZE_SH", __file__)), src):
        recipe.update(part.read_bytes())
    recipe.update(str(args.synthetic).encode())
    recipe_key = recipe.hexdigest()

    def stamp_of(p: Path) -> Path:
        return p.with_name(p.name + ".recipe")

    def fresh(p: Path) -> bool:
        stamp = stamp_of(p)
        return (
            not args.force
            and p.is_file()
            and stamp.is_file()
            and stamp.read_text().strip() == recipe_key
        )

    def write_atomic(target: Path, make) -> None:
        tmp = target.with_name(f".{target.name}.partial.{os.getpid()}")
        try:
            make(tmp)
            check_finds_bus_plate(tmp, bus, 640 if ".320." not in target.name else 320, 0.6)
            tmp.replace(target)
            stamp_of(target).write_text(recipe_key + "\n")
        finally:
            tmp.unlink(missing_ok=True)
        log(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB)")

    bus = Image.open(bus_path).convert("RGB")
    sedan = Image.open(sedan_path).convert("RGB")

    if fresh(fp32):
        log(f"ok {fp32.name} (up to date)")
    else:
        log(f"converting {src.name} from fp16 to fp32")
        write_atomic(fp32, lambda t: onnx.save(to_fp32(onnx.load(str(src))), str(t)))

    if fresh(fp32_320):
        log(f"ok {fp32_320.name} (up to date)")
    else:
        log("rewriting the fp32 model for a 320x320 input")
        write_atomic(fp32_320, lambda t: onnx.save(resize_input(onnx.load(str(fp32)), 320), str(t)))

    if fresh(fp32_batch):
        log(f"ok {fp32_batch.name} (up to date)")
    else:
        log("rewriting the fp32 model for a dynamic batch")

        def make_batch(t: Path) -> None:
            onnx.save(make_batch_dynamic(onnx.load(str(fp32))), str(t))
            check_batch_matches(t, fp32)

        write_atomic(fp32_batch, make_batch)

    images = None
    for target, source, size in ((int8, fp32, 640), (int8_320, fp32_320, 320)):
        if fresh(target):
            log(f"ok {target.name} (up to date)")
            continue
        if images is None:
            images = calibration_images([bus, sedan], args.synthetic)
        log(f"quantizing {source.name} to int8 QDQ at {size} with {len(images)} calibration frames")
        write_atomic(target, lambda t, s=source, z=size: quantize(s, t, images, z))
    return 0


if __name__ == "__main__":
    sys.exit(main())
