"""Pictures that say where they come from: every PNG Naturalize and classify write carries one text chunk,
'provenance' (JSON: what it shows, its sources, the seed or settings), readable with Pillow (`Image.open(p).text`).

In: an RGB uint8 array (or a matplotlib figure's PNG writer) and a JSON-ready dict. Out: PNG bytes / the dict back.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np

#: The PNG text chunk holding a picture's provenance.
KEY = "provenance"


def text(provenance: dict) -> str:
    """The chunk's text: compact JSON with sorted keys (the same record gives the same bytes)."""
    return json.dumps(provenance, sort_keys=True, separators=(",", ":"))


def png_bytes(rgb: np.ndarray, provenance: dict) -> bytes:
    """PNG bytes of an H x W x 3 RGB uint8 image with its provenance in the text chunk 'provenance'."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(KEY, text(provenance))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def read_provenance(path: str | os.PathLike) -> dict | None:
    """The provenance a PNG carries, None when it has none."""
    from PIL import Image

    with Image.open(path) as im:
        found = getattr(im, "text", {}).get(KEY)
    return json.loads(found) if found else None
