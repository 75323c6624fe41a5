"""Tables, JSON and plots of benchmark records."""
import json
import math


def _fmt_time(s):
    if s < 1e-3:
        return f"{s * 1e6:8.1f} us"
    return f"{s * 1e3:8.2f} ms"


def table(records):
    """A readable table: one block per case, one row per implementation."""
    lines = []
    header = f"{'kernel':<10} {'size':>9} {'thr':>3} {'implementation':<15} {'median':>11} {'GB/s':>7} " \
             f"{'%roof':>6} {'fastopt x':>9}"
    lines.append(header)
    lines.append("-" * len(header))
    last = None
    for r in records:
        case = (r["family"], r["kernel"], r["size"], r["dtype"], r["threads"])
        if last is not None and case != last:
            lines.append("")
        last = case
        pct = f"{r['pct_roofline']:5.0f}%" if r.get("pct_roofline") is not None else "     -"
        speed = f"{r['fastopt_speedup']:8.2f}x" if r.get("fastopt_speedup") is not None else "        -"
        lines.append(f"{r['kernel']:<10} {r['size']:>9} {r['threads']:>3} {r['impl']:<15} "
                     f"{_fmt_time(r['median_s']):>11} {r['gbps']:7.1f} {pct:>6} {speed:>9}")
    lines.append("")
    lines.append("fastopt x: time of that implementation / time of fastopt (> 1: fastopt is faster). "
                 "%roof: roofline probe time / time.")
    return "\n".join(lines)


def write_json(path, records, config):
    with open(path, "w") as f:
        json.dump({"config": config, "results": records}, f, indent=1)


def plot(path, records):
    """Achieved GB/s against elements per call, one panel per kernel, one line per implementation, the roofline
    probe drawn dashed. Needs matplotlib (``pip install fastopt[plot]``)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("--plot needs matplotlib: pip install 'fastopt[plot]'") from exc
    kernels = sorted({(r["family"], r["kernel"], r["threads"]) for r in records})
    cols = min(4, len(kernels))
    rows = math.ceil(len(kernels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (family, kernel, threads) in zip(axes.flat, kernels):
        sub = [r for r in records if (r["family"], r["kernel"], r["threads"]) == (family, kernel, threads)]
        for impl in dict.fromkeys(r["impl"] for r in sub):
            pts = sorted((r["numel"], r["gbps"], r["size"]) for r in sub if r["impl"] == impl)
            style = dict(linestyle="--", color="black") if impl == "roofline" else dict(marker="o")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=impl, **style)
        ax.set_xscale("log")
        ax.set_title(f"{kernel} ({threads} thread{'s' if threads > 1 else ''})")
        ax.set_xlabel("elements per call")
        ax.set_ylabel("GB/s")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(kernels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
