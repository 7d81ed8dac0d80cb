"""``make gpu-check``: one command that checks what only a GPU can check, and writes a report.

    python -m benchmarks.gpu_check [--out results/gpu-check.md] [--data-root data]
        [--jobs 1,2,4] [--skip-tests]

Why: the suite is built and tested on machines without a GPU. Everything a CPU can
exercise runs in ``make test`` (sync-freedom via an op recorder, the amp/compile/
channels_last code paths); this script measures the rest on the user's GPU:

1. the CUDA-only tests (``torch.cuda.set_sync_debug_mode("error")`` over the training step
   of every sampler, with the images on the device and host-resident; CUDA data paths),
   via pytest;
2. ``make perf`` at its CUDA defaults (every sampler, the conventional pipeline, the loop
   efficiency), then uniform alone with each knob flipped: ``amp`` bf16, ``compile`` on,
   ``channels_last`` off;
3. one full CIFAR-10-sized epoch of the suite (CIFAR-10 from ``--data-root`` if it is
   there, else 50,000 synthetic images), uniform sampler, suite defaults;
4. the measured estimate of the paper matrix (``benchmarks/matrices/paper.yaml``) with 1,
   2 and 4 jobs per GPU: the sequential estimate from the measured step times
   (``perf.matrix_estimate``), times how much one step slows down when k copies of the
   uniform perf run share the GPU, divided by k.

It writes ``results/gpu-check.md`` (device, versions, every figure) to share. Without CUDA
it prints one line and exits 2. The report writer (:func:`render_report`) takes the
measurements as a plain dict, so it is tested on CPU with injected numbers; only the
measuring itself needs the GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from . import estimate, io, perf, provenance
from .errors import UserError, cli_exit

#: The tests that skip without CUDA (pytest ``-k`` over these files).
CUDA_TESTS = ["tests/test_perf.py", "tests/test_samplers_common.py", "tests/test_data.py",
              "tests/test_placement.py"]
CUDA_TEST_FILTER = "cuda or no_device_to_host_sync"
#: Knob variants timed on uniform alone (the baseline is perf's defaults: amp off,
#: compile off, channels_last on).
KNOB_VARIANTS = {"amp bf16": ["--amp", "bf16"], "compile on": ["--compile"],
                 "channels_last off": ["--no-channels-last"]}
REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- measuring
def run_cuda_tests() -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-k", CUDA_TEST_FILTER, *CUDA_TESTS]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.strip().splitlines() if ln.strip()]
    return {"command": " ".join(cmd[2:]), "returncode": p.returncode,
            "summary": lines[-1] if lines else p.stderr.strip()[-300:]}


def run_perf(extra: list[str], json_path: Path) -> dict[str, Any]:
    return perf.main(["--device", "cuda", *extra, "--json", str(json_path)])


def time_epoch(data_root: Path, work: Path) -> dict[str, Any]:
    """One epoch of the suite on CIFAR-10 (or 50,000 synthetic images), uniform, defaults."""
    from .config import RunSpec
    from .train import train_one

    if (data_root / "cifar10").exists() or (data_root / "cifar-10-batches-py").exists():
        root, dataset = data_root, "cifar10"
    else:
        root, dataset = work / "data", perf.SYNTHETIC
        perf.write_synthetic(root, 50_000, 10_000, 10, 0)
    spec = RunSpec.from_dict({"matrix": "gpu-check", "dataset": dataset, "epochs": 1})
    run = work / "epoch"
    train_one(spec, run, data_root=root, download=False, device="cuda")
    import csv

    with open(run / "epochs.csv") as f:
        row = list(csv.DictReader(f))[-1]
    return {"dataset": dataset, "train_seconds": float(row["train_seconds"]),
            "eval_seconds": float(row["eval_seconds"]), "test_acc": float(row["test_acc"])}


def concurrent_uniform_step(k: int, work: Path) -> float:
    """Median uniform step seconds when ``k`` perf processes share the GPU at once."""
    procs, paths = [], []
    for i in range(k):
        path = work / f"jobs{k}-{i}.json"
        paths.append(path)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "benchmarks.perf", "--device", "cuda", "--samplers", "uniform",
             "--no-conventional", "--no-host-data", "--rounds", "5", "--json", str(path)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"a concurrent perf run failed (exit {p.returncode})")
    steps = sorted(json.loads(p.read_text())["entries"]["uniform"]["step_ms"] / 1e3 for p in paths)
    return steps[len(steps) // 2]


# ----------------------------------------------------------------------------- deriving
def jobs_estimates(matrix_seconds: float, solo_step_s: float,
                   concurrent_step_s: dict[int, float]) -> dict[int, dict[str, float]]:
    """Paper-matrix wall time with k jobs per GPU: k runs progress at once, each slowed by
    the measured factor ``concurrent step / solo step``."""
    out = {}
    for k, step in sorted(concurrent_step_s.items()):
        slowdown = step / solo_step_s
        out[k] = {"step_s": step, "slowdown": slowdown, "speedup": k / slowdown,
                  "matrix_seconds": matrix_seconds * slowdown / k}
    return out


def measure(data_root: Path, jobs: Sequence[int], skip_tests: bool) -> dict[str, Any]:
    """Everything the report needs (GPU only)."""
    dev = torch.device("cuda")
    res: dict[str, Any] = {"device": provenance.device_name(dev), "versions": provenance.versions(),
                           "git": provenance.git_state(), "host": provenance.host()}
    res["tests"] = None if skip_tests else run_cuda_tests()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        base = run_perf([], work / "perf.json")
        res["perf"] = {"config": base["config"], "samplers": base["samplers"],
                       "loop_efficiency": base["loop_efficiency"],
                       "conventional": base.get("conventional"), "estimates": base.get("estimates"),
                       "host_data": base.get("host_data"),
                       "report": perf.render(base)}
        res["knobs"] = {"baseline": base["samplers"]["uniform"]["step_ms"]}
        for name, extra in KNOB_VARIANTS.items():
            r = run_perf(["--samplers", "uniform", "--no-conventional", "--no-host-data", *extra],
                         work / "knob.json")
            res["knobs"][name] = r["samplers"]["uniform"]["step_ms"]
        res["epoch"] = time_epoch(data_root, work)
        step_s = {k: v["step_ms"] / 1e3 for k, v in base["samplers"].items()}
        m = perf.matrix_estimate(step_s, base["config"]["batch_size"])
        solo = concurrent_uniform_step(1, work)
        conc = {1: solo, **{k: concurrent_uniform_step(k, work) for k in jobs if k != 1}}
        res["matrix"] = {"name": m["matrix"], "runs": m["runs"], "epochs": m["epochs"],
                         "sequential_seconds": m["seconds"],
                         "jobs": jobs_estimates(m["seconds"], solo, conc)}
    return res


# ----------------------------------------------------------------------------- report
def render_report(r: dict[str, Any]) -> str:
    """``results/gpu-check.md`` from the measurements (a dict; see :func:`measure`)."""
    v = r["versions"]
    fmt = estimate.format_seconds
    lines = ["# GPU check", "",
             f"- device: {r['device']}",
             "- versions: " + ", ".join(f"{k} {v[k]}" for k in sorted(v)),
             f"- git: {r['git'].get('commit')}{' (dirty)' if r['git'].get('dirty') else ''}",
             f"- host: {r['host']}", ""]
    t = r.get("tests")
    lines += ["## CUDA-only tests", "",
              "not run (--skip-tests)" if t is None else
              f"`{t['command']}`: {t['summary']} (exit {t['returncode']})", ""]
    p = r["perf"]
    lines += ["## make perf (CUDA defaults)", "", "```", p["report"], "```", "",
              "| sampler | step ms | ratio to uniform | loop efficiency |", "|---|---:|---:|---:|"]
    for label, row in p["samplers"].items():
        eff = p["loop_efficiency"].get(label, {}).get("efficiency")
        lines.append(f"| {label} | {row['step_ms']:.2f} | {row['ratio_to_uniform']:.3f} | "
                     f"{'-' if eff is None else f'{eff:.3f}'} |")
    k = r["knobs"]
    lines += ["", "## Knobs (uniform step, ms)", "", "| variant | step ms | vs baseline |",
              "|---|---:|---:|"]
    for name, ms in k.items():
        lines.append(f"| {name} | {ms:.2f} | {ms / k['baseline']:.3f} |")
    e = r["epoch"]
    lines += ["", "## One CIFAR-10-sized epoch (suite defaults, uniform)", "",
              f"- data: {e['dataset']}; training {e['train_seconds']:.1f} s, evaluation "
              f"{e['eval_seconds']:.1f} s, test accuracy after one epoch {e['test_acc']:.3f}"]
    m = r["matrix"]
    lines += ["", f"## Estimated {m['name']} matrix ({m['runs']} runs x "
              f"{'/'.join(map(str, m['epochs']))} epochs), from the measured step times", "",
              f"- 1 job, sequential: {fmt(m['sequential_seconds'])}", "",
              "| jobs per GPU | uniform step ms | slowdown | throughput x | matrix wall time |",
              "|---:|---:|---:|---:|---:|"]
    for jobs, j in sorted(m["jobs"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {jobs} | {j['step_s'] * 1e3:.2f} | {j['slowdown']:.2f} | "
                     f"{j['speedup']:.2f} | {fmt(j['matrix_seconds'])} |")
    return "\n".join(lines) + "\n"


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/gpu-check.md")
    ap.add_argument("--data-root", default=os.environ.get("DATA_ROOT", "data"))
    ap.add_argument("--jobs", default="1,2,4", help="jobs per GPU to estimate the matrix for")
    ap.add_argument("--skip-tests", action="store_true")
    a = ap.parse_args(argv)
    try:
        a.jobs = sorted({int(x) for x in a.jobs.split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--jobs {a.jobs!r}: expected comma-separated integers, e.g. 1,2,4")
    if not a.jobs or min(a.jobs) < 1:
        raise UserError(f"--jobs: expected integers >= 1, got {a.jobs}")
    return a


def main(argv: Optional[Sequence[str]] = None) -> Path:
    args = _parse(argv)
    if not torch.cuda.is_available():
        raise UserError("gpu-check needs a CUDA GPU and torch.cuda.is_available() is False here; "
                        "run it on a machine with an NVIDIA GPU (CPU checks: make test)")
    out = Path(args.out)
    problem = io.check_writable(out.parent)
    if problem:
        raise UserError(f"--out {out}: {problem}")
    t0 = time.perf_counter()
    res = measure(Path(args.data_root), args.jobs, args.skip_tests)
    res["seconds"] = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    io.write_text(out, render_report(res))
    io.write_json(out.with_suffix(".json"), res)
    print(f"wrote {out} ({res['seconds']:.0f} s)")
    return out


def cli(argv: Optional[Sequence[str]] = None) -> int:
    return cli_exit(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
