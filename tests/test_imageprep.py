"""Any picture of a digit becomes an MNIST-like 28x28 input: grey, ink bright on black, cropped,
scaled to fit 20x20 keeping its aspect ratio, centred by its centre of mass; files are read
by Pillow, and a file that is not an image is one clear error naming it."""

import numpy as np
import pytest
from helpers import import_extra
from scipy import ndimage

import_extra("PIL", "images")  # the images extra: without it this module skips
from PIL import Image  # noqa: E402

from fastmlp.data import images as ip  # noqa: E402
from fastmlp.errors import DataError  # noqa: E402


def rectangle(canvas=(60, 80), top_left=(10, 20), size=(30, 12), ink=1.0, background=0.0) -> np.ndarray:
    """A float canvas with a filled rectangle of ``ink`` on ``background``."""
    a = np.full(canvas, background)
    a[top_left[0]:top_left[0] + size[0], top_left[1]:top_left[1] + size[1]] = ink
    return a


def ring(canvas=(200, 160), centre=(100, 80), radii=(70, 50), width=12.0) -> np.ndarray:
    """An anti-aliased elliptical ring, ink 1 on 0: a zero."""
    y, x = np.mgrid[:canvas[0], :canvas[1]]
    r = np.hypot((y - centre[0]) / radii[0], (x - centre[1]) / radii[1])
    dist = np.abs(r - 1) * min(radii)  # about the distance to the ellipse, in pixels
    return np.clip(width / 2 + 0.5 - dist, 0, 1)


# ----------------------------------------------------------------------------- grey levels

def test_colour_becomes_luma_and_uint8_is_scaled_to_one():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    rgb[1] = 255
    g = ip.to_grey(rgb)
    np.testing.assert_allclose(g[0], [0.299, 0.587, 0.114])
    np.testing.assert_allclose(g[1], 1.0)


def test_sixteen_bit_grey_is_scaled_by_65535():
    np.testing.assert_allclose(ip.to_grey(np.array([[0, 65535, 32768]], np.uint16)), [[0, 1, 32768 / 65535]])


@pytest.mark.parametrize("values,grey", [
    (np.array([[0.0, 0.5, 1.0]], np.float32), [0, 0.5, 1]),                       # floats of 0..1: as they are
    (np.array([[0, 1, 1]], np.uint8), [0, 1, 1]),                                  # a 0/1 mask
    (np.array([[0.0, 51.0, 255.0]]), [0, 0.2, 1]),                                 # floats of 0..255: 8 bits
    (np.array([[0, 51, 200]], np.int64), [0, 0.2, 200 / 255]),                    # integers of 0..255
    (np.array([[0, 51, 200]], np.uint16), [0, 0.2, 200 / 255]),                   # 8-bit values kept in 16 bits
    (np.array([[0, 300, 65535]], np.int32), [0, 300 / 65535, 1]),                 # 16 bits
    (np.array([[-1.0, 0.0, 1.0]], np.float32), [0, 0.5, 1]),                      # floats of -1..1
    (np.array([[-50, 0, 150]], np.int32), [0, 0.25, 1]),                          # any other range: min..max
    (np.array([[0, 10**6, 4 * 10**6]], np.int64), [0, 0.25, 1]),
])
def test_integer_and_float_pixels_are_scaled_by_the_range_their_values_follow(values, grey):
    np.testing.assert_allclose(ip.to_grey(values), [grey], atol=1e-7)


def test_a_float_picture_of_0_to_1_gives_the_digit_its_8_bit_copy_gives():
    pixels = (255 * (1 - ring())).round().astype(np.uint8)
    want = ip.mnist_like(pixels)
    for same in (pixels / 255, (pixels / 255).astype(np.float32), pixels.astype(np.float32),
                 pixels.astype(np.int32) * 257, pixels / 127.5 - 1):
        np.testing.assert_allclose(ip.mnist_like(same), want, atol=1e-6)


def test_a_black_drawing_on_a_transparent_canvas_lands_on_white_paper():
    rgba = np.zeros((40, 40, 4), np.uint8)  # transparent black everywhere
    rgba[10:30, 18:22] = (0, 0, 0, 255)     # an opaque black stroke
    g = ip.to_grey(rgba)
    assert g[0, 0] == 1.0 and g[20, 20] == 0.0


def test_a_white_drawing_on_a_transparent_canvas_lands_on_black():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 18:22] = (255, 255, 255, 255)
    g = ip.to_grey(rgba)
    assert g[0, 0] == 0.0 and g[20, 20] == pytest.approx(1.0)


@pytest.mark.parametrize("array,fragment", [
    (np.zeros((4, 4, 5), np.uint8), "shape"),
    (np.zeros(16, np.uint8), "shape"),
    (np.zeros((0, 4), np.uint8), "shape"),
    (np.zeros((4, 4), np.complex64), "complex64"),
    (np.full((4, 4), "ink"), "<U3"),
    (np.full((4, 4), np.nan), "NaN"),
])
def test_arrays_that_are_not_images_are_refused(array, fragment):
    with pytest.raises(DataError, match=fragment):
        ip.to_grey(array)


# ----------------------------------------------------------------------------- ink

@pytest.mark.parametrize("ink,background", [(0.0, 1.0), (1.0, 0.0), (0.1, 0.55), (0.95, 0.55), (0.3, 0.8)])
def test_ink_is_one_on_the_digit_and_zero_on_the_background_whatever_the_polarity(ink, background):
    a = ip.ink_map(rectangle(ink=ink, background=background))
    assert a[20, 25] == pytest.approx(1.0) and a[0, 0] == 0.0
    np.testing.assert_allclose(a, rectangle())


def lit(grey: np.ndarray, slope=0.3, curve=0.2) -> np.ndarray:
    """``grey`` under uneven light: brighter to the right by ``slope``, darker away from the centre by
    ``curve`` (a lamp's falloff), clipped to [0, 1]."""
    y, x = np.mgrid[:grey.shape[0], :grey.shape[1]]
    y, x = y / grey.shape[0] - 0.5, x / grey.shape[1] - 0.5
    return np.clip(grey * (1 - slope / 2 + slope * (x + 0.5)) - curve * (x * x + y * y), 0, 1)


@pytest.mark.parametrize("slope,curve", [(0.3, 0.0), (0.0, 0.4), (0.4, 0.3), (-0.3, 0.2)])
def test_uneven_light_on_the_paper_is_not_ink(slope, curve):
    paper = lit(rectangle(canvas=(90, 120), top_left=(20, 50), ink=0.2, background=0.85), slope, curve)
    a = ip.ink_map(paper)
    assert (a[rectangle(canvas=(90, 120), top_left=(20, 50)) == 0] == 0).all()
    assert a[rectangle(canvas=(90, 120), top_left=(20, 50)) == 1].min() > 0.6


def test_the_background_is_a_smooth_surface_fitted_to_the_frame_despite_ink_touching_it():
    y, x = np.mgrid[:80, :100] / 100
    paper = 0.6 + 0.2 * x - 0.1 * y + 0.3 * (x - 0.5) ** 2
    picture = paper.copy()
    picture[0:50, 40:50] = 0.05  # a stroke that runs off the top edge
    level, sigma = ip.background(picture)
    np.testing.assert_allclose(level, paper, atol=1e-6)
    assert sigma < 1e-6


def test_the_polarity_is_not_decided_by_the_grain_of_the_paper():
    rng = np.random.default_rng(3)
    page = np.clip(0.8 + rng.normal(0, 0.03, (120, 120)), 0, 1)
    page[30:90, 55:62] = 0.2  # a thin dark stroke: less area than the grain's bright half
    a = ip.ink_map(page)
    assert a[30:90, 56:61].min() > 0.7 and a[:20].max() == 0


def test_a_noisy_photo_is_median_filtered_and_a_clean_picture_is_left_as_it_is():
    rng = np.random.default_rng(4)
    clean = 1 - ring()
    noisy = np.clip(clean + rng.normal(0, 0.04, clean.shape), 0, 1)
    away = ndimage.distance_transform_edt(ring() == 0) > 2  # the paper, 3 pixels or more from the stroke
    assert ip.ink_map(noisy)[away].max() < 0.05  # the grain left is faint (0.07-0.10 without the filter)
    np.testing.assert_allclose(ip.ink_map(clean), np.maximum(ring() - 0.02, 0) / 0.98, atol=1e-9)


@pytest.mark.parametrize("sd", [0.01, 0.03, 0.08])
def test_a_blank_grainy_or_unevenly_lit_page_has_no_digit(sd):
    rng = np.random.default_rng(5)
    page = lit(np.clip(np.full((150, 200), 0.8) + rng.normal(0, sd, (150, 200)), 0, 1))
    with pytest.raises(DataError, match="no digit found"):
        ip.mnist_like(page)


def test_a_blank_picture_has_no_digit():
    with pytest.raises(DataError, match="blank"):
        ip.ink_map(np.full((30, 30), 0.7) + np.random.default_rng(0).normal(0, 0.005, (30, 30)))


def test_paper_noise_is_below_the_noise_floor():
    rng = np.random.default_rng(1)
    paper = np.clip(rectangle(ink=0.15, background=0.9) + rng.normal(0, 0.01, (60, 80)), 0, 1)
    a = ip.ink_map(paper)
    assert (a[rectangle() == 0] == 0).mean() > 0.999
    inside = rectangle() == 1
    for r, c in [(10, 20), (10, 31), (39, 20), (39, 31)]:
        inside[r, c] = False  # the denoising median rounds a block's four corner pixels off
    assert a[inside].min() > 0.8


def test_specks_are_dropped_and_the_pieces_of_a_digit_are_kept():
    a = rectangle(canvas=(80, 80), top_left=(10, 10), size=(20, 6))
    a[40:60, 10:16] = 1       # a second stroke, apart from the first
    a[75, 75] = 0.5           # dust
    kept = ip.drop_specks(a)
    assert kept[75, 75] == 0
    np.testing.assert_array_equal(kept[:70, :70], a[:70, :70])


def test_the_ink_box_holds_every_pixel_with_more_than_a_faint_fringe_of_ink():
    a = np.zeros((10, 12))
    a[2, 3] = a[7, 9] = 0.2
    a[0, 0] = a[9, 11] = ip.BOX_LEVEL  # fringe
    assert ip.ink_box(a) == (slice(2, 8), slice(3, 10))
    with pytest.raises(DataError, match="no ink"):
        ip.ink_box(np.zeros((5, 5)))


@pytest.mark.parametrize("width", [2, 4, 10, 25])
def test_stroke_width_of_a_band_is_its_width(width):
    band = rectangle(canvas=(300, 100), top_left=(20, 30), size=(260, width))
    assert ip.stroke_width(band) == pytest.approx(width, rel=0.15)


def test_thin_strokes_are_thickened_to_mnist_width_and_thick_ones_left_alone():
    thin = ring(width=3)
    thick = ring(width=30)
    assert ip.thicken(thick) is thick
    grown = ip.thicken(thin)
    rows, cols = ip.ink_box(grown)
    grown = grown[rows, cols]
    assert ip.stroke_width(grown) / max(grown.shape) == pytest.approx(ip.STROKE_TARGET, rel=0.25)


# ----------------------------------------------------------------------------- mnist_like

def test_the_result_is_28x28_float32_in_0_1_with_a_peak_of_one():
    x = ip.mnist_like(ring())
    assert x.shape == (28, 28) and x.dtype == np.float32
    assert x.min() == 0 and x.max() == pytest.approx(1.0)


def test_the_digit_fits_20x20_keeping_its_aspect_ratio():
    x = ip.mnist_like(rectangle(canvas=(100, 100), top_left=(5, 40), size=(80, 20)))  # 4:1, thick enough
    rows, cols = ip.ink_box(x)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (20, 5)


def test_the_centre_of_mass_lands_on_14_14():
    x = ip.mnist_like(rectangle(canvas=(50, 90), top_left=(3, 70), size=(30, 17)))
    cy, cx = ip.centre_of_mass(x)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_a_digit_whose_mass_sits_at_one_end_stays_whole_inside_the_field():
    a = rectangle(canvas=(100, 100), top_left=(10, 40), size=(80, 3))
    a[10:16, 20:80] = 1  # a heavy bar at the top: the mass is high, the box would be pushed down
    x = ip.mnist_like(a)
    assert x[-1].max() == 0 or x[0].max() == 0  # not cut: at least one edge row empty
    assert x.sum() == pytest.approx(ip.mnist_like(np.pad(a, 50)).sum())


def test_position_size_and_polarity_of_the_picture_do_not_matter():
    base = ip.mnist_like(ring())
    moved = ip.mnist_like(np.pad(ring(), ((90, 10), (5, 140))))
    inverted = ip.mnist_like(1 - ring())
    uint8_grey_bg = ip.mnist_like((160 - 120 * ring()).astype(np.uint8))
    bigger = ip.mnist_like(ring(canvas=(400, 320), centre=(200, 160), radii=(140, 100), width=24))
    np.testing.assert_allclose(moved, base, atol=1e-6)
    np.testing.assert_allclose(inverted, base, atol=1e-6)
    np.testing.assert_allclose(uint8_grey_bg, base, atol=0.05)
    np.testing.assert_allclose(bigger, base, atol=0.15)


def test_an_mnist_style_input_keeps_its_shape():
    nine = ring(canvas=(300, 160), radii=(60, 50))
    nine[100:290, 122:134] = 1  # a tail: no symmetry, no centre of mass half-way between pixels
    x = ip.mnist_like(nine)
    again = ip.mnist_like((255 * x).round().astype(np.uint8))
    np.testing.assert_allclose(again, x, atol=0.03)  # the noise floor, 0.02, and rounding


# ----------------------------------------------------------------------------- files

def save(path, pixels, **kwargs):
    Image.fromarray(pixels).save(path, **kwargs)
    return path


DARK_RING = (255 * (1 - ring())).astype(np.uint8)  # a zero in dark ink on white


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1", "I;16"])
def test_every_common_pixel_format_reads_as_its_grey_levels(tmp_path, mode):
    img = Image.fromarray(DARK_RING)
    if mode == "1":  # black and white: a threshold, not a dither
        img = img.point(lambda v: 255 if v > 128 else 0).convert("1", dither=Image.Dither.NONE)
    elif mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    elif mode == "I;16":
        img = Image.fromarray(DARK_RING.astype(np.uint16) * 257)
    elif mode != "L":
        img = img.convert(mode)
    img.save(tmp_path / "digit.png")
    want = np.asarray(img.convert("L") if mode != "I;16" else Image.fromarray(DARK_RING)) / 255
    np.testing.assert_allclose(ip.to_grey(ip.read_image(tmp_path / "digit.png")), want, atol=0.5 / 255)


@pytest.mark.parametrize("suffix,lossy", [(".bmp", False), (".gif", False), (".tiff", False), (".jpg", True),
                                          (".webp", True)])
def test_other_file_formats_read_too(tmp_path, suffix, lossy):
    path = save(tmp_path / f"digit{suffix}", DARK_RING)
    grey = ip.to_grey(ip.read_image(path))
    if lossy:
        assert np.abs(grey - DARK_RING / 255).mean() < 0.01
    else:
        np.testing.assert_allclose(grey, DARK_RING / 255, atol=1e-9)
    assert ip.load_digit(path).shape == (28, 28)


def test_a_jpeg_taken_sideways_is_turned_upright_by_its_exif_orientation(tmp_path):
    grey = (255 * (1 - rectangle(canvas=(100, 60), top_left=(10, 10), size=(80, 8)))).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(np.rot90(grey)))  # stored lying down
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    img.save(tmp_path / "photo.jpg", exif=exif)
    assert ip.read_image(tmp_path / "photo.jpg").shape[:2] == (100, 60)


def test_a_transparent_png_drawing_reads_as_ink_on_paper(tmp_path):
    rgba = np.zeros((200, 160, 4), np.uint8)
    rgba[..., 3] = (255 * ring()).astype(np.uint8)  # black ink, transparency everywhere else
    np.testing.assert_allclose(ip.load_digit(save(tmp_path / "d.png", rgba)), ip.mnist_like(ring()), atol=0.05)


@pytest.mark.parametrize("content,fragment", [
    (b"just some notes\n", "not an image"),
    (b"", "not an image"),
])
def test_a_file_that_is_not_an_image_is_one_error_naming_it(tmp_path, content, fragment):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(DataError, match=fragment) as info:
        ip.load_digit(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_a_truncated_png_is_one_error_naming_it(tmp_path):
    whole = save(tmp_path / "whole.png", (255 * ring()).astype(np.uint8)).read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(DataError, match="cut.png: cannot read the image"):
        ip.load_digit(tmp_path / "cut.png")


def test_missing_files_folders_and_blank_images_are_named(tmp_path):
    with pytest.raises(DataError, match="absent.png: no such file"):
        ip.load_digit(tmp_path / "absent.png")
    with pytest.raises(DataError, match="is a folder"):
        ip.load_digit(tmp_path)
    with pytest.raises(DataError, match="white.png: no digit found: the image is blank"):
        ip.load_digit(save(tmp_path / "white.png", np.full((30, 30), 255, np.uint8)))


@pytest.mark.parametrize("mode", ["L", "RGB", "1", "I;16"])
def test_a_large_picture_is_shrunk_by_a_whole_factor_as_it_is_read(tmp_path, monkeypatch, mode):
    monkeypatch.setattr(ip, "MAX_SIDE", 100)
    if mode == "I;16":
        img = Image.fromarray(DARK_RING.astype(np.uint16) * 257)
    else:
        img = Image.fromarray(DARK_RING).convert(mode)
    img.save(tmp_path / "large.png")  # 160 x 200: shrunk by 2
    pixels = ip.read_image(tmp_path / "large.png")
    assert pixels.shape[:2] == (100, 80)
    if mode == "L":
        np.testing.assert_allclose(pixels, DARK_RING.reshape(100, 2, 80, 2).mean(axis=(1, 3)), atol=1)


def test_a_huge_image_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    monkeypatch.setattr(ip, "MAX_PIXELS", 1000)
    with pytest.raises(DataError, match="too large"):
        ip.load_digit(save(tmp_path / "big.png", np.zeros((40, 40), np.uint8)))


def test_a_folder_gives_its_image_files_by_name(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.txt", ".hidden.png", "d.bmp"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in ip.image_files(tmp_path)] == ["a.jpg", "b.PNG", "d.bmp"]
