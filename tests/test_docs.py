"""The README and docs/ say what the code does: their Python blocks run, and their numbers are measured again.

Every fenced ``python`` block of README.md and docs/*.md runs, in order, one
namespace per page (a later block may use an earlier one's names), in an empty
working folder.  An HTML comment on the line before a block (it does not
render) says what the block needs:

- ``<!-- docs-test: skip (REASON) -->``: not run here (a cluster, a server, a
  long run); the reason says what runs it instead.
- ``<!-- docs-test: needs MODULE, ... -->``: skipped, saying so, when a module
  of an optional extra is missing.
- ``<!-- docs-test: stand-ins NAME, ... -->``: the names are placeholders of
  the example (``microphone_blocks``, ``send``, ``sock``, ``features``), given
  values from :data:`STAND_INS` here.

Directives combine with ``;`` (a reason may hold one too).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import amser_dsp

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?:python|py)\n(.*?)^```", re.S | re.M)
DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")

#: Blocks of pages this suite does not own yet, with the reason (their page should get a directive instead).
UNMARKED = {"docs/streaming.md": "needs a running service (amser serve); tests/server runs the client"}


@dataclass
class Block:
    page: str
    line: int
    code: str
    directives: list[str]


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        d = DIRECTIVE.search(before)
        directives = [part.strip() for part in re.split(r";\s*(?=skip|needs |stand-ins )", d.group(1))] if d else []
        rel = page.relative_to(ROOT).as_posix()
        found.append(Block(rel, text[: m.start()].count("\n") + 2, m.group(1), directives))
    return found


def _stand_ins() -> dict[str, Callable[[], Any]]:
    """Values for an example's placeholders: a microphone, a network and features."""
    sent = bytearray()

    class Socket:
        """What ``send`` sent, read back as a socket would deliver it."""

        def __init__(self) -> None:
            self.pos = 0

        def recv(self, n: int) -> bytes:
            data = bytes(sent[self.pos : self.pos + n])
            self.pos += len(data)
            return data

    audio = amser_dsp.load_audio(amser_dsp.sample_path())
    return {
        "microphone_blocks": lambda: [audio[i : i + 1024] for i in range(0, audio.size, 1024)],
        "send": lambda: sent.extend,
        "sock": Socket,
        "features": lambda: amser_dsp.features(audio, 16000),
    }


def _cases() -> list[Any]:
    cases = []
    for page in PAGES:
        found = blocks(page)
        if found:
            rel = page.relative_to(ROOT).as_posix()
            cases.append(pytest.param(rel, found, id=rel))
    return cases


@pytest.mark.parametrize(("page", "found"), _cases())
def test_the_python_blocks_of_a_page_run(
    page: str, found: list[Block], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    stand_ins = _stand_ins()
    ran, skipped = 0, []
    for block in found:
        reason = _skip_reason(block)
        if reason:
            skipped.append(f"{block.page}:{block.line}: {reason}")
            continue
        for directive in block.directives:
            if directive.startswith("stand-ins "):
                for name in directive.removeprefix("stand-ins ").split(","):
                    namespace[name.strip()] = stand_ins[name.strip()]()
        try:
            exec(compile(block.code, f"{block.page}:{block.line}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"{block.page}, the block at line {block.line}: {type(exc).__name__}: {exc}")
        ran += 1
    if not ran:
        pytest.skip("; ".join(skipped))


def _skip_reason(block: Block) -> str | None:
    if not block.directives and block.page in UNMARKED:
        return UNMARKED[block.page]
    for directive in block.directives:
        if directive.startswith("skip"):
            return directive.removeprefix("skip").strip(" ()") or "skipped"
        if directive.startswith("needs "):
            missing = [m.strip() for m in directive.removeprefix("needs ").split(",") if not _importable(m.strip())]
            if missing:
                return f"needs {', '.join(missing)} (an optional extra)"
        elif not directive.startswith("stand-ins "):
            raise AssertionError(f"{block.page}:{block.line}: unknown docs-test directive {directive!r}")
    return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def test_every_block_is_run_or_says_why_not() -> None:
    # A block without a directive runs; one that cannot run in CI must say so (and why) before it.
    for page in PAGES:
        for block in blocks(page):
            for directive in block.directives:
                if directive.startswith("skip"):
                    assert re.fullmatch(r"skip \(.+\)", directive), f"{block.page}:{block.line}: give the reason"


# ------------------------------------------------------------------ numbers the pages state
def test_codec_md_counts_the_components_synthesised_at_the_default_step() -> None:
    # It said 49 of 80 (the count at step -8); the tables give 42.
    from amser_dsp.codec import kltdct

    text = (ROOT / "docs" / "codec.md").read_text()
    stated = re.search(r"synthesised \((\d+) of 80 at step -4\)", text)
    assert stated, "docs/codec.md no longer states the components at step -4"
    plan = kltdct._coding_plan(kltdct.load_tables(kltdct.DEFAULT_TABLES), -4)
    assert int(stated.group(1)) == plan.components.size


def test_format_md_states_the_header_sizes_of_the_presets() -> None:
    # It said "about 40 bytes"; a preset's header record is 53-55 (svd, raw) and 109 (kltdct).
    text = " ".join((ROOT / "docs" / "format.md").read_text().split())
    stated = re.search(r"is (\d+)-(\d+) bytes with the svd or raw codec and (\d+) with kltdct", text)
    assert stated, "docs/format.md no longer states the header sizes"
    lo, hi, kltdct = map(int, stated.groups())
    feats = np.zeros((80, 32), np.float32)
    sizes = [
        _header(amser_dsp.encode(feats, config=p, **o))
        for p in amser_dsp.PRESETS
        for o in ({"rank": 4}, {"codec": "raw"})
    ]
    assert (min(sizes), max(sizes)) == (lo, hi)
    assert _header(amser_dsp.encode(feats, config="whisper")) == kltdct


def _header(blob: bytes) -> int:
    return int(amser_dsp.inspect(blob).to_dict()["header_bytes"])


def test_the_readme_lists_every_extra() -> None:
    # `eval` was missing: without it `amser eval-asr` quietly used a minimal normaliser.
    import tomllib  # Python 3.11+, as in test_package

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    readme = (ROOT / "README.md").read_text()
    listing = readme[readme.index("Install extras:") :].split("\n\n", 1)[0]
    missing = [name for name in extras if f"`{name}`" not in listing]
    assert not missing, f"README's extras list lacks {missing}"


def test_the_readme_claims_no_opus_comparison_below_what_was_measured() -> None:
    # "better than Opus at every rate from 2 to 16 kbps": Opus was measured down to 6.2 kbps only.
    for page in ("README.md", "docs/codec.md", "docs/fidelity.md"):
        text = " ".join((ROOT / page).read_text().split())
        assert "every rate from 2 to 16 kbps" not in text, page
    rows = (ROOT / "docs" / "rd.md").read_text()
    lowest = min(float(m) for m in re.findall(r"^\| Opus \d+ kbps \(voip\) \| ([\d.]+) \|", rows, re.M))
    assert f"Opus was measured at, {lowest:.1f} to 16 kbps" in " ".join((ROOT / "README.md").read_text().split())


def test_the_readme_says_which_analyze_returns_timings() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (
        "return the transcript, one of angry, happy, neutral, sad, the four probabilities and per-stage" not in readme
    )
    assert "(the HTTP route also per-stage timings)" in readme


def test_batch_md_does_not_say_analyze_is_refused() -> None:
    text = " ".join((ROOT / "docs" / "batch.md").read_text().split())
    assert "analyze` (transcript and emotion) is refused" not in text
    assert 'if __name__ == "__main__":' in text
