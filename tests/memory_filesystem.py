"""``memfs://``: an in-memory Beam FileSystem that behaves like an object store (GCS, S3).

Beam 2.77 ships no in-memory filesystem, and gs:// and s3:// need credentials and a network,
so tests of "everything goes through Beam's FileSystems" use this one. Like GCS
(``apache_beam/io/gcp/gcsfilesystem.py``): no directories (``mkdirs`` does nothing, a
"directory" exists only as a prefix of objects), ``delete('prefix/')`` removes every object
under the prefix, ``rename`` is copy then delete. Importing this module registers the scheme
(Beam finds FileSystem subclasses by scheme); objects live in this process only, so use it with
the in-process runner. Every open is recorded in ``OPENED``.
"""

from __future__ import annotations

import io
import posixpath
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from apache_beam.io.filesystem import (
    BeamIOError,
    CompressedFile,
    CompressionTypes,
    FileMetadata,
    FileSystem,
)

SCHEME = "memfs"
OBJECTS: dict[str, bytes] = {}
OPENED: list[str] = []


def reset() -> None:
    OBJECTS.clear()
    OPENED.clear()


def put(path: str, data: bytes) -> None:
    OBJECTS[path] = data


class _Writer(io.BytesIO):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def close(self) -> None:
        if not self.closed:
            OBJECTS[self._path] = self.getvalue()
        super().close()


class MemoryFileSystem(FileSystem):
    """Object-store semantics over ``OBJECTS`` (path -> bytes)."""

    @classmethod
    def scheme(cls) -> str:
        return SCHEME

    def join(self, basepath: str, *paths: str) -> str:
        return posixpath.join(basepath, *paths)

    def split(self, path: str) -> tuple[str, str]:
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path: str) -> None:
        pass  # an object store has no directories

    def has_dirs(self) -> bool:
        return False

    def _list(self, dir_or_prefix: str) -> Iterator[FileMetadata]:
        for path in sorted(OBJECTS):
            if path.startswith(dir_or_prefix):
                yield self.metadata(path)

    def _stream(self, stream: BinaryIO, path: str, compression_type: str) -> BinaryIO:
        kind = FileSystem._get_compression_type(path, compression_type)
        if kind == CompressionTypes.UNCOMPRESSED:
            return stream
        return CompressedFile(stream, compression_type=kind)  # type: ignore[return-value]

    def create(
        self,
        path: str,
        mime_type: str = "application/octet-stream",
        compression_type: str = CompressionTypes.AUTO,
    ) -> BinaryIO:
        return self._stream(_Writer(path), path, compression_type)

    def open(
        self,
        path: str,
        mime_type: str = "application/octet-stream",
        compression_type: str = CompressionTypes.AUTO,
    ) -> BinaryIO:
        if path not in OBJECTS:
            raise BeamIOError("Open operation failed", {path: FileNotFoundError(path)})
        OPENED.append(path)
        return self._stream(io.BytesIO(OBJECTS[path]), path, compression_type)

    def copy(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        errors: dict[Any, Exception] = {}
        for source, destination in zip(source_file_names, destination_file_names, strict=True):
            if source in OBJECTS:
                OBJECTS[destination] = OBJECTS[source]
            else:
                errors[(source, destination)] = FileNotFoundError(source)
        if errors:
            raise BeamIOError("Copy operation failed", errors)

    def rename(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        self.copy(source_file_names, destination_file_names)
        for source in source_file_names:
            del OBJECTS[source]

    def exists(self, path: str) -> bool:
        return path in OBJECTS

    def size(self, path: str) -> int:
        return len(OBJECTS[path])

    def last_updated(self, path: str) -> float:
        return time.time()

    def checksum(self, path: str) -> str:
        return str(hash(OBJECTS[path]))

    def metadata(self, path: str) -> FileMetadata:
        return FileMetadata(path, len(OBJECTS[path]), time.time())

    def delete(self, paths: list[str]) -> None:
        errors: dict[str, Exception] = {}
        for path in paths:
            if path.endswith("/"):  # a prefix: every object below it (none is fine, as on GCS)
                for name in [p for p in OBJECTS if p.startswith(path)]:
                    del OBJECTS[name]
            elif path in OBJECTS:
                del OBJECTS[path]
            else:
                errors[path] = FileNotFoundError(path)
        if errors:
            raise BeamIOError("Delete operation failed", errors)
