"""fastopt bench's Markdown report: rewriting a report keeps its hand-written tail (from KEEP_MARKER on)."""
from fastopt.bench.report import KEEP_MARKER, kept_tail, markdown

RECORD = dict(family="optim", kernel="Adam", size=10, threads=1, impl="fastopt", median_s=1e-6, gbps=1.0,
              pct_roofline=None, fastopt_speedup=1.0)


def test_kept_tail(tmp_path):
    path = tmp_path / "README.md"
    assert kept_tail(path) == ""                               # no file yet
    path.write_text("# old report\n| a | b |\n")
    assert kept_tail(path) == ""                               # no marker: nothing is kept
    tail = f"{KEEP_MARKER}\n\n## Accuracy\n\nhand-written\n"
    path.write_text("# old report\n| a | b |\n\n" + tail)
    assert kept_tail(path) == "\n" + tail


def test_rewritten_report_keeps_the_tail(tmp_path):
    path = tmp_path / "README.md"
    tail = f"{KEEP_MARKER}\n\n## Accuracy\n\nhand-written\n"
    path.write_text("# stale numbers\n\n" + tail)
    path.write_text(markdown([RECORD], {}, "fastopt bench") + kept_tail(path))
    text = path.read_text()
    assert text.startswith("# fastopt benchmark results") and "stale numbers" not in text
    assert text.endswith(tail) and text.count(KEEP_MARKER) == 1
