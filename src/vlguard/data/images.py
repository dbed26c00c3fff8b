"""Image roots (a folder or a zip file) and the image modes used at evaluation time.

Both roots open images by a path relative to the root and refuse anything unsafe: paths that escape
the root, decompression bombs (a pixel limit checked from the header, before any pixel is decoded),
oversized zip members, truncated files and non-images. Every failure is an ``ImageLoadError`` that
names the file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from PIL import Image, UnidentifiedImageError

from vlguard.errors import ConfigError, ImageLoadError
from vlguard.records import ImageMode, Sample

logger = logging.getLogger(__name__)

# 64 megapixels: far above any VLGuard image (photos, memes, ads), far below what exhausts memory.
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
# A zip member that inflates beyond this is refused before it is read (zip bombs).
DEFAULT_MAX_MEMBER_BYTES = 256 * 1024 * 1024


class ImageSource(Protocol):
    """Opens images by their path relative to a root (a folder or a zip file).

    Implementations refuse paths that escape the root, decompression bombs and non-images, raising
    ``vlguard.errors.ImageLoadError`` with the path in the message.
    """

    def open(self, relative_path: str) -> Image.Image:
        """The decoded image at ``relative_path`` (``ImageLoadError`` when missing, unsafe or corrupt)."""
        ...

    def exists(self, relative_path: str) -> bool:
        """Whether ``relative_path`` names an image under the root (without decoding it)."""
        ...


def unsafe_path_reason(path: str) -> str | None:
    """Why ``path`` is not a safe path relative to an image root, or None when it is safe.

    Refused: empty paths, absolute paths (POSIX or Windows), backslashes, NUL bytes and ``..`` parts.
    """
    if not path:
        return "empty image path"
    if "\x00" in path:
        return "image path contains a NUL byte"
    if "\\" in path:
        return f"image path {path!r} contains a backslash; use '/' separators"
    if path.startswith("/") or PurePosixPath(path).is_absolute() or (len(path) > 1 and path[1] == ":"):
        return f"image path {path!r} is absolute; it must be relative to the image root"
    if ".." in PurePosixPath(path).parts:
        return f"image path {path!r} escapes the image root ('..')"
    return None


def _check_path(path: str, root: str) -> None:
    reason = unsafe_path_reason(path)
    if reason is not None:
        raise ImageLoadError(f"{root}: {reason}")


@contextlib.contextmanager
def _pillow_errors(name: str) -> Iterator[None]:
    """Turn Pillow's failures into ``ImageLoadError`` naming the file; our own pixel limit decides bombs."""
    try:
        with warnings.catch_warnings():
            # Our own pixel limit decides; Pillow's warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"{name}: refused as a decompression bomb: {err}") from err
    except UnidentifiedImageError as err:
        raise ImageLoadError(f"{name}: not an image file (Pillow cannot identify it)") from err
    except (OSError, SyntaxError, ValueError) as err:
        # Pillow reports truncated or corrupt data as OSError (sometimes SyntaxError / ValueError).
        raise ImageLoadError(f"{name}: truncated or corrupt image: {err}") from err


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageLoadError(
            f"{name}: refusing to decode a {width}x{height} image "
            f"({width * height:,} pixels > limit {max_pixels:,}; possible decompression bomb)"
        )


def _decode(stream: IO[bytes], name: str, max_pixels: int) -> Image.Image:
    """Decode one image, refusing bombs from the header size before decoding the pixels."""
    with _pillow_errors(name):
        image = Image.open(stream)
        _check_pixels(image.size, name, max_pixels)
        image.load()
    return image


def _header_size(stream: IO[bytes], name: str, max_pixels: int) -> tuple[int, int]:
    """Width and height read from the header only (no pixel decoding), under the same pixel limit.

    The limit matters here too: the blank image mode allocates a white image of this size, so a 17 KB
    file declaring 12000x12000 pixels would cost gigabytes without a single pixel decoded.
    """
    with _pillow_errors(name), Image.open(stream) as image:
        size: tuple[int, int] = image.size
    _check_pixels(size, name, max_pixels)
    return size


class FolderImageSource:
    """Images in a folder, addressed by paths relative to it."""

    def __init__(self, root: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.root = Path(root)
        self.max_pixels = max_pixels
        if not self.root.is_dir():
            raise ImageLoadError(f"image root {self.root} is not a folder")

    def __repr__(self) -> str:
        return f"FolderImageSource({str(self.root)!r})"

    def _resolve(self, relative_path: str) -> Path:
        _check_path(relative_path, str(self.root))
        path = self.root / relative_path
        # A symlink inside the root could still point outside it.
        if path.exists() and not path.resolve().is_relative_to(self.root.resolve()):
            raise ImageLoadError(f"{path}: resolves outside the image root {self.root}")
        return path

    def exists(self, relative_path: str) -> bool:
        """Whether the image file exists (the path must be safe)."""
        return self._resolve(relative_path).is_file()

    def open(self, relative_path: str) -> Image.Image:
        """Decode one image; ``ImageLoadError`` naming the file when it is missing or bad."""
        path = self._resolve(relative_path)
        if not path.is_file():
            raise ImageLoadError(f"{path}: image not found")
        with path.open("rb") as stream:
            return _decode(stream, str(path), self.max_pixels)

    def image_size(self, relative_path: str) -> tuple[int, int]:
        """Width and height from the file header, without decoding the pixels."""
        path = self._resolve(relative_path)
        if not path.is_file():
            raise ImageLoadError(f"{path}: image not found")
        with path.open("rb") as stream:
            return _header_size(stream, str(path), self.max_pixels)


class ZipImageSource:
    """Images inside a zip file (VLGuard ships ``train.zip`` / ``test.zip``).

    Paths are looked up as given, then under ``prefix`` (by default the zip's stem, because
    ``test.zip`` holds ``test/bad_ads/...`` while records say ``bad_ads/...``); without an explicit
    prefix, another top folder is learned from the first path that is found under it. The zip is opened
    lazily, once per process, so the source can be pickled into data-loader workers.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        prefix: str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    ) -> None:
        self.path = Path(path)
        self.prefix = (Path(path).stem if prefix is None else prefix).strip("/")
        self._prefix_checked = prefix is not None  # an explicit prefix is never second-guessed
        self.max_pixels = max_pixels
        self.max_member_bytes = max_member_bytes
        self._zip: zipfile.ZipFile | None = None
        self._names: set[str] = set()
        self._pid = -1
        self._lock = threading.Lock()
        self._handle()  # fail early on a missing or broken zip

    def __repr__(self) -> str:
        return f"ZipImageSource({str(self.path)!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_zip=None, _names=set(), _pid=-1, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _handle(self) -> zipfile.ZipFile:
        with self._lock:
            if self._zip is None or self._pid != os.getpid():
                try:
                    self._zip = zipfile.ZipFile(self.path)
                except FileNotFoundError as err:
                    raise ImageLoadError(f"{self.path}: image zip not found") from err
                except (zipfile.BadZipFile, OSError) as err:
                    raise ImageLoadError(f"{self.path}: not a readable zip file: {err}") from err
                self._names = set(self._zip.namelist())
                self._pid = os.getpid()
            return self._zip

    def _member(self, relative_path: str) -> str | None:
        _check_path(relative_path, str(self.path))
        self._handle()
        for name in (relative_path, f"{self.prefix}/{relative_path}" if self.prefix else None):
            if name is not None and name in self._names:
                return name
        if not self._prefix_checked:
            # An unexpected top folder (e.g. 'VLGuard/test/...'): learn it once from a member that ends
            # with the path, so one zip layout we did not foresee still works.
            suffix = "/" + relative_path
            found = next((n for n in self._names if n.endswith(suffix)), None)
            if found is not None:
                self.prefix = found[: -len(suffix)]
                self._prefix_checked = True
                logger.info("%s: images found under %s/", self.path, self.prefix)
                return found
        return None

    def exists(self, relative_path: str) -> bool:
        """Whether the zip holds the image (the path must be safe)."""
        return self._member(relative_path) is not None

    def _read(self, relative_path: str) -> tuple[bytes, str]:
        member = self._member(relative_path)
        name = f"{self.path}:{relative_path}"
        if member is None:
            raise ImageLoadError(f"{name}: image not found in the zip")
        handle = self._handle()
        info = handle.getinfo(member)
        if info.file_size > self.max_member_bytes:
            raise ImageLoadError(
                f"{name}: refusing a {info.file_size:,}-byte member (limit {self.max_member_bytes:,})"
            )
        try:
            with self._lock:
                return handle.read(member), name
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise ImageLoadError(f"{name}: cannot read from the zip: {err}") from err

    def open(self, relative_path: str) -> Image.Image:
        """Decode one image; ``ImageLoadError`` naming the zip and path when it is missing or bad."""
        data, name = self._read(relative_path)
        return _decode(io.BytesIO(data), name, self.max_pixels)

    def image_size(self, relative_path: str) -> tuple[int, int]:
        """Width and height from the image header."""
        data, name = self._read(relative_path)
        return _header_size(io.BytesIO(data), name, self.max_pixels)


def open_image_root(path: str | Path) -> FolderImageSource | ZipImageSource:
    """An image root from a folder or a ``.zip`` file."""
    path = Path(path)
    if path.is_dir():
        return FolderImageSource(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return ZipImageSource(path)
    if path.exists():
        raise ImageLoadError(f"image root {path} is neither a folder nor a zip file")
    raise ImageLoadError(f"image root {path} does not exist")


def blank_image(size: tuple[int, int]) -> Image.Image:
    """A white RGB image of ``size`` (width, height)."""
    return Image.new("RGB", size, (255, 255, 255))


def _original_size(images: ImageSource, relative_path: str) -> tuple[int, int]:
    size_of = getattr(images, "image_size", None)
    if callable(size_of):
        width, height = size_of(relative_path)
        size = (int(width), int(height))
    else:
        size = images.open(relative_path).size
    # Also for image sources of other packages, whose image_size may not apply a limit.
    _check_pixels(size, f"{images!r}: {relative_path}", getattr(images, "max_pixels", DEFAULT_MAX_PIXELS))
    return size


def prepare_image(
    sample: Sample,
    images: ImageSource | None,
    mode: ImageMode,
    *,
    allow_blank_substitutes: bool = False,
    blank_size: tuple[int, int] = (336, 336),
) -> Image.Image | None:
    """The image to give the model for ``sample`` under an image mode.

    - ``none``: None (text only).
    - ``original``: the sample's image as RGB. A missing image (no image root, or not in it) raises
      ``ImageLoadError`` unless ``allow_blank_substitutes``, which gives a white ``blank_size`` image
      instead (logged). A truncated or non-image file always raises. A sample without an image
      (text-only benchmarks) gives None.
    - ``blank``: a white image of the original's size when the original is available, else of
      ``blank_size``; an original over the pixel limit raises ``ImageLoadError`` as in ``original``
      mode (its size is read from the header, and the blank image would be as large).
    """
    if mode == "none":
        return None
    if mode not in ("original", "blank"):
        raise ConfigError(f"unknown image mode {mode!r}; choose from original, blank, none")
    available = sample.image is not None and images is not None and images.exists(sample.image)
    if mode == "blank":
        if available:
            assert images is not None and sample.image is not None
            return blank_image(_original_size(images, sample.image))
        return blank_image(blank_size)
    if sample.image is None:
        return None
    if not available:
        where = "no image root was given" if images is None else f"it is not in {images!r}"
        if allow_blank_substitutes:
            # Info, not warning: the caller asked for substitutes, and a run may need one per sample.
            logger.info(
                "image %s of sample %s is missing (%s); using a blank image", sample.image, sample.id, where
            )
            return blank_image(blank_size)
        raise ImageLoadError(
            f"image {sample.image} of sample {sample.id} is missing: {where} "
            "(use blank substitutes explicitly, or image mode 'blank' or 'none')"
        )
    assert images is not None
    image = images.open(sample.image)
    return image if image.mode == "RGB" else image.convert("RGB")


class MemoryImageSource:
    """Encoded images held in memory (e.g. the image column of a parquet file), addressed by name.

    The same refusals as the file-based roots: unsafe names, decompression bombs, non-images.
    """

    def __init__(
        self, images: dict[str, bytes], *, origin: str, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        self._images = dict(images)
        self.origin = origin  # where the bytes came from, for messages (a parquet file, a Hub repo)
        self.max_pixels = max_pixels

    def __repr__(self) -> str:
        return f"MemoryImageSource({self.origin!r}, {len(self._images)} images)"

    def _bytes(self, relative_path: str) -> tuple[bytes, str]:
        _check_path(relative_path, self.origin)
        name = f"{self.origin}:{relative_path}"
        if relative_path not in self._images:
            raise ImageLoadError(f"{name}: image not found")
        return self._images[relative_path], name

    def exists(self, relative_path: str) -> bool:
        """Whether an image of that name is held (the name must be safe)."""
        _check_path(relative_path, self.origin)
        return relative_path in self._images

    def open(self, relative_path: str) -> Image.Image:
        """Decode one image; ``ImageLoadError`` naming it when it is missing or bad."""
        data, name = self._bytes(relative_path)
        return _decode(io.BytesIO(data), name, self.max_pixels)

    def image_size(self, relative_path: str) -> tuple[int, int]:
        """Width and height from the image header."""
        data, name = self._bytes(relative_path)
        return _header_size(io.BytesIO(data), name, self.max_pixels)
