"""A review item's image, for the reviewer's eyes only: fetched from the author's PDS through the pipeline's
fetcher (its size limit, timeout, redirect cap, public-address rule and CID check), held in memory, never written
to disk, and answered with `Cache-Control: no-store` so the browser keeps no copy either.

Only images: a video item shows its evidence without a player (nothing plays by itself).
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from labeler.console.auth import console_auth
from labeler.console.web import ConsoleError, page
from labeler.pipeline.fetcher import FetchRejected, FetchUnavailable
from labeler.pipeline.jobs import ImageRef
from labeler.pipeline.review import ReviewError
from labeler.service import Labeler
from labeler.xrpc.params import path_id

#: Types a browser may render from us; anything else is sent as bytes to download, never to sniff.
RENDERABLE: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/avif"})


@page
async def item_image(request: Request) -> Response:
    await console_auth(request).require(request)
    labeler: Labeler = request.app.state.labeler
    item_id = path_id(request, "item_id")
    try:
        item = await labeler.pipeline.reviews.get(item_id)
    except ReviewError:
        raise ConsoleError(404, f"no review item {item_id}") from None
    image = item.evidence.get("image")
    if not isinstance(image, dict) or image.get("media", "image") != "image":
        raise ConsoleError(404, f"review item {item_id} has no image")
    did, cid, mime = image.get("did"), image.get("blob_cid"), image.get("mime_type")
    if not (isinstance(did, str) and isinstance(cid, str)):
        raise ConsoleError(404, f"review item {item_id} has no image")
    try:
        blob = await labeler.pipeline.fetcher.fetch(ImageRef(did, cid, mime if isinstance(mime, str) else None))
    except FetchUnavailable as exc:
        raise ConsoleError(
            503, f"the image cannot be fetched now ({exc.reason})", headers={"Retry-After": "5"}
        ) from None
    except FetchRejected as exc:
        raise ConsoleError(404, f"the image cannot be shown ({exc.reason})") from None
    media_type = mime if mime in RENDERABLE else "application/octet-stream"
    return Response(
        blob.data,
        media_type=media_type,
        headers={"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'; sandbox"},
    )
