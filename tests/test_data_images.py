"""Image roots (folder, zip), bad image files, decompression bombs, and the image modes."""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from vlguard.data import load_vlguard
from vlguard.data.images import FolderImageSource, ZipImageSource, open_image_root, prepare_image
from vlguard.data.sample import sample_dataset_dir
from vlguard.data.vlguard import check_images
from vlguard.errors import ConfigError, ImageLoadError
from vlguard.records import Sample


def png_bytes(
    size: tuple[int, int] = (20, 10), colour: tuple[int, int, int] = (10, 200, 30), mode: str = "RGB"
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else 3).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    data = bytearray(png_bytes((1, 1)))
    # IHDR: length (4) + b'IHDR' (4) at offset 8, then width and height, then the chunk's CRC.
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def make_sample(image: str | None = "pics/a.png") -> Sample:
    return Sample(
        id="r1:safe_safe",
        benchmark="vlguard-test",
        subset="safe_safe",
        prompt="What is this?",
        image=image,
        reference=None,
        category=None,
        subcategory=None,
        should_refuse=False,
        record_id="r1",
    )


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    (root / "pics").mkdir(parents=True)
    (root / "pics" / "a.png").write_bytes(png_bytes())
    (root / "pics" / "palette.png").write_bytes(png_bytes(mode="P"))
    good = png_bytes((64, 64))
    (root / "pics" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "pics" / "text.png").write_text("this is not an image")
    (root / "pics" / "bomb.png").write_bytes(bomb_png(10_000, 10_000))  # 100 M pixels > 64 M limit
    (root / "pics" / "huge_bomb.png").write_bytes(bomb_png(60_000, 60_000))  # beyond Pillow's own limit too
    return root


def test_folder_source_opens_images(image_folder: Path) -> None:
    source = FolderImageSource(image_folder)
    image = source.open("pics/a.png")
    assert image.size == (20, 10) and image.getpixel((0, 0)) == (10, 200, 30)
    assert source.exists("pics/a.png") and not source.exists("pics/missing.png")
    assert source.image_size("pics/a.png") == (20, 10)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("pics/missing.png", "image not found"),
        ("pics/truncated.png", "truncated or corrupt image"),
        ("pics/text.png", "not an image file"),
        ("pics/bomb.png", "refusing to decode a 10000x10000 image"),
        ("pics/huge_bomb.png", "decompression bomb"),
    ],
)
def test_folder_source_bad_files_name_the_file(image_folder: Path, name: str, fragment: str) -> None:
    with pytest.raises(ImageLoadError, match=fragment) as info:
        FolderImageSource(image_folder).open(name)
    assert str(image_folder / name) in str(info.value)


def test_pixel_limit_is_configurable(image_folder: Path) -> None:
    with pytest.raises(ImageLoadError, match="possible decompression bomb"):
        FolderImageSource(image_folder, max_pixels=100).open("pics/a.png")


@pytest.mark.parametrize("path", ["../outside.png", "pics/../../outside.png", "/etc/passwd", "..\\x.png"])
def test_folder_source_refuses_escaping_paths(image_folder: Path, path: str) -> None:
    (image_folder.parent / "outside.png").write_bytes(png_bytes())
    source = FolderImageSource(image_folder)
    with pytest.raises(ImageLoadError):
        source.open(path)
    with pytest.raises(ImageLoadError):
        source.exists(path)


def test_folder_source_refuses_symlink_out_of_root(image_folder: Path) -> None:
    (image_folder.parent / "secret.png").write_bytes(png_bytes())
    (image_folder / "pics" / "link.png").symlink_to(image_folder.parent / "secret.png")
    with pytest.raises(ImageLoadError, match="resolves outside the image root"):
        FolderImageSource(image_folder).open("pics/link.png")


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_zip_source_with_split_prefix_and_without(tmp_path: Path) -> None:
    prefixed = ZipImageSource(make_zip(tmp_path / "test.zip", {"test/pics/a.png": png_bytes()}))
    assert prefixed.exists("pics/a.png") and prefixed.open("pics/a.png").size == (20, 10)
    flat = ZipImageSource(make_zip(tmp_path / "images.zip", {"pics/a.png": png_bytes((5, 7))}))
    assert flat.open("pics/a.png").size == (5, 7) and flat.image_size("pics/a.png") == (5, 7)
    assert not flat.exists("pics/b.png")
    nested = ZipImageSource(make_zip(tmp_path / "test2.zip", {"VLGuard/test/pics/a.png": png_bytes((3, 4))}))
    assert nested.open("pics/a.png").size == (3, 4) and nested.prefix == "VLGuard/test"
    explicit = ZipImageSource(tmp_path / "test2.zip", prefix="other")
    assert not explicit.exists("pics/a.png")


def test_zip_source_bad_members(tmp_path: Path) -> None:
    good = png_bytes((64, 64))
    source = ZipImageSource(
        make_zip(
            tmp_path / "test.zip",
            {"t.png": good[:100], "x.png": b"hello", "bomb.png": bomb_png(10_000, 10_000), "big.png": good},
        ),
        max_member_bytes=len(good) - 1,
    )
    cases = {
        "missing.png": "image not found in the zip",
        "t.png": "truncated or corrupt",
        "x.png": "not an image file",
        "bomb.png": "refusing to decode",
        "big.png": "refusing a",
        "../t.png": "escapes the image root",
    }
    for name, fragment in cases.items():
        with pytest.raises(ImageLoadError, match=fragment) as info:
            source.open(name)
        assert str(tmp_path / "test.zip") in str(info.value)


def test_zip_source_survives_pickling(tmp_path: Path) -> None:
    source = ZipImageSource(make_zip(tmp_path / "test.zip", {"test/a.png": png_bytes()}))
    source.open("a.png")
    clone = pickle.loads(pickle.dumps(source))
    assert clone.open("a.png").size == (20, 10)


def test_open_image_root(tmp_path: Path) -> None:
    assert isinstance(open_image_root(tmp_path), FolderImageSource)
    assert isinstance(open_image_root(make_zip(tmp_path / "a.zip", {"x.png": png_bytes()})), ZipImageSource)
    (tmp_path / "notzip.zip").write_text("nope")
    with pytest.raises(ImageLoadError, match="neither a folder nor a zip"):
        open_image_root(tmp_path / "notzip.zip")
    with pytest.raises(ImageLoadError, match="does not exist"):
        open_image_root(tmp_path / "missing")


def test_load_vlguard_finds_zip_image_root(tmp_path: Path) -> None:
    # The Hub layout: test.json beside test.zip whose members are test/<image path>.
    sample_dir = sample_dataset_dir()
    records = json.loads((sample_dir / "test.json").read_text())
    (tmp_path / "test.json").write_text(json.dumps(records))
    make_zip(
        tmp_path / "test.zip",
        {f"test/{r['image']}": (sample_dir / "test" / r["image"]).read_bytes() for r in records},
    )
    dataset = load_vlguard(tmp_path, "test")
    assert isinstance(dataset.images, ZipImageSource)
    assert check_images(dataset) == []
    sample = dataset.samples()[0]
    from_zip = prepare_image(sample, dataset.images, "original")
    from_folder = Image.open(sample_dir / "test" / records[0]["image"]).convert("RGB")
    assert from_zip is not None and from_zip.tobytes() == from_folder.tobytes()


def test_image_root_override_and_check_images(tmp_path: Path, image_folder: Path) -> None:
    record = {
        "id": "r1",
        "image": "pics/a.png",
        "safe": True,
        "instr-resp": [{"safe_instruction": "What is it?", "response": "A square."}],
    }
    broken = {**record, "id": "r2", "image": "pics/truncated.png"}
    missing = {**record, "id": "r3", "image": "pics/none.png"}
    (tmp_path / "test.json").write_text(json.dumps([record, broken, missing]))
    dataset = load_vlguard(tmp_path, "test", image_root=image_folder)
    assert isinstance(dataset.images, FolderImageSource)
    problems = check_images(dataset)
    assert [(p.record, p.field) for p in problems] == [("r2", "image"), ("r3", "image")]
    assert "truncated" in problems[0].message and "not found" in problems[1].message
    # prepare_image: a corrupt file is an error even when blank substitutes are allowed.
    samples = dataset.samples()
    with pytest.raises(ImageLoadError, match="truncated"):
        prepare_image(samples[1], dataset.images, "original", allow_blank_substitutes=True)
    substitute = prepare_image(
        samples[2], dataset.images, "original", allow_blank_substitutes=True, blank_size=(8, 9)
    )
    assert substitute is not None and substitute.size == (8, 9)


def test_prepare_image_modes(image_folder: Path) -> None:
    source = FolderImageSource(image_folder)
    sample = make_sample("pics/a.png")
    original = prepare_image(sample, source, "original")
    assert original is not None and original.mode == "RGB" and original.size == (20, 10)
    blank = prepare_image(sample, source, "blank", blank_size=(336, 336))
    assert blank is not None and blank.size == (20, 10) and blank.getextrema() == ((255, 255),) * 3
    assert prepare_image(sample, source, "none") is None
    palette = prepare_image(make_sample("pics/palette.png"), source, "original")
    assert palette is not None and palette.mode == "RGB"
    missing = make_sample("pics/gone.png")
    blank_missing = prepare_image(missing, source, "blank", blank_size=(30, 40))
    assert blank_missing is not None and blank_missing.size == (30, 40)
    with pytest.raises(ImageLoadError, match="is missing"):
        prepare_image(missing, source, "original")
    with pytest.raises(ConfigError, match="unknown image mode"):
        prepare_image(sample, source, "grey")  # type: ignore[arg-type]


def test_prepare_image_text_only_sample() -> None:
    text_only = make_sample(image=None)
    assert prepare_image(text_only, None, "original") is None
    blank = prepare_image(text_only, None, "blank", blank_size=(12, 12))
    assert blank is not None and blank.size == (12, 12)


def test_blank_mode_applies_the_pixel_limit_to_the_size_it_reads_from_the_header(tmp_path: Path) -> None:
    # 12000 x 12000 declared by a file of a few dozen bytes: a blank image of that size costs 432 MB
    # (the header alone is read, so the limit must apply there too).
    root = tmp_path / "images"
    (root / "pics").mkdir(parents=True)
    (root / "pics" / "a.png").write_bytes(bomb_png(12_000, 12_000))
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as archive:
        archive.writestr("pics/a.png", bomb_png(12_000, 12_000))
    for source in (FolderImageSource(root), ZipImageSource(tmp_path / "images.zip", prefix="")):
        with pytest.raises(ImageLoadError, match=r"12000x12000.*possible decompression bomb"):
            source.image_size("pics/a.png")
        with pytest.raises(ImageLoadError, match="12000x12000"):
            prepare_image(make_sample(), source, "blank")
    # Within the limit the blank image keeps the original's size.
    (root / "pics" / "ok.png").write_bytes(bomb_png(300, 200))
    blank = prepare_image(make_sample("pics/ok.png"), FolderImageSource(root), "blank")
    assert blank is not None and blank.size == (300, 200)


def test_blank_mode_limits_image_sources_of_other_packages_too() -> None:
    class Declares:
        max_pixels = 1000

        def exists(self, path: str) -> bool:
            return True

        def image_size(self, path: str) -> tuple[int, int]:
            return (12_000, 12_000)

        def open(self, path: str) -> Image.Image:
            raise AssertionError("not needed for the size")

    with pytest.raises(ImageLoadError, match="12000x12000"):
        prepare_image(make_sample(), Declares(), "blank")  # type: ignore[arg-type]


def test_in_memory_images_have_the_same_pixel_limit_in_blank_mode() -> None:
    from vlguard.data.images import MemoryImageSource

    source = MemoryImageSource({"pics/a.png": bomb_png(12_000, 12_000)}, origin="parquet")
    with pytest.raises(ImageLoadError, match="12000x12000"):
        prepare_image(make_sample(), source, "blank")
