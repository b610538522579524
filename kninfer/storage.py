"""Where model files come from: a local directory, `file://`, or KServe's storage layer.

Local paths and `file://` work offline with no extra package. Remote schemes (gs://, s3://,
hdfs://, https://, hf://, pvc://...) go through `kserve_storage.Storage.download`, which ships in
the `kserve-storage` package (`pip install 'kninfer[storage]'`): without it they fail with a message
that says so. Whatever the source, the directory a model is read from must resolve inside the
configured root, and model files must not be symlinks that leave it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from kninfer.errors import ModelLoadError

if TYPE_CHECKING:
    from kninfer.settings import ServeSettings

LOCAL_SCHEMES = ("", "file")


def local_model_dir(settings: ServeSettings) -> Path | None:
    """The directory `--model-dir` or `--storage-uri` names (downloaded if remote), confined to
    `--model-root`; None when neither is given. Predictors and transformers read their files
    from here."""
    if settings.storage_uri is not None:
        local = resolve_storage_uri(
            settings.storage_uri, settings.cache_dir / "models" / settings.model_name
        )
    elif settings.model_dir is not None:
        local = settings.model_dir
    else:
        return None
    return confine(local, settings.model_root or local)


def resolve_storage_uri(uri: str, download_dir: Path) -> Path:
    """A local directory holding the model named by `uri`."""
    parsed = urlparse(uri)
    if parsed.scheme in LOCAL_SCHEMES:
        path = unquote(parsed.path) if parsed.scheme == "file" else uri
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise ModelLoadError(f"file:// URI with a host is not supported: {uri}")
        return Path(path)
    try:
        from kserve_storage import Storage  # type: ignore[import-not-found]
    except ImportError:
        raise ModelLoadError(
            f"storage URI scheme '{parsed.scheme}://' needs the kserve-storage package "
            "(pip install 'kninfer[storage]'); local paths and file:// work without it"
        ) from None
    download_dir.mkdir(parents=True, exist_ok=True)
    return Path(Storage.download(uri, out_dir=str(download_dir)))


def confine(model_dir: Path, root: Path | None) -> Path:
    """`model_dir` resolved (symlinks followed); refuse it when it leaves `root`."""
    resolved = model_dir.resolve()
    if not resolved.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist or is not a directory")
    if root is not None:
        root_resolved = root.resolve()
        if not resolved.is_relative_to(root_resolved):
            raise ModelLoadError(
                f"model directory {model_dir} resolves to {resolved}, outside the configured "
                f"model root {root_resolved}"
            )
    return resolved


def model_file(model_dir: Path, name: str) -> Path:
    """`model_dir/name`, refusing a file that resolves outside `model_dir` (a symlink escape)."""
    candidate = (model_dir / name).resolve()
    if not candidate.is_relative_to(model_dir.resolve()):
        raise ModelLoadError(f"model file {model_dir / name} resolves outside {model_dir}")
    return candidate


def sha256_of(path: Path) -> str:
    """The file's sha256, hex (what `kninfer audit` prints and --model-sha256 pins)."""
    import hashlib

    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class HeldFile:
    """A model file kept open from load to exit, to tell whether its bytes changed since then.

    The identity recorded at load is the file's device, inode, size and modification time
    (st_dev, st_ino, st_size, st_mtime_ns). `changed()` compares it with an `os.fstat` of the
    open descriptor: no path lookup, and it follows the inode the model was loaded from, not the
    path. A write into that inode (`open(path, "r+b")`, `cp` onto the path) moves its size or
    mtime; a new file renamed over the path (`mv`, `os.replace`) leaves that inode, and anything
    memory-mapped from it, as it was.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDONLY)
        st = os.fstat(self._fd)
        self.identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> bool:
        """Whether the loaded inode's size or mtime moved since load (or the file is closed)."""
        if self._fd is None:
            return True
        st = os.fstat(self._fd)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != self.identity

    def still_at_path(self) -> bool:
        """Whether the path still names the file as it was when it was opened: false when it was
        written to or replaced meanwhile (during a load, which reopens the path)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == self.identity

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# Up to this many bytes of model files are read whole for the version digest; past it, each
# file's first and last DIGEST_EDGE_BYTES stand for it, so a multi-GB model costs a cold start
# two reads per file, not a pass over every byte.
DIGEST_FULL_BYTES = 256 * 1024 * 1024
DIGEST_EDGE_BYTES = 1024 * 1024


def directory_digest(model_dir: Path) -> str:
    """A 12-hex-digit version for the model in MODEL_DIR: sha256 over each file's relative path,
    size and content (hidden files left out), in path order. The same files give the same
    version on any machine (no times are read). Past DIGEST_FULL_BYTES in all, a file counts by
    its size and its first and last DIGEST_EDGE_BYTES."""
    import hashlib

    root = model_dir.resolve()
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    whole = sum(p.stat().st_size for p in files) <= DIGEST_FULL_BYTES
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root).as_posix()}\0{size}\0".encode())
        with path.open("rb") as file:
            if whole or size <= 2 * DIGEST_EDGE_BYTES:
                for chunk in iter(lambda: file.read(1 << 20), b""):
                    digest.update(chunk)
            else:
                digest.update(file.read(DIGEST_EDGE_BYTES))
                file.seek(size - DIGEST_EDGE_BYTES)
                digest.update(file.read(DIGEST_EDGE_BYTES))
    return digest.hexdigest()[:12]
