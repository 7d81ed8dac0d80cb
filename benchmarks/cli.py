"""``python -m benchmarks run MATRIX ...``.

Exit codes: 0 every run of the matrix (or shard) is done; 1 some run failed, diverged or
was left to another runner; 2 bad input (one line per problem, no traceback, nothing
started).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .errors import UserError

CPU_GUARD_SECONDS = 2 * 3600


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks",
                                 description="IMPON importance-sampling benchmark runner")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or resume) every run of a matrix")
    r.add_argument("matrix", help="matrix name (benchmarks/matrices/NAME.yaml) or a YAML path")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a RunSpec key for every run, e.g. --set epochs=2 --set model.width=0.25")
    r.add_argument("--data-root", default=os.environ.get("DATA_ROOT", "data"),
                   help="where datasets live / are downloaded (default: $DATA_ROOT or ./data)")
    dl = r.add_mutually_exclusive_group()
    dl.add_argument("--download", dest="download", action="store_true", default=True,
                    help="download missing built-in datasets (default)")
    dl.add_argument("--no-download", dest="download", action="store_false",
                    help="never download; a missing dataset is an error")
    r.add_argument("--device", default=os.environ.get("DEVICE", "auto"),
                   help="cpu, cuda, cuda:N or auto (default: cuda if available)")
    r.add_argument("--data-placement", default=os.environ.get("DATA_PLACEMENT", "auto"),
                   metavar="auto|device|host",
                   help="where the images live: on the device, or in pinned host memory the device "
                        "reads in place; auto: the device if they take <= half its free memory "
                        "(docs/speed.md; changes no number)")
    r.add_argument("--log", action="append", default=[], choices=("tensorboard", "wandb"),
                   help="also stream losses and epoch metrics to TensorBoard / W&B (offline unless "
                        "WANDB_MODE is set), into each run folder; repeatable. Needs the extra: "
                        "pip install -e '.[tensorboard]' / '.[wandb]'")
    r.add_argument("--results", default="results", help="results root (default: ./results)")
    r.add_argument("--jobs", type=int, default=1,
                   help="parallel runs (processes), round-robin over visible GPUs; several per GPU is fine")
    r.add_argument("--shard", default=None, metavar="i/n", help="only runs i, i+n, i+2n, ... (0-based)")
    r.add_argument("--launcher", choices=("local", "slurm"), default="local")
    r.add_argument("--dry-run", action="store_true", help="list runs, what is done, and a cost estimate")
    r.add_argument("--yes", action="store_true", help="run even if estimated > 2 h on CPU")
    s = r.add_argument_group("SLURM (--launcher slurm)")
    s.add_argument("--partition", default=None)
    s.add_argument("--time", dest="time_min", type=int, default=240, help="minutes per run")
    s.add_argument("--gpus", dest="gpus_per_task", type=int, default=1)
    s.add_argument("--cpus", dest="cpus_per_task", type=int, default=8)
    s.add_argument("--mem-gb", type=int, default=32)
    s.add_argument("--array-parallelism", type=int, default=64,
                   help="at most this many runs of the array at once (sbatch --array=...%%K; default 64)")
    s.add_argument("--wait", action="store_true", help="wait for the SLURM array to finish")
    s.add_argument("--slurm-account", default=None, help="sbatch --account (default: your default account)")
    s.add_argument("--slurm-qos", default=None, help="sbatch --qos (default: the partition's)")
    s.add_argument("--slurm-constraint", default=None, help="sbatch --constraint, e.g. a100")
    s.add_argument("--sbatch", dest="sbatch", action="append", default=[], metavar="FLAG[=VALUE]",
                   help="any other sbatch flag, repeatable: --sbatch mail-type=END --sbatch exclusive")
    s.add_argument("--slurm-setup", dest="slurm_setup", action="append", default=[], metavar="LINE",
                   help="shell line run in the batch script first, repeatable: --slurm-setup 'module load cuda'")
    s.add_argument("--signal-delay", dest="signal_delay_s", type=int, default=90, metavar="SECONDS",
                   help="SLURM warns a job this long before its time limit; it then requeues itself "
                        "(default 90, at most half of --time)")
    s.add_argument("--slurm-cluster", default=None, help=argparse.SUPPRESS)  # "local" in tests
    p = sub.add_parser("prepare", help="build a prepared dataset: cifar10-5k, tinyimagenet, imagenet32, "
                       "imagenet64, or smoke-data")
    p.add_argument("name", help="cifar10-5k (from the official CIFAR-10), tinyimagenet / imagenet32 / "
                   "imagenet64 (convert the official files you put under DATA_ROOT/NAME/; resumable), "
                   "or smoke-data (the synthetic smoke datasets, no download)")
    p.add_argument("--data-root", default=os.environ.get("DATA_ROOT", "data"))
    p.add_argument("--no-download", dest="download", action="store_false", default=True)
    p.add_argument("--force", action="store_true", help="rebuild even if present")
    ls = sub.add_parser("list", help="list the matrices: description, run count, runs done")
    ls.add_argument("--results", default="results", help="results root to count done runs in (default: ./results)")
    t = sub.add_parser("traits", help="record the samplers' plot traits in existing results (for the plots)")
    t.add_argument("--backfill", metavar="RESULTS_DIR", required=True,
                   help="add plot traits to every run.json under RESULTS_DIR (a matrix's folder or a "
                        "results root) that lacks them, and write methods.json")
    return ap


def preflight(specs: list, args: argparse.Namespace) -> None:
    """Everything that can be checked before training starts: data present and readable,
    batch sizes that fit, a writable results folder. Raises UserError listing problems."""
    from . import io
    from .data import load_run_data

    problems: list[str] = []
    why = io.check_writable(Path(args.results))
    if why:
        problems.append(f"--results {args.results}: {why}; choose a writable folder with --results DIR")
    seen: dict[tuple, Any] = {}
    for spec in specs:
        key = (spec["dataset"], repr(spec["subset"]), spec["validation"], repr(spec["label_noise"]))
        if key not in seen:
            try:  # label noise too: a missing CIFAR-N file is refused before anything runs
                seen[key] = load_run_data(spec["dataset"], args.data_root, args.download, spec["subset"],
                                          spec["validation"], spec["label_noise"])[3]
            except UserError as e:
                seen[key] = None
                problems += e.problems
        info = seen[key]
        if info is not None and spec["batch_size"] > info.n_train:
            problems.append(f"batch_size: {spec['batch_size']} is larger than the training set of "
                            f"{spec['dataset']} ({info.n_train}); lower it with --set batch_size=N")
        bank = spec["sampler"].get("bank_size")
        if info is not None and isinstance(bank, int) and bank > info.n_train:
            problems.append(f"sampler.bank_size: {bank} (arm {spec['arm']}) is larger than the "
                            f"training set of {spec['dataset']} ({info.n_train}); lower bank_size")
        elif info is not None and spec["batch_size"] <= info.n_train:
            problems += size_problems(spec, info.n_train)
    if problems:
        raise UserError(*dict.fromkeys(problems))


def size_problems(spec: Any, n_train: int) -> list[str]:
    """What the data size rules out for ``spec``: a budget leaving no full batch, and the
    sampler's own size rules (``Sampler.check_sizes``), each prefixed with the run's arm."""
    import samplers

    from .train import planned_steps

    where = f"arm {spec['arm']} on {spec['dataset']} ({n_train} training examples)"
    try:
        planned_steps(n_train, spec["batch_size"], spec)
    except UserError as exc:
        return [f"{where}: {p}" for p in exc.problems]
    params = dict(spec["sampler"])
    sampler = samplers.build(params.pop("name"), **params)
    return [f"{where}: {p}" for p in sampler.check_sizes(
        n_train=n_train, batch_size=spec["batch_size"], epochs=spec["epochs"])]


def cmd_run(args: argparse.Namespace) -> int:
    from . import estimate, faults, matrix, runner
    from .config import parse_set
    from .placement import check_requested
    from .train import resolve_device

    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: must be >= 1")
    faults.check_environ()  # a malformed test hook is a usage error, before anything is written
    from .sinks import check_available
    check_available(args.log)  # --log's package missing: one line naming the extra, exit 2
    mat = matrix.load(args.matrix, parse_set(args.sets))
    for note in mat.notes:  # e.g. --set arm=X left the reference arm out
        print(f"note: {note}")
    specs = runner.shard(list(mat.runs), args.shard)
    device = str(resolve_device(args.device))
    check_requested(args.data_placement)
    opts = runner.RunOptions(results=args.results, data_root=args.data_root,
                             download=args.download, device=args.device,
                             progress=runner.is_tty() and args.jobs == 1,
                             log=tuple(dict.fromkeys(args.log)),
                             data_placement=args.data_placement)
    statuses = {s.run_id: runner.read_status(runner.run_dir(opts, s)) for s in specs}
    done = sum(1 for v in statuses.values() if v in runner.FINISHED)
    pending = [s for s in specs if statuses[s.run_id] not in runner.FINISHED]
    where = f"{args.results}/{mat.name}/"

    if args.dry_run:
        est = estimate.describe(pending, device, args.data_root)
        print(f"matrix {mat.name}: {len(specs)} runs ({done} done, {len(pending)} to run) -> {where}")
        for s in specs:
            secs = est["per_run"].get(s.run_id)
            cost = estimate.format_seconds(secs) if secs is not None else ("-" if s not in pending else "?")
            print(f"  {statuses[s.run_id]:<9} {cost:>8}  {s.run_id}")
        unknown = f" ({est['unknown']} runs of unknown size)" if est["unknown"] else ""
        print(f"estimated cost of the runs to do: {estimate.format_range(est)} "
              f"on {device} with 1 job{unknown} (measured step time on this device)")
        for line in estimate.placement_lines(pending, device, args.data_root, args.data_placement):
            print(line)
        return 0

    if not pending:
        print(f"matrix {mat.name}: all {len(specs)} runs already finished in {where}")
        return _exit_code(specs, opts)
    preflight(pending, args)
    if device == "cpu" and not args.yes:
        est = estimate.describe(pending, device, args.data_root)
        if est["total"] > CPU_GUARD_SECONDS:  # the median estimate decides; the range is shown
            raise UserError(f"matrix {mat.name}: {len(pending)} runs estimated at "
                            f"{estimate.format_seconds(est['total'])} on this CPU "
                            f"({estimate.range_text(est)}); pass --yes to run anyway, "
                            "use a GPU (--device cuda), or try `make smoke` (minutes) or "
                            "`make cpu-mini` (about an hour on 2 cores)")

    if args.launcher == "slurm":
        from .slurm import SlurmOptions, run_slurm, wait_for

        slurm = SlurmOptions(partition=args.partition, time_min=args.time_min,
                             gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task,
                             mem_gb=args.mem_gb, array_parallelism=args.array_parallelism,
                             cluster=args.slurm_cluster, wait=args.wait,
                             account=args.slurm_account, qos=args.slurm_qos,
                             constraint=args.slurm_constraint, sbatch=tuple(args.sbatch),
                             setup=tuple(args.slurm_setup), signal_delay_s=args.signal_delay_s)
        _check_slurm_options(slurm)
        opts = runner.RunOptions(**{**opts.__dict__, "progress": False, "log_epochs": True})
        jobs = run_slurm(pending, opts, slurm, Path(args.results) / mat.name / ".submitit")
        _record_matrix(mat, args.results)
        print(f"submitted {len(jobs)} runs of {mat.name} as job array {jobs[0].job_id.split('_')[0]} "
              f"(logs in {args.results}/{mat.name}/.submitit); re-run with --dry-run to see progress",
              flush=True)
        if not args.wait:
            return 0
        wait_for(jobs, pending, opts)
        return _exit_code(specs, opts)

    _record_matrix(mat, args.results)
    _run_with_progress(mat.name, pending, opts, args.jobs, done, len(specs))
    return _exit_code(specs, opts)


def _record_matrix(mat: Any, results: str) -> None:
    """Keep the matrix file in ``results/<matrix>/`` once runs start (the plots read its
    reference from there); only now, so bad input and a refused submission write nothing."""
    from . import runner
    from .traits import write_catalogue

    note = runner.record_matrix(mat.path, Path(results) / mat.name)
    write_catalogue(Path(results) / mat.name)  # every method's plot traits, for the report
    if note:
        print(f"note: {note}", flush=True)


def _check_slurm_options(slurm: Any) -> None:
    """One line per bad SLURM option (before anything is submitted or written)."""
    from .slurm import sbatch_flags

    problems = [f"--{name} {value}: must be >= {low}" for name, value, low in (
        ("time", slurm.time_min, 1), ("cpus", slurm.cpus_per_task, 1), ("gpus", slurm.gpus_per_task, 0),
        ("mem-gb", slurm.mem_gb, 1), ("array-parallelism", slurm.array_parallelism, 1),
        ("signal-delay", slurm.signal_delay_s, 1)) if value < low]
    try:
        sbatch_flags(list(slurm.sbatch))
    except UserError as e:
        problems += e.problems
    if problems:
        raise UserError(*problems)


def _run_with_progress(name: str, pending: list, opts: Any, jobs: int, done: int, total: int) -> None:
    from tqdm import tqdm

    from . import runner

    quiet = not runner.is_tty()
    bar = tqdm(total=total, initial=done, desc=f"{name}", unit="run", disable=quiet, position=0)
    run_bar: dict[str, Any] = {}
    finished = [done]
    # Without a terminal (or with several runs at once) a line per epoch per run: a log
    # file cannot show progress bars (benchmarks/progress.py).
    epoch_log = None
    if quiet or jobs > 1:
        from .progress import EpochLog
        epoch_log = EpochLog.for_specs(pending, write=None if quiet else bar.write)

    def on_epoch(epoch: int, row: dict[str, Any]) -> None:
        b = run_bar.get("bar")
        if b is not None:
            b.n = epoch
            b.set_postfix(loss=f"{row.get('train_loss', float('nan')):.3f}", acc=f"{row['test_acc']:.3f}")
            b.refresh()

    def on_done(out: Any) -> None:
        if epoch_log is not None:
            epoch_log.run_finished(out.run_id)
        bar.update(1)
        finished[0] += 1
        line = f"[{finished[0]}/{total}] {out.run_id}: {out.status}"
        if out.error:
            line += f" ({out.error.splitlines()[0]})"
        if quiet:
            print(line, flush=True)
        else:
            bar.write(line)

    if jobs == 1 and not quiet:
        for spec in pending:
            run_bar["bar"] = tqdm(total=spec["epochs"], desc=spec.run_id[:40], unit="ep", leave=False,
                                  position=1)
            out = runner.execute(spec, opts, on_epoch=on_epoch)
            run_bar["bar"].close()
            on_done(out)
    else:
        runner.run_local(pending, opts, jobs=jobs, on_done=on_done, on_run_epoch=epoch_log)
    bar.close()


def _exit_code(specs: list, opts: Any) -> int:
    from . import runner

    statuses = [runner.read_status(runner.run_dir(opts, s)) for s in specs]
    counts = {k: statuses.count(k) for k in sorted(set(statuses))}
    print("status: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0 if all(s == "done" for s in statuses) else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "prepare":
            from .prepare import SMOKE_DATA, prepare, prepare_smoke_data
            if args.name == SMOKE_DATA:
                from .synthetic import describe_smoke_data
                folders = prepare_smoke_data(args.data_root, args.force)
                print(f"{describe_smoke_data()}; in {', '.join(map(str, folders))}")
                return 0
            print(f"{args.name}: {prepare(args.name, args.data_root, args.download, args.force)}")
            return 0
        if args.command == "list":
            from .listing import cmd_list
            return cmd_list(args.results)
        if args.command == "traits":
            from .traits import main as traits_main
            return traits_main(["--backfill", args.backfill])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `... --dry-run | head`
        return 0
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to resume",
              file=sys.stderr)
        return 130
    return 2
