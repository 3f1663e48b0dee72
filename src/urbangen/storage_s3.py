"""The MinIO (S3-protocol) backend of the dataset store; imported only when URBANGEN_S3_ENDPOINT is set.

The client gets its own urllib3 pool with short connect timeouts and few retries, so a wrong or dead
endpoint is reported in seconds instead of minio's default five-minute timeout with five retries. Every
upload sends ``Content-Type: application/octet-stream`` (a form content type makes some S3 servers store
an empty object) and records the file's sha256 as object metadata, which is what a resumed push compares.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from urbangen.errors import UrbangenError
from urbangen.storage import Store

_SHA_META = "sha256"
_MISSING = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}
_CHUNK = 1 << 20


class MinioStore(Store):
    """Dataset store in a MinIO/S3 bucket: ``<bucket>/datasets/<name>/<version>/``."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str | None,
        secret_key: str | None,
        secure: bool = False,
        connect_timeout: float = 3.0,
        read_timeout: float = 60.0,
        retries: int = 2,
        pool_size: int = 16,
    ) -> None:
        import certifi
        import urllib3
        from minio import Minio

        parts = urlsplit(endpoint if "://" in endpoint else f"{'https' if secure else 'http'}://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
            raise UrbangenError(f"URBANGEN_S3_ENDPOINT {endpoint!r}: expected host:port or http(s)://host:port")
        self.endpoint, self.bucket = parts.netloc, bucket
        self.location = f"s3://{bucket}"
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            maxsize=pool_size,
            retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        self.client = Minio(
            parts.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=parts.scheme == "https",
            http_client=http,
        )
        with self._errors("open bucket", bucket):
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)

    @contextlib.contextmanager
    def _errors(self, what: str, key: str) -> Iterator[None]:
        """Turn client and network failures into one clear UrbangenError naming endpoint and object."""
        import urllib3
        from minio.error import MinioException, S3Error

        try:
            yield
        except S3Error as exc:
            hint = (
                " (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
                if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch")
                else ""
            )
            raise UrbangenError(
                f"S3 {what} {key!r} at {self.endpoint} failed: {exc.code}: {exc.message}{hint}"
            ) from None
        except (MinioException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise UrbangenError(
                f"S3 endpoint {self.endpoint} unreachable or not answering ({what} {key!r}): {reason}. "
                "Check URBANGEN_S3_ENDPOINT and that MinIO is running"
            ) from None

    def _missing(self, exc: Exception) -> bool:
        return getattr(exc, "code", None) in _MISSING

    def _stat(self, key: str) -> tuple[int, str | None] | None:
        from minio.error import S3Error

        with self._errors("stat", key):
            try:
                info = self.client.stat_object(self.bucket, key)
            except S3Error as exc:
                if self._missing(exc):
                    return None
                raise
        return int(info.size or 0), (info.metadata or {}).get(f"x-amz-meta-{_SHA_META}")

    def _get_bytes(self, key: str) -> bytes | None:
        from minio.error import S3Error

        with self._errors("read", key):
            try:
                response = self.client.get_object(self.bucket, key)
            except S3Error as exc:
                if self._missing(exc):
                    return None
                raise
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def _put_bytes(self, key: str, data: bytes) -> None:
        import io

        with self._errors("write", key):
            self.client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type="application/octet-stream"
            )

    def _put_file(self, key: str, path: Path, sha256: str) -> None:
        with self._errors("upload", key):
            self.client.fput_object(
                self.bucket, key, str(path), content_type="application/octet-stream", metadata={_SHA_META: sha256}
            )

    def _read_chunks(self, key: str) -> Iterator[bytes]:
        with self._errors("download", key):
            response = self.client.get_object(self.bucket, key)
            try:
                yield from response.stream(_CHUNK)
            finally:
                response.close()
                response.release_conn()

    def _iter_objects(self, prefix: str) -> Iterator[tuple[str, int]]:
        with self._errors("list", prefix):
            for item in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if not item.is_dir:
                    yield item.object_name, int(item.size or 0)

    def _delete(self, key: str) -> None:
        with self._errors("delete", key):
            self.client.remove_object(self.bucket, key)
