"""Where VLGuard's files come from: a local folder, or the Hub dataset through huggingface_hub.

A local folder holds ``train.json`` / ``test.json`` (and ``gpt4_safe_safes.json``) plus the images, as
folders (``train/``, ``test/``) or as the zip files of the Hub (``train.zip``, ``test.zip``). A Hub
source is a dataset repo id (``ys-zong/VLGuard``) and an optional revision; its files are downloaded
into (or, offline, read from) the huggingface_hub cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vlguard.errors import VLGuardError

logger = logging.getLogger(__name__)

DEFAULT_HUB_REPO = "ys-zong/VLGuard"
REFERENCES_FILE = "gpt4_safe_safes.json"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class DataSourceError(VLGuardError):
    """A data source cannot be found or read (missing folder or file, unknown Hub repo or revision)."""


@dataclass(frozen=True)
class ResolvedFiles:
    """The local files of one split, wherever they came from."""

    kind: str  # "local" or "hub"
    location: str  # folder / file path, or repo id
    revision: str | None  # the revision asked for (hub)
    commit: str | None  # the commit the revision resolved to (hub)
    split_file: Path
    references_file: Path | None
    image_root: Path | None

    def describe(self) -> dict[str, Any]:
        """The source as recorded in run manifests: kind, location, revision and file hashes."""
        files = {self.split_file.name: sha256_file(self.split_file)}
        if self.references_file is not None:
            files[self.references_file.name] = sha256_file(self.references_file)
        described: dict[str, Any] = {"kind": self.kind}
        described["path" if self.kind == "local" else "repo_id"] = self.location
        described.update(revision=self.revision, commit=self.commit, sha256=files)
        described["image_root"] = str(self.image_root) if self.image_root is not None else None
        return described


def sha256_file(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def looks_like_repo_id(source: str) -> bool:
    """Whether ``source`` has the shape of a Hub repo id (``owner/name``)."""
    return bool(_REPO_ID.match(source))


def hub_dataset(repo_id: str, revision: str | None) -> str:
    """``Hub dataset owner/name at revision R``: how messages name a Hub dataset."""
    return f"Hub dataset {repo_id}" + (f" at revision {revision}" if revision else "")


@contextlib.contextmanager
def hub_errors(
    where: str,
    repo_id: str,
    *,
    repo_type: Literal["dataset", "model"] = "dataset",
    filename: str | None = None,
    error: type[VLGuardError] = DataSourceError,
    hint: str = "",
) -> Iterator[None]:
    """Turn what huggingface_hub raises while fetching from ``repo_id`` into one line ``error``.

    The message starts with ``where`` (what was being fetched) and says what to do: accept a gated
    repository's terms and set ``HF_TOKEN``, log in for a private one, download once online what the
    offline cache lacks. ``filename`` names the file fetched (None: a snapshot of several); ``hint``
    is added at the end of every message.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hint = f" {hint}" if hint else ""
    what = f"{filename} is " if filename else ""
    try:
        yield
    except GatedRepoError as err:  # a subclass of RepositoryNotFoundError: first
        page = f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
        raise error(
            f"{where}: the repository is gated; accept its terms on {page} (logged in), then set HF_TOKEN "
            f"to a token of that account (or log in with `hf auth login`){hint}"
        ) from err
    except RepositoryNotFoundError as err:
        raise error(f"{where}: repository not found (or private: log in with `hf auth login`){hint}") from err
    except RevisionNotFoundError as err:
        raise error(f"{where}: revision not found{hint}") from err
    except LocalEntryNotFoundError as err:  # IncompleteSnapshotError (a snapshot) included
        raise error(
            f"{where}: {what}not in the local huggingface_hub cache and cannot be downloaded "
            f"(HF_HUB_OFFLINE=1, or the Hub is unreachable); download it once online or use a local folder{hint}"
        ) from err
    except EntryNotFoundError as err:
        raise error(f"{where}: the repository has no file {filename}{hint}") from err
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise error(f"{where}: download of {filename or 'the files'} failed: {err}{hint}") from err


def hub_file(repo_id: str, filename: str, revision: str | None, *, required: bool = True) -> Path | None:
    """Download ``filename`` of the Hub dataset ``repo_id`` (or take it from the cache when offline).

    Returns None for an optional file that the repository (or the offline cache) does not have.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    where = hub_dataset(repo_id, revision)
    with hub_errors(where, repo_id, filename=filename):
        try:
            return Path(hf_hub_download(repo_id, filename, repo_type="dataset", revision=revision))
        except EntryNotFoundError:  # not in the repository, or (offline) not in the cache
            if required:
                raise
            logger.info("%s: optional file %s is not in the repository or the local cache", where, filename)
            return None


def snapshot_commit(cached_file: Path, filename: str) -> str | None:
    """The commit of the Hub snapshot that ``cached_file`` (``filename`` of an ``hf_hub_download``) comes from."""
    # hf_hub_download returns <cache>/datasets--owner--name/snapshots/<commit>/<filename>.
    snapshot = cached_file
    for _ in Path(filename).parts:
        snapshot = snapshot.parent
    return snapshot.name if snapshot.parent.name == "snapshots" else None


def resolve_vlguard_files(
    source: str | Path,
    split: str,
    *,
    revision: str | None = None,
    image_root: str | Path | None = None,
    download_images: bool = True,
) -> ResolvedFiles:
    """Find (downloading when needed) the JSON file, the references and the image root of a split.

    ``source`` is a local folder, a local JSON file, or a Hub dataset repo id. Images are optional:
    ``image_root`` (a folder or a zip) wins; otherwise ``<split>/`` or ``<split>.zip`` beside the JSON.
    """
    path = Path(source)
    if path.exists():
        if revision is not None:
            raise DataSourceError(f"{path}: --revision applies to Hub sources only, not to a local path")
        if path.is_dir():
            split_file = path / f"{split}.json"
            if not split_file.is_file():
                found = sorted(p.name for p in path.glob("*.json"))
                raise DataSourceError(
                    f"{path}: no {split}.json in this folder (found: {', '.join(found) or 'none'})"
                )
            folder = path
        else:
            split_file, folder = path, path.parent
        references = folder / REFERENCES_FILE
        return ResolvedFiles(
            kind="local",
            location=str(path),
            revision=None,
            commit=None,
            split_file=split_file,
            references_file=references if split == "test" and references.is_file() else None,
            image_root=Path(image_root) if image_root is not None else _find_image_root(folder, split),
        )
    source = str(source)
    if not looks_like_repo_id(source):
        raise DataSourceError(
            f"{source}: no such file or folder (and not a Hub repo id like {DEFAULT_HUB_REPO})"
        )
    downloaded = hub_file(source, f"{split}.json", revision)
    assert downloaded is not None
    hub_references = hub_file(source, REFERENCES_FILE, revision, required=False) if split == "test" else None
    if image_root is not None:
        images: Path | None = Path(image_root)
    elif download_images:
        images = hub_file(source, f"{split}.zip", revision, required=False)
        if images is None:
            logger.warning("%s: %s.zip is not available; loading without images", source, split)
    else:
        images = None
    return ResolvedFiles(
        kind="hub",
        location=source,
        revision=revision,
        commit=snapshot_commit(downloaded, f"{split}.json"),
        split_file=downloaded,
        references_file=hub_references,
        image_root=images,
    )


def _find_image_root(folder: Path, split: str) -> Path | None:
    for candidate in (folder / split, folder / f"{split}.zip"):
        if candidate.exists():
            return candidate
    return None
