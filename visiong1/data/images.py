"""Image validation and normalisation: every pool image decodes, is RGB, upright, of sane shape and in budget.

>>> from visiong1.config import ImagePolicyConfig
>>> from PIL import Image
>>> import io
>>> buffer = io.BytesIO(); Image.new("RGB", (1, 1)).save(buffer, format="PNG")
>>> normalise_image(buffer.getvalue(), ImagePolicyConfig())
Traceback (most recent call last):
visiong1.data.schema.Rejected: image_too_small: 1x1 pixels, below min_side 28
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from visiong1.config import ImagePolicyConfig
from visiong1.data.schema import Rejected

Image.MAX_IMAGE_PIXELS = 256_000_000  # refuse decompression bombs, well above any real VQA image
RESIZE_MULTIPLE = 28  # Qwen2.5-VL: 14-px patches merged 2x2
EXIF_ORIENTATION = 0x0112


def read_image_bytes(image: bytes | str | dict, root: Path) -> bytes:
    """Bytes of an image given as bytes, a path (relative to `root`), or a Hugging Face `{bytes, path}` dict."""
    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if not image:
        raise Rejected("image_unreadable", "empty image reference")
    path = Path(image) if Path(image).is_absolute() else root / image
    try:
        return path.read_bytes()
    except OSError as error:
        raise Rejected("image_unreadable", f"{path}: {error.strerror or error}") from None


def decode(data: bytes) -> Image.Image:
    """Fully decode (so truncation is caught here, not in a vision encoder later)."""
    try:
        image = Image.open(io.BytesIO(data))
        if getattr(image, "n_frames", 1) > 1:
            raise Rejected("image_animated", f"{image.format} with {image.n_frames} frames")
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise Rejected("image_unreadable", f"{type(error).__name__}: {error}") from None
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any mode: alpha composited on white, palettes expanded, 16/32-bit scaled down to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # PIL cannot convert 16-bit greyscale to "L" without clipping: scale the value range explicitly.
        lo, hi = image.getextrema()
        scale = 255.0 / max(hi - lo, 1)
        return image.point(lambda value: (value - lo) * scale).convert("L").convert("RGB")
    if image.mode == "F":
        lo, hi = image.getextrema()
        return image.point(lambda value: (value - lo) * 255.0 / max(hi - lo, 1e-12)).convert("L").convert("RGB")
    if image.mode == "P" or "A" in image.mode or image.mode == "PA":
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # CMYK, YCbCr, L, 1, LAB, HSV


def fit_to_budget(width: int, height: int, policy: ImagePolicyConfig) -> tuple[int, int]:
    """Size inside [min_pixels, max_pixels] keeping the aspect ratio, sides multiples of 28 (Qwen's smart resize)."""
    pixels = width * height
    scale = math.sqrt(policy.max_pixels / pixels) if pixels > policy.max_pixels else math.sqrt(policy.min_pixels / pixels)
    # floor when shrinking, ceil when growing, so the result stays inside the budget; 1e-9 absorbs float error
    rounder = (lambda x: math.floor(x + 1e-9)) if pixels > policy.max_pixels else (lambda x: math.ceil(x - 1e-9))
    new_w = max(RESIZE_MULTIPLE, rounder(width * scale / RESIZE_MULTIPLE) * RESIZE_MULTIPLE)
    new_h = max(RESIZE_MULTIPLE, rounder(height * scale / RESIZE_MULTIPLE) * RESIZE_MULTIPLE)
    return new_w, new_h


def check_shape(width: int, height: int, policy: ImagePolicyConfig) -> None:
    if min(width, height) < policy.min_side:
        raise Rejected("image_too_small", f"{width}x{height} pixels, below min_side {policy.min_side}")
    ratio = max(width, height) / min(width, height)
    if ratio > policy.max_aspect_ratio:
        raise Rejected("image_aspect_ratio", f"{width}x{height} (ratio {ratio:.1f} > {policy.max_aspect_ratio})")


@dataclass(frozen=True)
class NormalisedImage:
    """Pool-ready bytes, and the upright size before and after resizing (to rescale pixel-coordinate answers)."""

    data: bytes
    upright_size: tuple[int, int]
    size: tuple[int, int]


def normalise_image(data: bytes, policy: ImagePolicyConfig) -> NormalisedImage:
    """Validated image for the pool: the input bytes unchanged when it is an upright RGB PNG/JPEG inside the
    budget, else re-encoded as PNG after EXIF rotation, mode conversion and resizing. Raises Rejected."""
    image = decode(data)
    source_format = image.format
    rotated = image.getexif().get(EXIF_ORIENTATION, 1) not in (1, None)
    upright = ImageOps.exif_transpose(image) if rotated else image
    changed = rotated
    check_shape(*upright.size, policy)
    rgb = to_rgb(upright)
    changed |= rgb is not upright
    upright_size, pixels = rgb.size, rgb.width * rgb.height
    if not policy.min_pixels <= pixels <= policy.max_pixels:
        if policy.resize == "reject":
            raise Rejected("image_out_of_budget", f"{rgb.width}x{rgb.height} = {pixels} pixels outside "
                                                  f"[{policy.min_pixels}, {policy.max_pixels}]")
        rgb = rgb.resize(fit_to_budget(rgb.width, rgb.height, policy), Image.Resampling.BICUBIC)
        changed = True
    if not changed and source_format in ("PNG", "JPEG"):
        return NormalisedImage(data, upright_size, rgb.size)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return NormalisedImage(buffer.getvalue(), upright_size, rgb.size)
