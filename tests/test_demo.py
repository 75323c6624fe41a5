"""The main job runs end to end (quick mode) and prints what it promises."""
import os
import subprocess
import sys

import pytest

import fastopt


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path):
    plot = tmp_path / "curves.png"
    args = [sys.executable, "-m", "fastopt", "demo", "--quick"]
    try:
        import matplotlib  # noqa: F401
        args += ["--plot", str(plot)]
    except ImportError:
        plot = None
    # the fastopt under test (installed or built in place), not an unbuilt checkout in the cwd
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(fastopt.__file__))))
    out = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in ("test accuracy", "macro precision", "ms per epoch", "sklearn MLPClassifier",
                   "fastopt MLPClassifier", "faster"):
        assert needle in text, f"{needle!r} missing from the demo's output:\n{text}"
    accuracy = float(text.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.9
    if plot is not None:
        assert plot.stat().st_size > 1000
