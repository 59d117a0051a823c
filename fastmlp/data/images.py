"""Images of digits, as a person hands them over, turned into MNIST's 28x28 inputs.

MNIST's digits were made this way (LeCun et al.): the ink of a scanned digit, cropped to its
bounding box, scaled to fit a 20x20 box keeping the aspect ratio (anti-aliased, hence grey
levels), then placed in a 28x28 field so that its centre of mass lies at the centre. Ink is
bright (1) on a black (0) background. :func:`mnist_like` does the same to any picture:

1. grey levels ``g`` in [0, 1] (:func:`to_grey`: pixels scaled by the range their values
   follow, so 8-bit, 16-bit and float pictures alike; colour by ITU-R 601 luma,
   transparency over a background that contrasts with the drawing);
2. ink ``a`` in [0, 1] (:func:`ink_map`): the paper ``g_bg`` is a smooth surface fitted to
   the image's border (:func:`background`: even or uneven light), and a noisy photograph is
   median-filtered first; ink is whichever side of the paper (darker or lighter) holds more
   of the deviation ``|g - g_bg|`` clear of the noise, so dark-on-light, light-on-dark and
   grey backgrounds all work; ``a = |g - g_bg| / max |g - g_bg|``, then a noise floor ``t``
   is removed: ``a <- max(a - t, 0) / (1 - t)``;
3. drop specks (pieces holding under 2% of the largest piece's ink: :func:`drop_specks`),
   then crop to the bounding box of ``a > 0.1`` (:func:`ink_box`);
4. strokes thinner than MNIST's (relative to the digit's height) are thickened to about
   MNIST's width (:func:`thicken`), since a pen on a large canvas is far thinner than the
   NIST scans were: a step MNIST did not need;
5. scale so that the longer side is 20 pixels (area-averaging: each output pixel is the
   mean of the input it covers), and stretch the grey levels so the darkest ink is 1;
6. put into 28x28 with the centre of mass ``(sum a_ij i / sum a_ij, sum a_ij j / sum a_ij)``
   at (14, 14), in whole pixels (MNIST's test digits: mean 13.99, 14.01; sd 0.29), the digit
   kept whole inside the field.

Everything but :func:`read_image` works on NumPy arrays and needs no file; the scaling, and
reading files, need Pillow (``pip install 'fastmlp[images]'``). :func:`expand_image_args` turns
the command line's names (files, folders, glob patterns) into the files to read.
"""

from __future__ import annotations

import glob
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..extras import require
from ..files import open_regular_file

SIDE = 28          # MNIST's field, pixels
BOX = 20           # the box the digit is scaled to fit
CENTRE = 14.0      # where MNIST's centres of mass lie (row, column), in pixel indices

#: A stroke narrower than this fraction of the digit's longer side is thickened to
#: :data:`STROKE_TARGET`. Measured on MNIST's test digits (:func:`stroke_width` over the longer
#: side, 8x upscaled): median 0.11, 5th percentile 0.07, 1st 0.06.
STROKE_MIN = 0.065
STROKE_TARGET = 0.11

#: The digit's box holds the pixels with more ink than this: faint fringes (JPEG ringing, a
#: scaled-up picture's blur) would widen it and shrink the digit. On MNIST's own test digits
#: the box loses a fringe pixel in 17% of them; the model's answers do not change.
BOX_LEVEL = 0.1

#: A picture whose paper's noise (:func:`background`'s ``sigma``) is above this, and whose
#: shorter side is at least :data:`DENOISE_SIDE`, is median-filtered (3x3) before its ink is
#: found: the filter lowers the noise floor that would eat the strokes' edges. Below, the
#: noise is that of 8-bit rounding or less, and a clean picture is left exactly as it is.
DENOISE_NOISE = 1.0 / 255
#: Twice MNIST's field: a picture this large draws its strokes several pixels wide, so a 3x3
#: median keeps them.
DENOISE_SIDE = 2 * SIDE

#: File endings :func:`image_files` takes from a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: Pictures larger than this many pixels are refused rather than decoded.
MAX_PIXELS = 40_000_000

#: Pictures with a longer side than this are shrunk by a whole factor as they are read (area
#: averaging): a photo's digit keeps far more than the 20 pixels it is scaled to, and a 12
#: megapixel photo takes 0.2 s instead of 4.
MAX_SIDE = 1024


# ----------------------------------------------------------------------------- arrays

def to_grey(pixels: np.ndarray) -> np.ndarray:
    """Grey levels (H, W) float64 in [0, 1] of an image array.

    ``pixels``: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA (also (H, W, 2): grey and
    alpha); bool, or integers or floats of any width, scaled by the range their values follow
    (:func:`pixel_scale`: within [0, 1] as they are, within 255 as 8 bits, within 65535 as 16
    bits, so a float picture of 0..1 reads as its 8-bit copy does). Colour becomes luma
    ``0.299 R + 0.587 G + 0.114 B``. With alpha ``A``, the image is laid over a plain
    background ``b``, ``g = A L + (1 - A) b``, where ``b`` is white when the opaque pixels are
    dark on average and black otherwise (a drawing on a transparent canvas stays visible).
    """
    a = np.asarray(pixels)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)) or a.size == 0:
        raise DataError(f"expected an image array (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape}")
    if a.dtype == bool:
        x = a.astype(np.float64)
    elif np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float64)
        if not np.isfinite(x).all():
            raise DataError("image has pixels that are NaN or infinite")
        offset, scale = pixel_scale(float(x.min()), float(x.max()))
        x = (x - offset) / scale
    else:
        raise DataError(f"expected bool, integer or float pixels; got {a.dtype}")
    x = np.clip(x, 0.0, 1.0)
    if x.ndim == 2:
        return x
    channels = x.shape[2]
    colour = x[..., :3] if channels >= 3 else x[..., :1]
    luma = 0.299 * colour[..., 0] + 0.587 * colour[..., 1] + 0.114 * colour[..., 2] if channels >= 3 else colour[..., 0]
    if channels in (2, 4):
        alpha = x[..., -1]
        opaque = alpha.sum()
        background = 1.0 if opaque == 0 or (alpha * luma).sum() / opaque < 0.5 else 0.0
        luma = alpha * luma + (1 - alpha) * background
    return luma


def pixel_scale(low: float, high: float) -> tuple[float, float]:
    """``(offset, scale)`` that map pixel values in ``[low, high]`` onto grey levels ``(v - offset) / scale``.

    The range convention the values follow, the first that holds them all: [0, 1] as they are
    (floats, or a 0/1 mask); [0, 255] as 8 bits (/255); [0, 65535] as 16 bits (/65535);
    [-1, 1] as ``(v + 1) / 2``; anything else (32-bit integers, floats of other ranges)
    stretched from its own minimum (0) to its maximum (1).
    """
    if low >= 0:
        for top in (1.0, 255.0, 65535.0):
            if high <= top:
                return 0.0, top
    elif low >= -1 and high <= 1:
        return -1.0, 2.0
    return low, max(high - low, 1e-300)


def _frame(shape: tuple[int, int]) -> np.ndarray:
    """Mask (H, W) of the outer frame, about 2% of the shorter side wide (at least 1 pixel)."""
    k = max(1, round(0.02 * min(shape)))
    mask = np.zeros(shape, bool)
    mask[:k] = mask[-k:] = True
    mask[:, :k] = mask[:, -k:] = True
    return mask


def background(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """The paper under the digit: its level ``g_bg`` (H, W) at every pixel, and its noise ``sigma``.

    ``g_bg`` is the quadratic surface ``c0 + c1 y + c2 x + c3 y^2 + c4 xy + c5 x^2`` fitted by
    least squares to the frame of the picture (about 2% of the shorter side): even light gives
    a constant, light from one side a slope, a lamp's falloff a curve. Robust to ink that
    touches the edge: three rounds, each refitting to the frame pixels within
    ``max(3 sigma, 0.004)`` of the last fit. Pictures under 16 pixels a side get a constant,
    the frame's median. ``sigma = 1.4826 median |g - g_bg|`` over the frame.
    """
    g = np.asarray(grey, dtype=np.float64)
    frame = _frame(g.shape)
    values = g[frame]
    if min(g.shape) < 16:
        level = float(np.median(values))
        return np.full(g.shape, level), 1.4826 * float(np.median(np.abs(values - level)))
    h, w = g.shape
    y = np.linspace(-0.5, 0.5, h)[:, None]
    x = np.linspace(-0.5, 0.5, w)[None, :]
    terms = [np.ones_like(y * x), y + 0 * x, x + 0 * y, y * y + 0 * x, y * x, x * x + 0 * y]
    design = np.stack([t[frame] for t in terms], axis=1)
    keep = np.ones(len(values), bool)
    for _ in range(3):
        # The normal equations by einsum, not lstsq: BLAS threads cost more than this small fit.
        rows = design[keep]
        gram = np.einsum("ni,nj->ij", rows, rows) + 1e-12 * np.eye(design.shape[1])
        coef = np.linalg.solve(gram, np.einsum("ni,n->i", rows, values[keep]))
        residual = values - np.einsum("ni,i->n", design, coef)
        sigma = 1.4826 * float(np.median(np.abs(residual[keep])))
        keep = np.abs(residual) <= max(3 * sigma, 0.004)  # 0.004: about one 8-bit level
        if keep.sum() < 6 * design.shape[1]:
            break
    level = coef[0] + coef[1] * y + coef[2] * x + coef[3] * y * y + coef[4] * y * x + coef[5] * x * x
    return level, 1.4826 * float(np.median(np.abs(residual)))


def ink_map(grey: np.ndarray) -> np.ndarray:
    """Ink (H, W) float64 in [0, 1], 0 on the background, 1 for the strongest ink.

    ``grey`` (H, W) in [0, 1]. The paper's level ``g_bg`` and noise ``sigma`` are
    :func:`background`'s. A noisy picture (``sigma`` over :data:`DENOISE_NOISE`) at least
    :data:`DENOISE_SIDE` pixels a side is first denoised by a 3x3 median filter (and its
    background measured again). Deviation ``d = g - g_bg``; dark ink when the deviations
    beyond ``3 sigma`` below the paper outweigh those above (``sum max(-d - 3 sigma, 0) >=
    sum max(d - 3 sigma, 0)``), else light ink; then ``a = |d| / max |d|`` on the ink's side (0
    on the other). The noise floor ``t = max(0.02, 4 sigma / max |d|)`` is removed:
    ``a <- max(a - t, 0) / (1 - t)``. Raises :class:`DataError` when nothing stands out of the
    background: ``max |d|`` under 0.05, or under ``8 sigma`` (where ``t`` would pass 0.5).
    """
    g = np.asarray(grey, dtype=np.float64)
    level, sigma = background(g)
    if sigma > DENOISE_NOISE and min(g.shape) >= DENOISE_SIDE:
        from scipy import ndimage
        g = ndimage.median_filter(g, size=3, mode="nearest")
        level, sigma = background(g)
    d = g - level
    dark, light = np.maximum(-d, 0.0), np.maximum(d, 0.0)
    # Only deviations clear of the noise vote, so that the paper's grain does not pick the side.
    ink = dark if np.maximum(dark - 3 * sigma, 0).sum() >= np.maximum(light - 3 * sigma, 0).sum() else light
    contrast = float(ink.max())
    if contrast < 0.05:
        raise DataError("no digit found: the image is blank (no pixel differs from the background by 5% or more)")
    if contrast < 8 * sigma:
        raise DataError(f"no digit found: nothing stands out of the background's noise (the strongest ink is "
                        f"{contrast / sigma:.1f} times the noise; a digit needs 8)")
    t = max(0.02, 4 * sigma / contrast)
    return np.maximum(ink / contrast - t, 0.0) / (1 - t)


def drop_specks(ink: np.ndarray, fraction: float = 0.02) -> np.ndarray:
    """``ink`` without the specks: 8-connected pieces of ``ink > 0`` whose ink ``sum a`` is below
    ``fraction`` of the largest piece's (noise, dust), which would stretch the bounding box."""
    from scipy import ndimage
    labels, n = ndimage.label(ink > 0, structure=np.ones((3, 3), bool))
    if n <= 1:
        return ink
    mass = np.asarray(ndimage.sum_labels(ink, labels, np.arange(1, n + 1)))
    keep = np.concatenate([[False], mass >= fraction * mass.max()])
    return np.where(keep[labels], ink, 0.0)


def ink_box(ink: np.ndarray, level: float = BOX_LEVEL) -> tuple[slice, slice]:
    """``(rows, cols)`` slices of the smallest box holding every pixel with ``ink > level``."""
    rows = np.flatnonzero(ink.max(axis=1) > level)
    cols = np.flatnonzero(ink.max(axis=0) > level)
    if len(rows) == 0:
        raise DataError("no digit found: the image has no ink")
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width of ``ink`` in pixels: ``4 * mean(distance) - 2`` over the pixels with ``ink >= 0.5``.

    ``distance``: from a pixel's centre to the nearest pixel below 0.5 (Euclidean distance
    transform). Across a band w pixels wide the distances are 1, 2, ..., 2, 1, whose mean is
    (w + 2) / 4.
    """
    from scipy import ndimage
    solid = ink >= 0.5
    if not solid.any():
        return 0.0
    dist = ndimage.distance_transform_edt(solid)
    return max(4.0 * float(dist[solid].mean()) - 2.0, 1.0)


def thicken(ink: np.ndarray) -> np.ndarray:
    """``ink`` with strokes narrower than :data:`STROKE_MIN` of the longer side widened to :data:`STROKE_TARGET`.

    With ``width`` from :func:`stroke_width` and ``L`` the longer side, strokes grow by
    ``r = (STROKE_TARGET L - width) / 2`` pixels on each side: ``grown = clip(r + 0.5 - dist, 0, 1)``
    where ``dist`` is the distance to the nearest pixel with ``ink >= 0.5`` (full ink within r,
    an anti-aliased edge one pixel wide), and the result is ``max(ink, grown)``, padded by
    ``ceil(r) + 1`` so nothing is cut at the edges. Returns ``ink`` itself when its strokes are
    wide enough.
    """
    from scipy import ndimage
    long_side = max(ink.shape)
    width = stroke_width(ink)
    if width >= STROKE_MIN * long_side:
        return ink
    r = (STROKE_TARGET * long_side - max(width, 1.0)) / 2
    pad = int(np.ceil(r)) + 1
    padded = np.pad(ink, pad)
    dist = ndimage.distance_transform_edt(padded < 0.5)
    # Anti-aliased edge: full ink up to r, fading to 0 over one pixel.
    grown = np.clip(r + 0.5 - dist, 0.0, 1.0)
    return np.maximum(padded, grown)


def resize_area(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """``a`` (H, W) resampled to (height, width) by area averaging (Pillow's BOX filter), float64."""
    require("PIL", "images", "scaling a picture of a digit")
    from PIL import Image
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    method = Image.Resampling.BOX if height <= a.shape[0] else Image.Resampling.BILINEAR
    return np.asarray(img.resize((width, height), method), dtype=np.float64)


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    """``(sum a_ij i, sum a_ij j) / sum a_ij`` of a non-negative (H, W) array, in pixel indices."""
    total = a.sum()
    return (float(a.sum(axis=1) @ np.arange(a.shape[0]) / total),
            float(a.sum(axis=0) @ np.arange(a.shape[1]) / total))


def mnist_like(pixels: np.ndarray) -> np.ndarray:
    """A picture of one digit as MNIST would have it: (28, 28) float32 in [0, 1], ink bright.

    ``pixels``: any array :func:`to_grey` takes, any size, dark-on-light or light-on-dark.
    Grey levels, ink, specks dropped, crop, thicken thin strokes, scale to fit 20x20, stretch to a peak of
    1, centre the mass at (14, 14): see the module's docstring. Raises :class:`DataError` for
    a blank picture.
    """
    ink = drop_specks(ink_map(to_grey(pixels)))
    rows, cols = ink_box(ink)
    ink = thicken(ink[rows, cols])
    rows, cols = ink_box(ink)
    ink = ink[rows, cols]
    h, w = ink.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.clip(resize_area(ink, nh, nw), 0.0, None)
    small /= small.max()
    cy, cx = centre_of_mass(small)
    top = int(np.clip(round(CENTRE - cy), 0, SIDE - nh))
    left = int(np.clip(round(CENTRE - cx), 0, SIDE - nw))
    out = np.zeros((SIDE, SIDE), np.float32)
    out[top:top + nh, left:left + nw] = small
    return out


# ----------------------------------------------------------------------------- files

def read_image(path: str | os.PathLike) -> np.ndarray:
    """The pixels of an image file as Pillow decodes it: uint8 (H, W), (H, W, 3) or (H, W, 4); uint16
    (H, W) for 16-bit grey; int32 or float32 (H, W) for 32-bit grey (Pillow's modes ``I`` and
    ``F``, e.g. a float TIFF), values as stored, which :func:`to_grey` scales by their range.

    PNG, JPEG, BMP, GIF (first frame), TIFF, WebP: whatever Pillow reads. A JPEG's EXIF
    orientation is applied. A picture whose longer side exceeds :data:`MAX_SIDE` is shrunk by
    the smallest whole factor that brings it within (each output pixel the mean of a k x k
    block). One-line :class:`DataError` naming the file for anything else.
    """
    require("PIL", "images", "reading image files")
    from PIL import Image, ImageOps, UnidentifiedImageError
    path = Path(path)
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Opened without blocking and examined first: a named pipe or a device is refused, not waited on.
            with open_regular_file(path, DataError) as fh, Image.open(fh) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise DataError(f"{path}: image of {img.width}x{img.height} pixels is too large "
                                    f"(at most {MAX_PIXELS // 1_000_000} megapixels)")
                factor = -(-max(img.size) // MAX_SIDE)
                if factor > 1:
                    img.draft(img.mode, (img.width // factor, img.height // factor))  # JPEG: decode smaller
                img = ImageOps.exif_transpose(img)
                sixteen_bit = img.mode.startswith("I;16")
                if sixteen_bit:
                    img = img.convert("I")  # 32-bit integers, which reduce() takes
                elif img.mode in ("I", "F"):
                    pass  # 32-bit integers or floats: their values as they are, for to_grey to scale
                elif img.mode in ("1", "L"):
                    img = img.convert("L")
                elif "A" in img.getbands() or "transparency" in img.info:
                    img = img.convert("RGBA")
                else:
                    img = img.convert("RGB")
                factor = -(-max(img.size) // MAX_SIDE)
                if factor > 1:
                    img = img.reduce(factor)
                pixels = np.asarray(img)
                return pixels.astype(np.uint16) if sixteen_bit else pixels
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image (Pillow cannot identify it)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DataError(f"{path}: image too large to decode safely") from None
    except (OSError, ValueError, SyntaxError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read the image ({reason})") from None


def load_digit(path: str | os.PathLike) -> np.ndarray:
    """:func:`mnist_like` of the image in ``path``: (28, 28) float32 in [0, 1]. Errors name the file."""
    pixels = read_image(path)
    try:
        return mnist_like(pixels)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside ``folder`` (by ending, see :data:`IMAGE_SUFFIXES`), sorted by name."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def expand_image_args(names: list[str]) -> tuple[list[Path], list[str]]:
    """Each of ``names`` as image paths, in order (each path once per name): ``(paths, errors)``.

    A name that exists is taken as it is written (a file, even ``scan[1].png``; a folder gives its
    :func:`image_files`); otherwise one with ``*``, ``?`` or ``[`` is a glob pattern, ``**`` matching
    any depth of folders (its leading folders that exist as written, brackets and all, are taken
    literally), whose files and folders count as above. Anything else is a path read later (and
    reported then). A name that gives nothing is one error line.
    """
    paths: list[Path] = []
    errors = []
    for name in names:
        path = Path(name)
        if os.path.isdir(path):
            found = image_files(path)
            if not found:
                errors.append(f"{name}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        elif os.path.lexists(path) or not any(c in name for c in "*?["):
            found = [path]
        else:
            found = []
            for match in sorted(glob.glob(_literal_prefix(name), recursive=True)):
                found += image_files(match) if os.path.isdir(match) else [Path(match)]
            if not found:
                errors.append(f"{name}: no file matches this pattern")
        paths += dict.fromkeys(found)  # a folder matched by ``**`` and its files matched too: once
    return paths, errors


def _literal_prefix(pattern: str) -> str:
    """``pattern`` with its leading components that exist as written (``scan[1]/``) escaped for glob."""
    parts = list(Path(pattern).parts)
    prefix = Path()
    while len(parts) > 1 and not any(c in parts[0] for c in "*?") and os.path.lexists(prefix / parts[0]):
        prefix /= parts.pop(0)
    if not prefix.parts:
        return pattern
    return os.path.join(glob.escape(str(prefix)), *parts)
