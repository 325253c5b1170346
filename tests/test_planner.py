"""The kernel-variant planner: measured on this CPU, cached, reused by later processes, overridable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import amser_dsp
from amser_dsp.backends import planner, variants

pytest.importorskip("numba")

from amser_dsp.backends.numba_backend import NumbaBackend

#: Fast planner settings for tests: a fraction of a second of timing.
QUICK = {"budget": 1.0, "rounds": (7, 25)}


@pytest.fixture(autouse=True)
def plan_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own, empty plan folder and no override."""
    monkeypatch.setenv(variants.PLAN_DIR_ENV_VAR, str(tmp_path))
    monkeypatch.delenv(variants.ENV_VAR, raising=False)
    return tmp_path


def slowed(repeats: dict[str, int]) -> planner.Maker:
    """Each candidate's real kernel, run ``repeats[name]`` times per call (1 if not named): slowed on purpose."""

    def make(name: str):
        fn, k = NumbaBackend(variant=name).log_mel, repeats.get(name, 1)

        def call(x, config):
            for _ in range(k):
                out = fn(x, config)
            return out

        return call

    return make


def busy(micros: dict[str, float]) -> planner.Maker:
    """Candidates that only spin for a fixed time per call (no kernel): the planner's arithmetic alone."""

    def make(name: str):
        def call(x, config):
            end = time.perf_counter() + micros[name] * 1e-6
            while time.perf_counter() < end:
                pass

        return call

    return make


def test_picks_the_fastest_candidate_with_slowed_ones_injected() -> None:
    # The default (lanes64t48) and lanes32 are slowed on purpose; lanes64p, unslowed, must win in both classes.
    make = slowed({"lanes64t48": 4, "lanes32": 3})
    plan = planner.measure(["lanes64t48", "lanes64p", "lanes32"], make=make, **QUICK)
    assert plan["default"] == variants.reference().name == "lanes64t48"  # measured against, not the no-plan default
    assert variants.select().name == "lanes64p"  # without a plan: one compiled width
    assert plan["choice"] == {"short": "lanes64p", "long": "lanes64p"}
    for per in plan["timings"].values():
        assert per["lanes64p"]["ratio"] < per["lanes32"]["ratio"] and per["lanes64p"]["ratio"] < 0.8  # measured
    assert 7 <= plan["rounds"] <= 25


@pytest.mark.parametrize(
    ("rounds", "expected"),
    [
        ({"d": [10, 10, 10, 10], "tie": [10, 10, 10, 10]}, "d"),  # a tie keeps the default
        ({"d": [10, 10, 10, 10], "a": [9.9, 9.9, 9.9, 9.9]}, "d"),  # 1% is within noise
        ({"d": [10, 10, 10, 10], "a": [9, 9, 9, 9], "b": [5, 5, 5, 5]}, "b"),  # the fastest wins
        ({"d": [10, 10, 10, 10], "a": [9, 9, 9, 9], "slow": [30, 30, 30, 30]}, "a"),
        ({"d": [10, 10, 10, 10], "lucky": [5, 10.5, 10.5, 10.5]}, "d"),  # one lucky round is not a win
        ({"d": [10, 20, 10, 20], "loaded": [9, 9, 9, 9]}, "loaded"),  # load on the default's rounds
        ({"d": [8, 10, 10, 10], "a": [9.5, 9.5, 9.5, 9.5]}, "d"),  # not faster than the default's best round
    ],
)
def test_the_decision_rule(rounds: dict[str, list[float]], expected: str) -> None:
    choice, stats = variants.decide(rounds, "d")
    assert choice == expected
    assert stats["d"] == {"ratio": 1.0, "best_ratio": 1.0}


def test_bad_planner_arguments_are_refused() -> None:
    with pytest.raises(amser_dsp.UnknownBackendError, match="unknown Numba kernel variant 'lanes7'"):
        planner.measure(["lanes7"], **QUICK)
    with pytest.raises(amser_dsp.BackendError, match="budget > 0"):
        planner.measure(["lanes64"], budget=0)
    with pytest.raises(SystemExit):
        planner.main(["--budget", "-1"])
    with pytest.raises(SystemExit):
        planner.main(["--candidates", "lanes64"])  # only with --measure


_CHILD = """
import json
from amser_dsp.backends import _codegen, planner, variants
from amser_dsp.backends.numba_backend import NumbaBackend
be = NumbaBackend()
print(json.dumps({"short": be.choice.short.name, "long": be.choice.long.name, "source": be.choice.source}))
"""


def _child(env_extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(amser_dsp.__file__).parents[1]), **(env_extra or {})}
    run = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_new_process_reuses_the_plan_and_does_not_measure(plan_dir: Path) -> None:
    assert _child()["source"].startswith("default")  # nothing measured: the default, and no file made
    assert not list(plan_dir.iterdir())
    plan = planner.measure(["lanes64t48", "lanes32"], make=slowed({"lanes64t48": 4}), **QUICK)
    assert plan["choice"] == {"short": "lanes32", "long": "lanes32"}  # not the default: reuse is visible
    path = variants.save_plan(plan)
    assert path.parent == plan_dir and [p.name for p in plan_dir.iterdir()] == [path.name]  # no temp file left
    before = path.stat().st_mtime_ns
    child = _child()
    assert (child["short"], child["long"]) == ("lanes32", "lanes32")
    assert child["source"] == f"plan {path}"
    assert path.stat().st_mtime_ns == before  # read, not measured again
    # The override still wins over the plan.
    forced = _child({variants.ENV_VAR: "lanes16"})
    assert (forced["short"], forced["long"], forced["source"]) == ("lanes16", "lanes16", variants.ENV_VAR)


def _plan(choice: dict[str, str]) -> dict:
    return {"format": variants.PLAN_FORMAT, "key": variants.plan_key(), "choice": choice, "measured": "then"}


@pytest.mark.parametrize(
    "damage",
    [
        lambda plan: "{not json",
        lambda plan: json.dumps([plan]),
        lambda plan: json.dumps({**plan, "key": {**plan["key"], "amser_dsp": "0.0.1"}}),  # another version
        lambda plan: json.dumps({**plan, "key": {**plan["key"], "cpu": "another CPU"}}),  # copied from elsewhere
        lambda plan: json.dumps({**plan, "choice": {"short": "lanes7", "long": "lanes64"}}),
        lambda plan: json.dumps({**plan, "format": 0}),
        lambda plan: "",
    ],
)
def test_a_corrupt_or_stale_plan_is_ignored_then_rebuilt(damage, monkeypatch: pytest.MonkeyPatch) -> None:
    path = variants.plan_path()
    path.write_text(damage(_plan({"short": "lanes16", "long": "lanes16"})), encoding="utf-8")
    assert variants.load_plan() is None
    choice = variants.choose()
    assert choice.source.startswith("default") and choice.long == variants.select()
    assert NumbaBackend().choice == choice  # the back end still works, on the default
    # warm() rebuilds it (measuring with a stand-in, so the test does not depend on this CPU's timings).
    monkeypatch.setattr(planner, "_default_maker", busy({n: 50 + 10 * i for i, n in enumerate(variants.VARIANTS)}))
    monkeypatch.setattr(planner, "measure", lambda budget: _plan({"short": "lanes32", "long": "lanes64p"}))
    planner.warm(budget=0.1)
    rebuilt = variants.load_plan()
    assert rebuilt is not None and rebuilt["choice"] == {"short": "lanes32", "long": "lanes64p"}
    assert variants.choose().source == f"plan {path}"


def test_a_valid_plan_is_kept_by_warm(monkeypatch: pytest.MonkeyPatch) -> None:
    path = variants.save_plan(_plan({"short": "lanes64", "long": "lanes64p"}))

    def must_not_measure(budget):
        raise AssertionError("warm() measured although a valid plan exists")

    monkeypatch.setattr(planner, "measure", must_not_measure)
    monkeypatch.setattr(planner, "_default_maker", busy({n: 1 for n in variants.VARIANTS}))
    assert planner.warm()["choice"] == {"short": "lanes64", "long": "lanes64p"}
    assert variants.choose() == variants.Choice(variants.get("lanes64"), variants.get("lanes64p"), f"plan {path}")


def test_the_plan_is_keyed_by_cpu_and_versions() -> None:
    key = variants.plan_key()
    assert {"cpu", "llvm_cpu", "features", "amser_dsp", "numba"} <= set(key)
    assert key["amser_dsp"] == amser_dsp.__version__
    assert variants.plan_path({**key, "cpu": "another"}) != variants.plan_path(key)


def test_module_prints_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    variants.save_plan(
        {
            **_plan({"short": "lanes64", "long": "lanes64p"}),
            "rounds": 7,
            "seconds": {"timing": 1.5, "compile_or_load": 0.2},
            "timings": {
                c: {n: {"us_per_audio_s": 40.0, "ratio": 1.0} for n in ("lanes64", "lanes64p")}
                for c in variants.CLASSES
            },
        }
    )
    assert planner.main([]) == 0
    out = capsys.readouterr().out
    assert "up to 500 frames: lanes64 (" in out and "longer: lanes64p (" in out
    assert "| long (60 s) | lanes64p (chosen) |" in out and "7 rounds" in out
