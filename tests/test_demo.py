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


def test_demo_synthetic_dataset_compares_every_library(tmp_path):
    """--dataset synthetic (a small --samples here) prints each library's time, accuracy and state memory."""
    args = [sys.executable, "-m", "fastopt", "demo", "--quick", "--dataset", "synthetic", "--samples", "1500",
            "--repeats", "1", "--hidden", "32"]
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(fastopt.__file__))))
    out = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("synthetic: 1200 train / 300 test samples, 128 features, 10 classes")
    names = ["fastopt MLPClassifier", "sklearn MLPClassifier"]
    try:
        import torch  # noqa: F401
        names.append("torch (torch.optim.Adam)")
    except ImportError:
        pass
    for name in names:
        line = next(line for line in text.splitlines() if line.strip().startswith(name))
        assert "ms/epoch" in line and "test accuracy" in line
        # Adam keeps two moments per weight: (128*32 + 32 + 32*10 + 10) * 2 * 4 bytes (float32)
        assert "optimizer state    0.03 MiB" in line, line
