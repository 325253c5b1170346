"""The page's table file, ``web/tables.json``: the default codec's tables as the page's JavaScript reads them.

The page (``amser_dsp/web/``: HTML, JavaScript modules, the vendored deflate) computes the ``whisper``
preset's features and the default kltdct codec's containers in the browser.  The codec's shipped tables
reach it as ``tables.json``, made from the package's own table files by :func:`build_asset` at build time
(``python -m amser_dsp.web.tables``; ``--check`` compares, a test holds it) and committed, so installing the
package builds nothing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import container as fmt
from ..codec import kltdct, make_codec, rans
from ..config import DEFAULT_PRESET, get_preset
from . import web_root

__all__ = ["ASSET_NAME", "asset_path", "build_asset", "encoded_array", "main"]

#: The table file of the page, in ``amser_dsp/web/``.
ASSET_NAME = "tables.json"
#: Bump when the layout of tables.json changes (the page checks it).
ASSET_FORMAT = 1

#: What the page compares its bytes with (docs/rd.md, 87 clips, Whisper tiny.en): the lowest Opus bitrate
#: within 0.5 WER points of uncompressed features, where the default codec (kltdct step -4, 3.82 kbps) is.
#: tests/web holds these numbers against docs/rd.md.
REFERENCE = {
    "opus_kbps": 12.09,
    "codec_kbps": 3.82,
    "criterion": "within 0.5 WER points of uncompressed features",
    "source": "docs/rd.md",
}


def asset_path() -> Path:
    return web_root() / ASSET_NAME


def encoded_array(a: np.ndarray, dtype: str) -> dict[str, Any]:
    """An array as JSON: ``{dtype, shape, data}``, data the base64 of its little-endian values in C order.

    The layout of the arrays in tables.json and of the decoded features ``POST /v1/analyze?features=``
    returns; the page reads both with its ``decodeArray``.
    """
    arr = np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "shape": list(arr.shape), "data": base64.b64encode(arr.tobytes()).decode()}


def build_asset() -> bytes:
    """tables.json: the default preset's config, the default kltdct codec's tables, the Laplace tables.

    Everything the page's encoder needs that is data rather than code, taken from the
    package's own definitions, so the page cannot drift from Python: the config's canonical
    JSON (the header carries it verbatim), the header's deflate dictionary, the codec's
    constants, and the integer and float32 tables bit for bit.
    """
    config = get_preset(DEFAULT_PRESET)
    codec = make_codec(config=config)
    if not isinstance(codec, kltdct.KltDctCodec) or codec.step is None:
        raise RuntimeError(f"the page encodes with kltdct at a fixed step; the default codec is {codec.get_config()}")
    tables = codec.table_data
    laplace = rans.load_tables()
    asset = {
        "format": ASSET_FORMAT,
        "config": {"name": DEFAULT_PRESET, "json": config.to_json(), "digest": config.digest()},
        "header_dictionary": encoded_array(np.frombuffer(fmt.HEADER_DICTIONARY, np.uint8), "uint8"),
        "max_chunk_frames": fmt.DEFAULT_LIMITS.max_chunk_frames,
        "reference": REFERENCE,
        "format_version": f"{fmt.MAJOR}.{fmt.MINOR}",
        "kltdct": {
            "name": tables.name,
            "sha256": tables.sha256,
            "config_digest": tables.config_digest,
            "block": tables.block,
            "n_mels": tables.n_mels,
            "coded_min_context": kltdct.CODED_MIN_CONTEXT,
            "step_index_min": kltdct.STEP_INDEX_MIN,
            "step_index_max": kltdct.STEP_INDEX_MAX,
            "default_step": codec.step,
            "mean": encoded_array(tables.mean, "float32"),
            "basis": encoded_array(tables.basis, "float32"),
            "weight": encoded_array(tables.weight, "float32"),
            "scale_index": encoded_array(tables.scale_index, "int16"),
        },
        "rans": {
            "sha256": laplace.sha256,
            "precision": rans.PRECISION,
            "alphabet": rans.ALPHABET,
            "scale_index_min": rans.SCALE_INDEX_MIN,
            "scale_index_max": rans.SCALE_INDEX_MAX,
            "freq": encoded_array(laplace.freq, "int32"),
            "escape_k": encoded_array(laplace.escape_k, "int32"),
        },
    }
    return (json.dumps(asset, sort_keys=True, indent=1) + "\n").encode()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amser_dsp.web.tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help=f"where to write (default: the package's {ASSET_NAME})")
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = parser.parse_args(argv)
    out = args.out or asset_path()
    data = build_asset()
    if args.check:
        same = out.is_file() and out.read_bytes() == data
        print(f"{out}: {'up to date' if same else 'OUT OF DATE: run python -m amser_dsp.web.tables'}")
        return 0 if same else 1
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
