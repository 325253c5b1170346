"""The Numba back end: one fused, SIMD-vectorised pass from samples to Mel energies.

Importing this module imports Numba; :mod:`amser_dsp.backends` does so only
when the back end is first used.  The kernels live in :mod:`._numba_kernels`
and are cached on disk (``cache=True``), so only the very first process
compiles them.

FFT sizes: the hand-written real FFT covers every even ``n_fft`` whose half
factors into 2, 3 and 5 (all presets: 400 = 2 * 200 = 2 * 8 * 5 * 5, and
512 = 2 * 8 * 8 * 4; also 256, 320, 480, 640, 1024, ...).  Any other ``n_fft`` (odd,
or with a prime factor above 5 in its half) falls back to the NumPy back end
(scipy.fft), with identical results up to rounding; :func:`fft_supported`
says which path a size takes.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..errors import BackendError
from ..filterbank import mel_filterbank_for
from ..frontend.extract import check_padding
from ..frontend.stages import window_for
from . import _numba_kernels as K
from . import variants
from .base import Backend
from .numpy_backend import NumpyBackend

if TYPE_CHECKING:
    from ..config import FeatureConfig

__all__ = ["NumbaBackend", "apply_mel", "fft_supported", "power_spectrum"]

_PAD_CODES = {"reflect": K.PAD_REFLECT, "constant": K.PAD_CONSTANT, "edge": K.PAD_EDGE}


class _FFTPlan(NamedTuple):
    radices: np.ndarray  # int64, one entry per Stockham stage
    twr: np.ndarray  # stage twiddles, real and imaginary parts
    twi: np.ndarray
    twoff: np.ndarray  # int64 offset of each stage's table
    rtr: np.ndarray  # split-step twiddles exp(-2 pi i k / n_fft), k = 0 .. n_fft / 2
    rti: np.ndarray


class _MelPlan(NamedTuple):
    weights: np.ndarray  # nonzero span of each band, concatenated
    lo: np.ndarray  # int64 first bin of each band
    hi: np.ndarray  # int64 one past the last bin
    off: np.ndarray  # int64 offset of each band's span in ``weights``


def _radices(half: int) -> list[int] | None:
    out: list[int] = []
    while half % 8 == 0:
        out.append(8)
        half //= 8
    while half % 4 == 0:
        out.append(4)
        half //= 4
    for p in (2, 3, 5):
        while half % p == 0:
            out.append(p)
            half //= p
    return out if half == 1 else None


@functools.lru_cache(maxsize=64)
def fft_supported(n_fft: int) -> bool:
    """Whether the hand-written FFT handles ``n_fft`` (else scipy.fft via the NumPy back end)."""
    return n_fft % 2 == 0 and _radices(n_fft // 2) is not None


@functools.lru_cache(maxsize=32)
def _fft_plan(n_fft: int, dtype: np.dtype) -> _FFTPlan:
    half = n_fft // 2
    radices = _radices(half)
    if n_fft % 2 or radices is None:
        raise BackendError(f"n_fft={n_fft} is not supported by the Numba FFT (see fft_supported)")
    tables, offsets, ns, pos = [], [], 1, 0
    for p in radices:
        # Stockham stage with ``ns`` points done: w[k, r] = exp(-2 pi i k r / (ns p)).
        k = np.arange(ns)[:, None]
        r = np.arange(1, p)[None, :]
        tables.append(np.exp(-2j * np.pi * k * r / (ns * p)).ravel())
        offsets.append(pos)
        pos += ns * (p - 1)
        ns *= p
    tw = np.concatenate(tables) if tables else np.zeros(1, complex)
    rt = np.exp(-2j * np.pi * np.arange(half + 1) / n_fft)
    plan = _FFTPlan(
        np.asarray(radices, np.int64),
        np.ascontiguousarray(tw.real, dtype),
        np.ascontiguousarray(tw.imag, dtype),
        np.asarray(offsets, np.int64),
        np.ascontiguousarray(rt.real, dtype),
        np.ascontiguousarray(rt.imag, dtype),
    )
    for a in plan:
        a.flags.writeable = False
    return plan


def _mel_plan_from(bank: np.ndarray) -> _MelPlan:
    nz = bank != 0
    any_nz = nz.any(axis=1)
    lo = np.where(any_nz, nz.argmax(axis=1), 0)
    hi = np.where(any_nz, bank.shape[1] - nz[:, ::-1].argmax(axis=1), 0)
    spans = [bank[m, lo[m] : hi[m]] for m in range(bank.shape[0])]
    off = np.concatenate([[0], np.cumsum(hi - lo)[:-1]])
    weights = np.concatenate(spans) if spans else np.zeros(0, bank.dtype)
    return _MelPlan(
        np.ascontiguousarray(weights, bank.dtype),
        lo.astype(np.int64),
        hi.astype(np.int64),
        off.astype(np.int64),
    )


@functools.lru_cache(maxsize=32)
def _mel_plan(config: FeatureConfig, dtype: np.dtype) -> _MelPlan:
    # The very filter bank the reference uses, read for its support ranges.
    return _mel_plan_from(mel_filterbank_for(config, dtype))


@functools.lru_cache(maxsize=32)
def _scaled_window(config: FeatureConfig, dtype: np.dtype) -> np.ndarray:
    # Scaling, DC removal and pre-emphasis are linear, so input_scale folds into the window.
    w = window_for(config, np.float64) * config.input_scale
    w = np.ascontiguousarray(w, dtype)
    w.flags.writeable = False
    return w


class _KernelPlan(NamedTuple):
    """The ``_numba_kernels.mel_block_*`` entry points' plan arguments for one config and dtype (see the layout there)."""

    floats: np.ndarray
    ints: np.ndarray
    params: np.ndarray
    kinds: tuple[int | None, ...]  # the stage kernels the config uses (K.stage_kinds): only they are compiled


@functools.lru_cache(maxsize=64)
def _kernel_plan(config: FeatureConfig, dtype: np.dtype) -> _KernelPlan:
    fft = _fft_plan(config.n_fft, dtype)
    mel = _mel_plan(config, dtype)
    header = np.zeros(K.I_HEADER, np.int64)
    header[[K.I_HOP, K.I_FLEN, K.I_PAD, K.I_MODE, K.I_SILENCE]] = (
        config.hop_length, config.frame_length, config.center_pad, _PAD_CODES[config.pad_mode],
        config.trailing_silence,
    )  # fmt: skip
    header[[K.I_REMOVE_DC, K.I_MAGNITUDE, K.I_N_FFT, K.I_N_MELS, K.I_STAGES, K.I_TWIDDLES]] = (
        config.remove_dc, config.power == 1.0, config.n_fft, config.n_mels, fft.radices.size, fft.twr.size,
    )  # fmt: skip
    header[[K.I_LOG10, K.I_DYN]] = (config.log == "log10", config.dynamic_range is not None)
    ints = np.concatenate([header, fft.radices, fft.twoff, mel.lo, mel.hi, mel.off])
    floats = np.concatenate([_scaled_window(config, dtype), fft.twr, fft.twi, fft.rtr, fft.rti, mel.weights])
    c = float(config.preemphasis)
    params = np.zeros(K.P_SIZE, np.float64)
    params[[K.P_C_SIG, K.P_C_FRAME, K.P_FLOOR, K.P_DYNAMIC_RANGE, K.P_OFFSET, K.P_SCALE]] = (
        c if config.preemphasis_scope == "signal" else 0.0, c if config.preemphasis_scope == "frame" else 0.0,
        config.log_floor, config.dynamic_range or 0.0, config.log_offset, config.log_scale,
    )  # fmt: skip
    kinds = K.stage_kinds(fft.radices.tolist(), config.hop_length, config.frame_length)
    plan = _KernelPlan(np.ascontiguousarray(floats, dtype), ints, params, kinds)
    for a in plan[:3]:
        a.flags.writeable = False
    return plan


def finish_ranges(plan: _KernelPlan, out: np.ndarray, peaks: np.ndarray) -> None:
    """The dynamic-range clamp, offset and scale on ``out`` ``(batch, n_mels, n_frames)``, in place.

    For features computed by several kernel calls over frame ranges (``finish=False``);
    ``peaks`` ``(ranges, batch)`` holds each call's peaks.
    """
    dyn, (offset, scale) = plan.ints[K.I_DYN] != 0, plan.params[[K.P_OFFSET, K.P_SCALE]]
    if dyn or offset or scale != 1.0:
        rows = out.reshape(out.shape[0], -1)
        K.log_post(rows, peaks.max(axis=0), dyn, plan.params[K.P_DYNAMIC_RANGE], offset, scale)


_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pool_lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="amser-numba")
        return _pools[workers]


def power_spectrum(frames: np.ndarray, n_fft: int, *, power: float = 2.0) -> np.ndarray:
    """The hand-written FFT's ``|rfft(frames, n_fft)| ** power`` (as :func:`amser_dsp.frontend.power_spectrum`).

    For testing and profiling the kernel on its own: :meth:`NumbaBackend.log_mel` fuses it with the other stages.
    ``frames`` must be float32 or float64 with at most ``n_fft`` samples, and ``fft_supported(n_fft)``.
    """
    if frames.shape[-1] > n_fft or not fft_supported(n_fft) or frames.dtype not in (np.float32, np.float64):
        raise BackendError(
            f"the Numba FFT takes float32/float64 frames of at most n_fft={n_fft} samples, "
            f"n_fft with fft_supported(n_fft); got {frames.dtype} frames of {frames.shape[-1]}"
        )
    plan = _fft_plan(n_fft, frames.dtype)
    rows = np.ascontiguousarray(frames.reshape(-1, frames.shape[-1]))
    out = np.empty((rows.shape[0], n_fft // 2 + 1), frames.dtype)
    if rows.shape[0]:
        K.frames_power(rows, out, plan.radices, plan.twr, plan.twi, plan.twoff, plan.rtr, plan.rti, power == 1.0)
    return out.reshape((*frames.shape[:-1], n_fft // 2 + 1))


def apply_mel(power: np.ndarray, filterbank: np.ndarray) -> np.ndarray:
    """The band-limited Mel kernel (as :func:`amser_dsp.frontend.apply_mel`): only each band's nonzero span is summed.

    For testing and profiling the kernel on its own; ``power`` is ``(..., frames, bins)`` float32 or float64.
    """
    if power.ndim < 2 or power.dtype not in (np.float32, np.float64):
        raise BackendError(
            f"the Numba Mel kernel takes (..., frames, bins) float32/float64, got {power.dtype} {power.shape}"
        )
    plan = _mel_plan_from(np.asarray(filterbank, power.dtype))
    lead, (frames, _) = power.shape[:-2], power.shape[-2:]
    rows = np.ascontiguousarray(power).reshape((-1, *power.shape[-2:]))
    out = np.empty((rows.shape[0], filterbank.shape[0], frames), power.dtype)
    for i in range(rows.shape[0]):
        K.mel_energies_kernel(rows[i], out[i], plan.weights, plan.lo, plan.hi, plan.off)
    return out.reshape(lead + out.shape[1:])


class _Call(NamedTuple):
    """Per config and dtype: what :meth:`NumbaBackend.log_mel` needs besides the samples."""

    config: FeatureConfig  # kept alive: the cache is keyed by its id()
    plan: _KernelPlan | None  # None: not for the Numba FFT (the NumPy back end computes it)
    workspace: int  # items in the kernel's workspace
    local: threading.local  # each thread's workspace for this config and dtype
    frames: dict[int, int]  # frame count by number of samples (checked by check_padding first)
    no_peaks: np.ndarray  # empty: the kernel finishes the log itself


class NumbaBackend(Backend):
    """Fused Numba kernels: framing, real FFT, power, band-limited Mel and log in one pass over each block.

    Parameters
    ----------
    workers : int, optional
        Threads for long audio (the kernels release the GIL, so frame ranges
        run truly in parallel).  Default: ``AMSER_DSP_NUMBA_WORKERS`` or 1.
        One thread is the right default on a busy or small machine; see
        docs/benchmarks.md for the scaling measured.
    variant : str, optional
        Kernel variant (:data:`amser_dsp.backends.variants.VARIANTS`) for every
        signal length; default: the ones chosen for this CPU per length class
        (:func:`amser_dsp.backends.variants.choose`: the override, the measured
        plan, or the default rule).  Every variant computes the same features.
    """

    name = "numba"
    #: Below this many frames per worker, threads cost more than they save.
    min_frames_per_worker = 1024

    def __init__(self, workers: int | None = None, *, variant: str | None = None) -> None:
        if workers is None:
            workers = int(os.environ.get("AMSER_DSP_NUMBA_WORKERS", "1"))
        if workers < 1:
            raise BackendError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        if variant is None:
            self.choice = variants.choose()
        else:
            v = variants.get(variant)
            self.choice = variants.Choice(v, v, "NumbaBackend(variant=...)")
        #: The long-input variant (the short one is ``self.choice.short``).
        self.variant = self.choice.long
        # Entry points compile on their first call: only the variants this process uses are compiled.
        self._short_block = K.MEL_BLOCK[self.choice.short.shape]
        self._long_block = K.MEL_BLOCK[self.choice.long.shape]
        self._lanes = max(self.choice.short.lanes, self.choice.long.lanes)  # sizes the shared workspace
        self._short_frames = variants.SHORT_FRAMES
        self._fallback = NumpyBackend()
        self._calls: dict[tuple[int, np.dtype], _Call] = {}  # at most 16: each holds a workspace per thread

    # -------------------------------------------------------- fused path
    def _call_for(self, config: FeatureConfig, dtype: np.dtype) -> _Call:
        """What a call with ``config`` and ``dtype`` needs, cached by the config's identity.

        Keyed by ``id(config)``, not its hash (hashing a frozen dataclass walks
        every field: 0.4 us a call); the entry keeps the config alive, so the id
        cannot be reused while cached.
        """
        call = self._calls.get((id(config), dtype))
        if call is not None and call.config is config:
            return call
        plan, size = None, 0
        if dtype in (np.float32, np.float64) and fft_supported(config.n_fft):
            plan = _kernel_plan(config, dtype)
            layout: Any = K._workspace_layout  # a Numba dispatcher: py_func is the plain Python function
            size = layout.py_func(
                config.hop_length, config.frame_length, config.n_fft, config.n_mels, dtype.itemsize, self._lanes
            )[3]
        call = _Call(config, plan, size, threading.local(), {}, np.empty(0, dtype))
        if len(self._calls) >= 16:
            self._calls.clear()
        self._calls[(id(config), dtype)] = call
        return call

    @staticmethod
    def _workspace(call: _Call) -> np.ndarray:
        """This thread's kernel workspace for ``call``'s config and dtype, kept between calls.

        One per config, not per thread only: the kernel leaves stale values in it,
        and those of the same config are samples, finite and in range.
        """
        work = getattr(call.local, "work", None)
        if work is None:
            work = call.local.work = np.zeros(call.workspace, call.no_peaks.dtype)
        return work

    @staticmethod
    def _frames(call: _Call, n: int) -> int:
        """``call.config.num_frames(n)`` after :func:`check_padding`, remembered (streams repeat sizes)."""
        frames = call.frames.get(n)
        if frames is None:
            check_padding(n, call.config)
            frames = call.config.num_frames(n)
            if len(call.frames) >= 256:
                call.frames.clear()
            call.frames[n] = frames
        return frames

    def _run_ranges(self, call: _Call, plan: _KernelPlan, x: np.ndarray, out: np.ndarray, workers: int) -> None:
        """The kernel over contiguous frame ranges (a multiple of LANES each), one pool task per range.

        Each task reports its peaks; the dynamic-range clamp waits for all of them.
        """
        n_frames = out.shape[-1]
        block = self._short_block if n_frames <= self._short_frames else self._long_block
        chunk = -(-n_frames // (2 * workers))
        chunk = -(-chunk // K.LANES) * K.LANES
        starts = range(0, n_frames, chunk)
        peaks = np.empty((len(starts), x.shape[0]), out.dtype)

        def task(i: int, t: int) -> None:
            stop = min(t + chunk, n_frames)
            block(x, out, peaks[i], t, stop, *plan, False, self._workspace(call))

        futures = [_pool(workers).submit(task, i, t) for i, t in enumerate(starts)]
        for f in futures:
            f.result()
        finish_ranges(plan, out, peaks)

    def log_mel(self, samples: np.ndarray, config: FeatureConfig, *, workers: int | None = None) -> np.ndarray:
        """Fused path: checked samples ``(..., n)`` to features ``(..., n_mels, n_frames)``.

        Parameters
        ----------
        samples : ndarray
            C-contiguous float32 or float64 audio (as :func:`amser_dsp.frontend.check_audio` returns).
        config : FeatureConfig
            Any valid config; sizes the FFT does not cover go to the NumPy back end.
        workers : int, optional
            Threads for this call (default: the back end's ``workers``).
        """
        # The per-call path of short clips and streaming blocks: every look-up is cached.
        call = self._call_for(config, samples.dtype)
        if call.plan is None:
            return self._fallback.log_mel(samples, config)
        n = samples.shape[-1]
        n_frames = call.frames.get(n) or self._frames(call, n)
        x = samples.reshape(-1, n) if samples.flags.c_contiguous else np.ascontiguousarray(samples).reshape(-1, n)
        out = np.empty((x.shape[0], config.n_mels, n_frames), samples.dtype)
        if n_frames:
            workers = self.workers if workers is None else workers
            if workers > 1 and n_frames * x.shape[0] >= 2 * self.min_frames_per_worker:
                self._run_ranges(call, call.plan, x, out, workers)
            else:
                work = getattr(call.local, "work", None)
                if work is None:
                    work = self._workspace(call)
                block = self._short_block if n_frames <= self._short_frames else self._long_block
                block(x, out, call.no_peaks, 0, n_frames, *call.plan, True, work)
        return out[0] if samples.ndim == 1 else out.reshape((*samples.shape[:-1], *out.shape[1:]))
