"""Turning timed entries into numbers and the printed report (and run-time estimates)."""
from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence



from .. import estimate
from ..config import RunSpec

from .setup import perf_rows, targeted
from .timing import MIB, MODEL, Device, Entry

#: Rows held to "step time <= TARGET_RATIO x uniform" (selection must be cheap next to the
#: step it saves): those whose samplers declare ``step_target`` (``PerfRow``).
TARGETED = targeted("step_target")
TARGET_RATIO = 1.05
#: Loop efficiency (pure model step / our step) the rows declaring ``efficiency_target`` reach.
EFFICIENCY_TARGET = 0.95
EFFICIENCY_TARGETED = targeted("efficiency_target")


# ----------------------------------------------------------------------------- results
def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def summarise(entries: Sequence[Entry], dev: Device) -> dict[str, dict[str, Any]]:
    """Per-entry medians; ratios are per round (same round = same machine state), then median."""
    uniform = next(e for e in entries if e.label == "uniform")
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        ratios = [s / u for s, u in zip(e.step_s, uniform.step_s)]
        step = _median(e.step_s)
        out[e.label] = {
            "images_per_s": e.batch_size / step,
            "step_ms": step * 1e3,
            "ratio_to_uniform": _median(ratios),
            "ratio_rounds": ratios,
            "step_ms_rounds": [s * 1e3 for s in e.step_s],
            "start_epoch_ms": _median(e.start_s) * 1e3,
            "selection_ms": _median(e.selection_s) * 1e3 if e.selection_s else None,
            "selection_share": (_median([a / b for a, b in zip(e.selection_s, e.step_s)])
                                if e.selection_s else None),
            "forwards_per_step": e.forwards / e.timed_steps,
            "peak_memory_mib": e.peak_bytes(dev) / MIB,
            "resident_mib": e.resident / MIB,
        }
    return out


def loop_efficiency(entries: Sequence[Entry]) -> dict[str, dict[str, Any]]:
    """Per sampler: pure model step time / its full step time, per round, then the median
    (1 = the suite adds nothing around the model; the rest is data, selection, bookkeeping)."""
    model = next((e for e in entries if e.label == MODEL), None)
    if model is None:
        return {}
    out = {}
    for e in entries:
        if e.label == MODEL or not hasattr(e, "trainer"):
            continue
        rounds = [m / s for m, s in zip(model.step_s, e.step_s)]
        value = _median(rounds)
        out[e.label] = {"efficiency": value, "rounds": rounds,
                        "target": EFFICIENCY_TARGET if e.label in EFFICIENCY_TARGETED else None,
                        "met": (value >= EFFICIENCY_TARGET) if e.label in EFFICIENCY_TARGETED else None}
    return out


def arm_label(spec: RunSpec) -> str:
    """The row of this table that times a matrix run's sampler: of its sampler's rows, the
    one whose parameters the run shares most (IMPON with ``select: lowest`` is
    ``impon_low``), else the row named after the sampler."""
    s = spec["sampler"]
    best, matched = s["name"], -1
    for label, (name, row) in perf_rows().items():
        if name != s["name"] or any(s.get(k) != v for k, v in row.params.items()):
            continue
        if len(row.params) > matched:
            best, matched = label, len(row.params)
    return best


def epoch_estimates(step_s: Mapping[str, float], batch_size: int, n_train: int = 50_000,
                    n_test: int = 10_000) -> dict[str, float]:
    """Seconds per epoch of ``n_train`` images (+ evaluation of ``n_test``) per sampler, with
    ``benchmarks.estimate``'s evaluation convention (a no-grad forward = FORWARD_FRACTION of
    a training step, at the training batch size)."""
    t_eval = n_test / batch_size * estimate.FORWARD_FRACTION * step_s["uniform"]
    return {label: (n_train // batch_size) * s + t_eval for label, s in step_s.items()}


def matrix_estimate(step_s: Mapping[str, float], batch_size: int,
                    matrix_name: str = "paper") -> dict[str, Any]:
    """Sequential (1 job) time of a matrix of built-in datasets from measured step times.

    Per run: its optimizer steps x the measured step time of its sampler (scaled per image
    if the matrix's batch differs from the measured one) + evaluations as in
    ``benchmarks.estimate.run_seconds``. A sampler not measured here falls back to
    uniform x ``estimate.sampler_factor``; the Adam arm is timed as the uniform SGD step.
    """
    from .. import matrix

    mat = matrix.load(matrix_name)
    per_image = {k: v / batch_size for k, v in step_s.items()}
    total, fallback, epochs = 0.0, 0, set()
    for spec in mat.runs:
        n_train, n_test, _ = estimate.BUILTIN_SIZES[spec["dataset"]]
        b, e = spec["batch_size"], spec["epochs"]
        label = arm_label(spec)
        if label in per_image:
            t_step = per_image[label] * b
        else:
            fallback += 1
            t_step = per_image["uniform"] * b * estimate.sampler_factor(spec)
        t_uniform = per_image["uniform"] * b
        total += e * (n_train // b) * t_step + (e + 1) * n_test / b * estimate.FORWARD_FRACTION * t_uniform
        epochs.add(e)
    return {"matrix": mat.name, "runs": len(mat.runs), "epochs": sorted(epochs),
            "seconds": total, "runs_estimated_from_uniform": fallback}


def _fmt_mib(x: float) -> str:
    return f"{x:,.0f}"


def render(res: dict[str, Any]) -> str:
    """The report: header, markdown table, ratios against targets, estimates (CUDA)."""
    cfg, rows = res["config"], res["entries"]
    lines = [
        f"device: {res['device']} | torch {res['torch']} | width {cfg['width']} | batch "
        f"{cfg['batch_size']} | dataset {res['dataset']['description']} | amp {cfg['amp']} | "
        f"channels_last {cfg['channels_last']} | compile {cfg['compile']}",
        f"{cfg['rounds']} interleaved rounds x {cfg['steps']} timed steps per entry after "
        f"{cfg['warmup']} warm-up steps; order rotated + shuffled per round; medians over rounds; "
        f"ratio = step time / uniform's step time in the same round (median, [min, max]).",
        "",
        "| sampler | images/s | step ms | ratio to uniform | forwards/step | selection ms/step "
        f"(share) | start_epoch ms | peak memory MiB ({res['memory']['peak']}) | own resident MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows.items():
        rr = r["ratio_rounds"]
        spread = f" [{min(rr):.3f}, {max(rr):.3f}]" if len(rr) > 1 else ""
        sel = ("-" if r["selection_ms"] is None
               else f"{r['selection_ms']:,.2f} ({100 * r['selection_share']:.1f}%)")
        lines.append(
            f"| {label} | {r['images_per_s']:,.1f} | {r['step_ms']:,.1f} | "
            f"{r['ratio_to_uniform']:.3f}{spread} | {r['forwards_per_step']:.1f} | {sel} | "
            f"{r['start_epoch_ms']:.2f} | {_fmt_mib(r['peak_memory_mib'])} | "
            f"{_fmt_mib(r['resident_mib'])} |")
    lines += ["", f"memory: {res['memory']['note']}",
              "step ms includes begin_epoch (start_epoch ms) spread over an epoch of "
              f"{res['steps_per_epoch']} steps; forwards/step counts examples forwarded "
              "(training + selection scoring); selection = the sampler's own next_batch + "
              "observe (+ begin_epoch spread over the epoch), timed inside the step "
              f"({'CUDA events' if res['cuda'] else 'host clock'}), share = of the step time."]
    conv = res.get("conventional")
    if conv is not None:
        lines.append(
            f"conventional pipeline (torchvision Dataset + DataLoader({conv['workers']} workers"
            f"{', pin_memory' if res['cuda'] else ''}) + PIL transforms, same model/batch/SGD/loss): "
            f"ours (uniform) / conventional images/s = {conv['ours_over_conventional']:.3f} "
            f"(median of per-round ratios; > 1: ours is faster)"
            + ("" if res["cuda"] else
               f" -- CPU target ours >= conventional: {'met' if conv['target_met'] else 'NOT met'}"))
    eff = res.get("loop_efficiency") or {}
    if eff:
        lines.append("loop efficiency (pure model step on a pre-made device batch / our full step, "
                     "median of rounds): " + ", ".join(
                         f"{k} {v['efficiency']:.3f}"
                         + ("" if v["target"] is None else
                            f" ({'met' if v['met'] else 'NOT met'} >= {v['target']:.2f})")
                         for k, v in eff.items()))
    for label, t in res["targets"].items():
        lines.append(f"target {label} step <= {TARGET_RATIO:.2f}x uniform: "
                     f"{t['ratio']:.3f} -> {'met' if t['met'] else 'NOT met'} (its selection "
                     f"itself: {100 * t['selection_share']:.2f}% of a step, uniform's "
                     f"{100 * t['uniform_selection_share']:.2f}%)")
    host = res.get("host_data")
    if host is not None:
        rr = host["ratio_rounds"]
        lines.append(f"host-resident data (uniform, images in page-locked host memory read by the "
                     f"device in place, --data-placement host): step time {host['ratio_to_device']:.3f}x "
                     f"device-resident [{min(rr):.3f}, {max(rr):.3f}]"
                     + ("" if res["cuda"] else " (on a CPU both are host memory: this checks the "
                        "code path, not a bus)"))
    for label, x in (res.get("selection_forwards") or {}).items():
        lines.append(f"{label} selection forwards: step time {x['extra_step_pct']:+.1f}% vs "
                     f"uniform, {x['forwards_per_step']:.0f} examples forwarded per step "
                     f"({x['forwards_per_trained']:.2f} per trained example)")
    est = res.get("estimates")
    if est:
        ep = ", ".join(f"{k} {estimate.format_seconds(v)}" for k, v in est["epoch_seconds"].items())
        m = est["matrix"]
        lines.append(f"estimated epoch time for CIFAR-10-sized data (50,000 images, + 10,000 "
                     f"evaluated), amp {cfg['amp']}: {ep}")
        lines.append(f"estimated {m['matrix']} matrix ({m['runs']} runs x "
                     f"{'/'.join(map(str, m['epochs']))} epochs) on this device with 1 job: "
                     f"{estimate.format_seconds(m['seconds'])}"
                     + (f" ({m['runs_estimated_from_uniform']} runs from uniform x sampler factor)"
                        if m["runs_estimated_from_uniform"] else "")
                     + ("" if cfg["width"] == 1.0 else f" (at width {cfg['width']}, as measured)"))
    if res.get("nonfinite"):
        lines.append(f"warning: non-finite training loss at the end for {', '.join(res['nonfinite'])} "
                     "(timing still valid, but check the configuration)")
    return "\n".join(lines)

