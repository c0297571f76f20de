"""Reading an upload-API body: an image into memory, a video into a temporary file, hashed (MD5, SHA-256) as it
arrives, within the limit of what it turned out to be.

No record says what an uploaded blob is, so its first bytes decide (`signals.video.looks_like_video`): a video
container is a video, anything else is treated as an image. The result is a `FetchedBlob`, the same shape the
pipeline's fetcher hands over, so both hash it the same way (`signals.blob.hash_blob`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from labeler.pipeline.fetcher import FetchedBlob
from labeler.pipeline.signals import IMAGE, VIDEO
from labeler.pipeline.signals.exact import StreamDigests
from labeler.pipeline.signals.video import SNIFF_BYTES, looks_like_video
from labeler.protocol.errors import InvalidRequest, PayloadTooLarge


async def read_upload(
    chunks: AsyncIterator[bytes],
    *,
    max_image_bytes: int,
    max_video_bytes: int,
    before_video: Callable[[], None] = lambda: None,
) -> tuple[str, FetchedBlob]:
    """(media, blob) of a body; the caller discards the blob. InvalidRequest for an empty body, PayloadTooLarge
    over the limit of its kind. `before_video` runs once the body is known to be a video, before it is spooled
    (it may refuse by raising)."""
    digests = StreamDigests()
    head = bytearray()
    stream = aiter(chunks)
    async for chunk in stream:
        head += chunk
        if len(head) >= SNIFF_BYTES:
            break
    if not head:
        raise InvalidRequest("empty body: send the image or video bytes")
    if not looks_like_video(bytes(head[:SNIFF_BYTES])):
        body = head
        async for chunk in stream:
            body += chunk
            if len(body) > max_image_bytes:
                break
        if len(body) > max_image_bytes:
            raise PayloadTooLarge(f"image larger than {max_image_bytes} bytes")
        digests.update(body)
        return IMAGE, FetchedBlob(digests.done(), bytes(body))
    before_video()
    fd, name = tempfile.mkstemp(prefix="labeler-upload-")
    path = Path(name)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(path.unlink, missing_ok=True)  # until the blob is handed over
        with os.fdopen(fd, "wb") as spool:

            def keep(chunk: bytes) -> None:
                if digests.size + len(chunk) > max_video_bytes:
                    raise PayloadTooLarge(f"video larger than {max_video_bytes} bytes")
                digests.update(chunk)
                spool.write(chunk)

            keep(bytes(head))
            async for chunk in stream:
                keep(chunk)
        cleanup.pop_all()
    return VIDEO, FetchedBlob(digests.done(), path=path)
