"""The examples/ training loops run and learn, where their autodiff package is installed (skipped otherwise)."""
import importlib.util
import os

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
if not os.path.isdir(EXAMPLES):     # the installed-wheel suite (.ci/wheel.sh) copies tests/ alone
    pytest.skip("examples/ is not beside the tests", allow_module_level=True)


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_autograd_loop_learns(capsys):
    pytest.importorskip("autograd")
    accuracy = _load("autograd_mlp").main(epochs=4)
    assert accuracy > 0.9
    assert "test accuracy" in capsys.readouterr().out


def test_jax_loop_learns(capsys, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    pytest.importorskip("jax")
    accuracy = _load("jax_mlp").main(epochs=4)
    assert accuracy > 0.9
    assert "test accuracy" in capsys.readouterr().out


def test_examples_are_where_the_tests_look():
    assert {"autograd_mlp.py", "jax_mlp.py"} <= set(os.listdir(EXAMPLES))
