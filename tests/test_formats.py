"""Round trips, determinism and error messages of medusa_mtl.data.formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image, ImageOps

from medusa_mtl.data import formats
from medusa_mtl.data.formats import IGNORE_INDEX, DataFormatError


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ---------------------------------------------------------------------------------------------------- NYUD


def test_nyud_round_trip(nyud_root: Path, nyud_arrays) -> None:
    a = nyud_arrays(0)
    s = formats.read_nyud_sample(nyud_root, "n0", ["semseg", "depth", "normals", "edge"])
    assert s["image"].dtype == np.uint8 and s["image"].shape == (32, 40, 3)
    assert np.abs(s["image"].astype(int) - a["image"].astype(int)).mean() < 3  # JPEG is lossy
    # 0 -> 255 (ignore), k -> k-1
    assert s["semseg"].dtype == np.uint8
    expected = np.where(a["semseg"] == 0, IGNORE_INDEX, a["semseg"].astype(int) - 1)
    np.testing.assert_array_equal(s["semseg"], expected)
    assert s["semseg"][0, 0] == 255 and s["semseg"][0, -1] == 39
    assert s["depth"].dtype == np.float32
    np.testing.assert_array_equal(s["depth"], a["depth"])
    assert s["normals"].dtype == np.float32 and s["normals"].shape == (32, 40, 3)
    np.testing.assert_allclose(s["normals"], a["normals"], atol=1e-6)
    assert (s["normals"][1, :3] == 0).all()
    np.testing.assert_array_equal(s["edge"], a["edge"])
    assert s["edge"].dtype == np.float32


def test_nyud_label_of_other_plausible_size_is_resized(tmp_path: Path, nyud_arrays) -> None:
    root = tmp_path / "N"
    a = nyud_arrays(1)
    formats.write_nyud_sample(root, "x", **a)
    half = a["semseg"][::2, ::2]
    Image.fromarray(half).save(root / "segmentation" / "x.png")
    np.save(root / "normals" / "x.npy", a["normals"][::2, ::2])
    s = formats.read_nyud_sample(root, "x", ["semseg", "normals"])
    assert s["semseg"].shape == (32, 40)
    assert s["normals"].shape == (32, 40, 3)
    norm = np.linalg.norm(s["normals"], axis=-1)
    assert np.allclose(norm[norm > 0], 1.0, atol=1e-5)


def test_nyud_wrong_label_shape_names_file(tmp_path: Path, nyud_arrays) -> None:
    root = tmp_path / "N"
    formats.write_nyud_sample(root, "x", **nyud_arrays(1))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "segmentation" / "x.png")
    with pytest.raises(DataFormatError, match=r"segmentation[/\\]x\.png.*aspect ratio"):
        formats.read_nyud_sample(root, "x", ["semseg"])
    np.save(root / "depth" / "x.npy", np.zeros((32, 40, 2), np.float32))
    with pytest.raises(DataFormatError, match=r"depth[/\\]x\.npy.*H x W"):
        formats.read_nyud_sample(root, "x", ["depth"])
    np.save(root / "normals" / "x.npy", np.zeros((32, 40, 2), np.float32))
    with pytest.raises(DataFormatError, match=r"normals[/\\]x\.npy.*H x W x 3"):
        formats.read_nyud_sample(root, "x", ["normals"])


def test_nyud_seg_value_out_of_range(tmp_path: Path, nyud_arrays) -> None:
    root = tmp_path / "N"
    formats.write_nyud_sample(root, "x", **nyud_arrays(1))
    seg = np.zeros((32, 40), np.uint8)
    seg[3, 3] = 57
    Image.fromarray(seg).save(root / "segmentation" / "x.png")
    with pytest.raises(DataFormatError, match=r"segmentation[/\\]x\.png.*\[57\].*0\.\.40"):
        formats.read_nyud_semseg(root / "segmentation" / "x.png")


def test_nyud_nan_depth_and_normals(tmp_path: Path, nyud_arrays) -> None:
    root = tmp_path / "N"
    a = nyud_arrays(1)
    formats.write_nyud_sample(root, "x", **a)
    d = a["depth"].copy()
    d[2, 2] = np.nan
    np.save(root / "depth" / "x.npy", d)
    with pytest.raises(DataFormatError, match=r"depth[/\\]x\.npy.*NaN"):
        formats.read_depth(root / "depth" / "x.npy")
    n = a["normals"].copy()
    n[2, 2, 0] = np.inf
    np.save(root / "normals" / "x.npy", n)
    with pytest.raises(DataFormatError, match=r"normals[/\\]x\.npy.*NaN/inf"):
        formats.read_nyud_normals(root / "normals" / "x.npy")
    np.save(root / "depth" / "x.npy", -a["depth"])
    with pytest.raises(DataFormatError, match="negative depth"):
        formats.read_depth(root / "depth" / "x.npy")


def test_nyud_edge_values_checked(tmp_path: Path, nyud_arrays) -> None:
    root = tmp_path / "N"
    formats.write_nyud_sample(root, "x", **nyud_arrays(1))
    np.save(root / "edge" / "x.npy", np.full((32, 40), 0.5, np.float32))
    with pytest.raises(DataFormatError, match=r"edge[/\\]x\.npy.*only 0 and 1"):
        formats.read_nyud_edge(root / "edge" / "x.npy")


def test_writer_rejects_bad_input(tmp_path: Path, nyud_arrays) -> None:
    a = nyud_arrays(1)
    a["semseg"] = a["semseg"].copy()
    a["semseg"][0, 0] = 41
    with pytest.raises(ValueError, match="semseg of x"):
        formats.write_nyud_sample(tmp_path, "x", **a)
    with pytest.raises(ValueError, match="invalid sample id"):
        formats.write_nyud_sample(tmp_path, "a/b", **nyud_arrays(1))


# ---------------------------------------------------------------------------------------------------- files


def test_missing_files_name_the_file(tmp_path: Path) -> None:
    for fn, name in [
        (formats.read_image, "a.jpg"),
        (formats.read_depth, "a.npy"),
        (formats.read_nyud_semseg, "a.png"),
        (formats.read_labelmap, "a.mat"),
        (formats.read_human_parts, "b.mat"),
    ]:
        with pytest.raises(DataFormatError, match=r"missing file") as e:
            fn(tmp_path / name)
        assert str(tmp_path / name) in str(e.value)


@pytest.mark.parametrize(
    "rel, reader",
    [
        ("images/n0.jpg", formats.read_image),
        ("segmentation/n0.png", formats.read_nyud_semseg),
        ("depth/n0.npy", formats.read_depth),
        ("normals/n0.npy", formats.read_nyud_normals),
    ],
)
def test_truncated_nyud_files(nyud_root: Path, rel: str, reader) -> None:
    path = nyud_root / rel
    _truncate(path)
    with pytest.raises(DataFormatError, match="unreadable or truncated") as e:
        reader(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "rel, reader",
    [
        ("human_parts/p0.mat", formats.read_human_parts),
        ("pascal-context/trainval/p0.mat", formats.read_labelmap),
        ("sal_distill/p0.png", formats.read_sal),
        ("JPEGImages/p0.jpg", formats.read_image),
    ],
)
def test_truncated_pascal_files(pascal_root: Path, rel: str, reader) -> None:
    path = pascal_root / rel
    _truncate(path, 0.6)
    with pytest.raises(DataFormatError) as e:
        reader(path)
    assert str(path) in str(e.value)


def test_garbage_mat_file(tmp_path: Path) -> None:
    p = tmp_path / "x.mat"
    p.write_bytes(b"not a mat file at all" * 3)
    with pytest.raises(DataFormatError, match=r"x\.mat.*unreadable"):
        formats.read_labelmap(p)


def test_writers_are_deterministic(tmp_path: Path, nyud_arrays, pascal_arrays) -> None:
    for r in ("a", "b"):
        formats.write_nyud_sample(tmp_path / r / "N", "x", **nyud_arrays(3))
        formats.write_pascal_sample(tmp_path / r / "P", "x", **pascal_arrays(3))
        formats.write_pascal_splits(tmp_path / r / "P", ["x"], [])
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 13  # 5 NYUD + 6 PASCAL + 2 split files; no temp files left
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    head = (tmp_path / "a" / "P" / "human_parts" / "x.mat").read_bytes()[:116]
    assert b"Created on" not in head and head.startswith(b"MATLAB 5.0 MAT-file")


# ---------------------------------------------------------------------------------------------------- PASCAL


def test_pascal_round_trip(pascal_root: Path, pascal_arrays) -> None:
    a = pascal_arrays(0)
    s = formats.read_pascal_sample(pascal_root, "p0", ["semseg", "human_parts", "sal", "normals", "edge"])
    assert s["image"].shape == (32, 40, 3)
    np.testing.assert_array_equal(s["semseg"], a["semseg"])
    assert s["semseg"].dtype == np.uint8 and s["semseg"][0, 0] == 255
    np.testing.assert_array_equal(s["sal"], (a["sal"] > 127).astype(np.float32))
    assert s["sal"].dtype == np.float32
    # normals: valid only where LabelMap != 0, unit there, close to what was written
    valid = a["labelmap"] != 0
    n = s["normals"]
    assert n.dtype == np.float32 and n.shape == (32, 40, 3)
    assert (n[~valid] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(n[valid], axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(n[valid], a["normals"][valid], atol=0.01)
    assert s["edge"].dtype == np.float32 and set(np.unique(s["edge"])) <= {0.0, 1.0}


def test_voc12_semseg_preferred(pascal_root: Path) -> None:
    voc = pascal_root / "semseg" / "VOC12"
    voc.mkdir(parents=True)
    Image.fromarray(np.full((32, 40), 7, np.uint8)).save(voc / "p0.png")
    s = formats.read_pascal_sample(pascal_root, "p0", ["semseg"])
    assert (s["semseg"] == 7).all()
    Image.fromarray(np.full((32, 40), 21, np.uint8)).save(voc / "p0.png")
    with pytest.raises(DataFormatError, match=r"VOC12[/\\]p0\.png.*0\.\.20 or 255"):
        formats.read_pascal_sample(pascal_root, "p0", ["semseg"])


def test_sal_threshold(tmp_path: Path) -> None:
    p = tmp_path / "s.png"
    Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8)).save(p)
    np.testing.assert_array_equal(formats.read_sal(p), [[0, 0, 1, 1]])


def test_human_parts_grouping(tmp_path: Path, pascal_arrays) -> None:
    h, w = 8, 30
    masks = {}
    names = sorted(formats.PART_GROUPS)
    assert len(names) == 24
    person = np.zeros((h, w), bool)
    person[:, :26] = True
    for j, name in enumerate(names):
        m = np.zeros((h, w), bool)
        m[:, j] = True
        masks[name] = m
    other = np.zeros((h, w), bool)
    other[:, 27:] = True
    a = pascal_arrays(0, h, w)
    a["persons"] = [{"mask": person, "parts": masks}, {"mask": other, "class_id": 12, "parts": {}}]
    formats.write_pascal_sample(tmp_path, "x", **a)
    lab = formats.read_human_parts(tmp_path / "human_parts" / "x.mat")
    assert lab.dtype == np.uint8 and lab.shape == (h, w)
    expected_groups = {
        1: {"hair", "head", "lear", "lebrow", "leye", "mouth", "nose", "rear", "rebrow", "reye"},
        2: {"neck", "torso"},
        3: {"luarm", "ruarm"},
        4: {"lhand", "llarm", "rhand", "rlarm"},
        5: {"luleg", "ruleg"},
        6: {"lfoot", "llleg", "rfoot", "rlleg"},
    }
    for j, name in enumerate(names):
        cls = next(c for c, g in expected_groups.items() if name in g)
        assert (lab[:, j] == cls).all(), name
    assert (lab[:, 24:26] == formats.PERSON_WITHOUT_PART).all()  # inside the person, no part: ignore
    assert (lab[:, 26:] == 0).all()  # background, and the non-person object (class 12) is background
    assert formats.has_person(tmp_path, "x")


def test_human_parts_without_person_is_all_ignore(pascal_root: Path) -> None:
    s = formats.read_pascal_sample(pascal_root, "p1", ["human_parts"])
    assert s["human_parts"].shape == (32, 40) and (s["human_parts"] == IGNORE_INDEX).all()
    assert not formats.has_person(pascal_root, "p1")
    s0 = formats.read_pascal_sample(pascal_root, "p0", ["human_parts"])
    assert set(np.unique(s0["human_parts"])) == {0, 1, 2, 6, 255}


def _write_anno(path: Path, class_id: int, part_name: str) -> None:
    mask = np.ones((4, 5), np.uint8)
    parts = np.empty((1, 1), dtype=[("part_name", "O"), ("mask", "O")])
    parts[0, 0] = (part_name, mask)
    objects = np.empty((1, 1), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    objects[0, 0] = ("person", np.array([[class_id]]), mask, parts)
    anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = ("x", objects)
    sio.savemat(path, {"anno": anno})


def test_human_parts_bad_values(tmp_path: Path) -> None:
    p = tmp_path / "bad.mat"
    _write_anno(p, 23, "head")
    with pytest.raises(DataFormatError, match=r"bad\.mat.*class id 23 out of range"):
        formats.read_human_parts(p)
    _write_anno(p, 15, "tail")
    with pytest.raises(DataFormatError, match=r"bad\.mat.*unknown person part name 'tail'"):
        formats.read_human_parts(p)
    sio.savemat(p, {"something": np.zeros(3)})
    with pytest.raises(DataFormatError, match=r"bad\.mat.*no variable 'anno'"):
        formats.read_human_parts(p)


def test_edges_from_labelmap() -> None:
    lab = np.zeros((12, 16), np.int32)
    lab[:, 8:] = 3
    e = formats.edges_from_labelmap(lab)
    assert e.dtype == np.float32
    # one-pixel-wide vertical line at the boundary (columns 7|8), full height
    cols = np.nonzero(e)[1]
    assert set(cols) <= {7, 8}
    assert (e.sum(axis=1) == 1).all()
    # a constant map has no edge; a rectangle gives a closed thin contour
    assert formats.edges_from_labelmap(np.full((8, 8), 5)).sum() == 0
    box = np.zeros((20, 20), np.int32)
    box[5:15, 5:15] = 2
    eb = formats.edges_from_labelmap(box)
    assert eb[10].sum() == 2 and eb[:, 10].sum() == 2
    assert eb[:4].sum() == 0 and eb[16:].sum() == 0


def test_labelmap_out_of_range(tmp_path: Path) -> None:
    p = tmp_path / "lm.mat"
    sio.savemat(p, {"LabelMap": np.full((4, 4), 500, np.uint16)})
    with pytest.raises(DataFormatError, match=r"lm\.mat.*out of range"):
        formats.read_labelmap(p)


def test_split_files(nyud_root: Path, tmp_path: Path) -> None:
    assert formats.read_split(nyud_root, "nyud", "train") == ["n0", "n1", "n2"]
    assert formats.read_split(nyud_root, "nyud", "val") == ["n3", "n4"]
    with pytest.raises(DataFormatError, match=r"gt_sets[/\\]train\.txt.*missing split file"):
        formats.read_split(tmp_path, "nyud", "train")
    with pytest.raises(DataFormatError, match=r"ImageSets[/\\]Context[/\\]val\.txt"):
        formats.read_split(tmp_path, "pascal", "val")
    with pytest.raises(ValueError, match="unknown split 'test'"):
        formats.read_split(nyud_root, "nyud", "test")


def test_unknown_task_in_reader(nyud_root: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown NYUD task 'sal'.*semseg"):
        formats.read_nyud_sample(nyud_root, "n0", ["sal"])


def test_read_image_scales_16_bit_gray_instead_of_clipping(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 64 * 32).round().astype(np.uint16).reshape(32, 64)
    Image.fromarray(ramp).save(tmp_path / "g16.png")  # a 16-bit grayscale PNG
    arr = formats.read_image(tmp_path / "g16.png")
    assert arr.shape == (32, 64, 3) and arr.dtype == np.uint8
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all()
    np.testing.assert_allclose(arr[..., 0].astype(float), ramp / 257.0, atol=0.51)
    assert arr.min() == 0 and arr.max() == 255 and 120 < arr.mean() < 135  # PIL's convert("RGB") gave ~254
    with Image.open(tmp_path / "g16.png") as im:  # the same conversion for a PIL image given to the Predictor
        np.testing.assert_array_equal(formats.pil_to_rgb(im), arr)


def test_read_image_applies_the_exif_orientation(tmp_path: Path) -> None:
    # a phone photo stored sideways (Orientation 6: rotate 90 degrees clockwise to display) was read as stored: its
    # labels, drawn on the displayed 70x90 picture, were reported as the wrong size and predictions came out sideways
    from medusa_mtl.data.formats import read_image

    shown = np.zeros((90, 70, 3), np.uint8)  # H x W as displayed
    shown[:10, :, 0] = 255  # a red band along the displayed top
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)  # what the camera wrote: 70 x 90
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    arr = read_image(tmp_path / "photo.jpg")
    assert arr.shape == (90, 70, 3)
    assert arr[:10, :, 0].mean() > 200 and arr[20:, :, 0].mean() < 50
    # the Predictor given the opened file sees the same picture (it got the stored, sideways 70x90 one, so
    # predict("photo.jpg") and predict(Image.open("photo.jpg")) gave outputs of transposed shapes)
    from medusa_mtl.engine.predictor import as_rgb_array

    with Image.open(tmp_path / "photo.jpg") as im:
        np.testing.assert_array_equal(as_rgb_array(im), arr)
        upright = ImageOps.exif_transpose(im)  # already turned by the user: not turned again
    np.testing.assert_array_equal(as_rgb_array(upright), arr)


@pytest.mark.parametrize("mode", ["1", "P"])
def test_saliency_png_saved_as_1_bit_or_palette_is_read_by_its_gray_level(tmp_path: Path, mode: str) -> None:
    # both read as all background: the raw values 1 / palette index 1 are below 0.5 * 255
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    path = tmp_path / "s.png"
    if mode == "1":
        Image.fromarray(mask).save(path)
    else:
        im = Image.fromarray(mask.astype(np.uint8), mode="P")
        im.putpalette([0, 0, 0, 255, 255, 255])
        im.save(path)
    assert np.array_equal(formats.read_sal(path), mask.astype(np.float32))


def test_split_files_refuse_repeated_ids_and_ignore_a_byte_order_mark(tmp_path: Path) -> None:
    # a repeated id was trained on / scored twice in the release layouts; a BOM made the first id "\ufeff0001"
    split = formats.split_path(tmp_path, "nyud", "val")
    split.parent.mkdir(parents=True)
    split.write_text("\ufeff0001\r\n0002\r\n", encoding="utf-8")
    assert formats.read_split(tmp_path, "nyud", "val") == ["0001", "0002"]
    split.write_text("0007\n0008\n0007\n")
    with pytest.raises(DataFormatError, match="id '0007' is listed twice"):
        formats.read_split(tmp_path, "nyud", "val")


def test_integer_depth_is_refused_as_probably_millimetres(tmp_path: Path) -> None:
    # uint16 millimetres were read as metres (up to 8999 m)
    np.save(tmp_path / "d.npy", np.full((4, 4), 2500, np.uint16))
    with pytest.raises(DataFormatError, match=r"integer depth \(dtype uint16, values up to 2500\); expected float"):
        formats.read_depth(tmp_path / "d.npy")
