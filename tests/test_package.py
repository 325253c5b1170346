"""Package-level promises: a light import, a flat public API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import amser_dsp


def test_import_is_light() -> None:
    code = (
        "import json, sys; import amser_dsp; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('scipy', 'numba', 'torch', 'soundfile', 'fastapi', 'ctranslate2', 'matplotlib') "
        "or m.startswith('amser_dsp.server'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(amser_dsp.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) == []


def test_public_api_is_exported() -> None:
    for name in amser_dsp.__all__:
        assert hasattr(amser_dsp, name), name
    assert issubclass(amser_dsp.ConfigError, ValueError)
    assert amser_dsp.__version__


def test_the_readme_fuzzing_command_has_an_extra() -> None:
    import tomllib

    root = Path(amser_dsp.__file__).parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("atheris") for dep in extras["fuzz"])
    readme = (root / "README.md").read_text()
    assert "'.[fuzz]'" in readme and "tests/fuzz/fuzz_container.py" in readme


def test_the_developer_hypothesis_profile_is_as_strict_as_cis() -> None:
    # CI's derandomized examples passed where a newcomer's random `make test` (30 examples, other health
    # checks) failed; the developer's run must search at least as hard, just with fresh examples.
    from hypothesis import settings

    ci, dev = settings.get_profile("ci"), settings.get_profile("dev")
    assert ci.derandomize and not dev.derandomize
    assert dev.max_examples >= ci.max_examples
    assert dev.deadline == ci.deadline
    assert set(dev.suppress_health_check) <= set(ci.suppress_health_check)
