"""RunSpec: the frozen, fully-resolved description of one training run, and its schema.

Why a schema with defaults here (and not scattered ``cfg.get(key, default)`` calls): every
hyperparameter of a run is visible in one place, written into ``config.yaml``, and part
of the run's hash, so two runs with the same id are guaranteed to be the same experiment.

Merging rule (used by matrix defaults, arms and ``--set``): sections are deep-merged, except
that a section whose ``name`` changes (``optimizer``, ``schedule``, ``sampler``, ``model``)
is *replaced*: switching SGD -> Adam must not silently carry SGD's momentum along.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import models
import samplers

from . import noise
from .errors import UserError

REQUIRED = object()  # marker: key has no default

# Top-level keys: (type, default). Sections with a ``name`` have per-name schemas below.
TOP_LEVEL: dict[str, tuple[Any, Any]] = {
    "matrix": (str, "adhoc"),
    "arm": (str, None),            # defaults to the sampler name
    "dataset": (str, REQUIRED),    # a built-in (benchmarks/catalogue.py) or a prepared dataset
    "seed": (int, 0),
    "epochs": (int, 30),
    "batch_size": (int, 128),
    "eval_batch_size": (int, 1024),
    "channels_last": (bool, True),  # memory format of model and inputs (any device)
    "amp": (str, "off"),            # off | bf16 autocast (cuda or cpu, the run's device)
    "compile": (bool, False),       # torch.compile the model (any device; CPU needs a C compiler)
    # Examples carved out of the training set (after ``subset``) as a validation split for
    # tuning; 0 = none. See benchmarks.data.split_validation.
    "validation": (int, 0),
    # Fraction f in (0, 1] of each epoch trained: floor(f * n_train / batch_size) steps per
    # epoch, the schedule spanning them (Arazo et al. 2021; docs/budget-and-tuning.md).
    "budget": (float, 1.0),
}

SUBSET: dict[str, tuple[Any, Any]] = {
    "train": ((int, type(None)), None),
    "test": ((int, type(None)), None),
    "seed": (int, 0),   # independent of the run seed: every seed sees the same examples
}

AUGMENT: dict[str, tuple[Any, Any]] = {
    "crop_padding": (int, 4),
    "flip": ((bool, str), "auto"),  # auto = the catalogue's rule (no flip for svhn digits)
}


class _ModelSchemas(dict):
    """The model schemas by name, where every ``timm:<name>`` has the schema of the key
    ``timm:<name>`` (none: a timm model takes no parameters here). Whether timm is
    installed and has that model is checked with the other ranges (``models.problems``)."""

    def __contains__(self, name: object) -> bool:
        return models.is_timm(name) or super().__contains__(name)

    def __getitem__(self, name: str) -> dict[str, tuple[Any, Any]]:
        return super().__getitem__(f"{models.TIMM_PREFIX}<name>" if models.is_timm(name) else name)


#: ``width`` scales every model's channels (1 = the published model), so one
#: ``--set model.width=0.0625`` makes any of them tiny; ``stem`` cifar|imagenet (3x3 stride 1,
#: or 7x7 stride 2 + max-pool for 64-pixel inputs); ``depth`` of WRN-d-10 is 6n+4.
MODELS: dict[str, dict[str, tuple[Any, Any]]] = _ModelSchemas({
    "resnet18": {"width": (float, 1.0), "stem": (str, "cifar")},
    "resnet50": {"width": (float, 1.0), "stem": (str, "cifar")},
    "wrn28_10": {"width": (float, 1.0), "depth": (int, 28)},
    f"{models.TIMM_PREFIX}<name>": {},
})

OPTIMIZERS: dict[str, dict[str, tuple[Any, Any]]] = {
    "sgd": {"lr": (float, 0.1), "momentum": (float, 0.9), "nesterov": (bool, False),
            "weight_decay": (float, 5.0e-4)},
    "adam": {"lr": (float, 1.0e-3), "betas": (list, [0.9, 0.999]), "eps": (float, 1.0e-8),
             "weight_decay": (float, 0.0)},
}

SCHEDULES: dict[str, dict[str, tuple[Any, Any]]] = {
    "constant": {},
    "linear": {"final_lr": (float, 0.0)},            # per iteration, to final_lr at the last step
    "cosine": {"final_lr": (float, 0.0)},            # per iteration, half cosine
    "step": {"milestones": (list, []), "gamma": (float, 0.1)},  # milestones in epochs
}

AMP_CHOICES = ("off", "bf16")
NAMED_SECTIONS = {"model": MODELS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}
SECTION_DEFAULT_NAME = {"model": "resnet18", "optimizer": "sgd", "schedule": "constant",
                        "sampler": "uniform"}
ALL_KEYS = sorted([*TOP_LEVEL, "subset", "augment", *NAMED_SECTIONS, "sampler", "label_noise"])


def _did_you_mean(key: str, options: list[str]) -> str:
    hint = difflib.get_close_matches(key, options, n=1)
    return f" (did you mean {hint[0]}?)" if hint else ""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base`` (see module docstring for the named-section rule)."""
    out = copy.deepcopy(dict(base))
    for key, val in override.items():
        cur = out.get(key)
        if isinstance(val, Mapping) and isinstance(cur, Mapping):
            if "name" in val and "name" in cur and val["name"] != cur["name"]:
                out[key] = copy.deepcopy(dict(val))
            else:
                out[key] = deep_merge(cur, val)
        else:
            out[key] = copy.deepcopy(val)
    return out


def _coerce(value: Any, typ: Any, path: str, problems: list[str]) -> Any:
    """Check ``value`` against ``typ``; ints are floats, and '1e-3' strings (YAML 1.1 reads
    exponents without a dot as strings) are accepted as floats."""
    types = typ if isinstance(typ, tuple) else (typ,)
    if float in types and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if float in types and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) and bool not in types:
        problems.append(f"{path}: expected {'/'.join(t.__name__ for t in types)}, got {value!r}")
        return value
    if isinstance(value, types):
        return value
    problems.append(f"{path}: expected {'/'.join(t.__name__ for t in types)}, got {value!r}")
    return value


def _check_section(given: Any, schema: Mapping[str, tuple[Any, Any]], path: str,
                   problems: list[str], allow: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        problems.append(f"{path}: expected a mapping, got {given!r}")
        return {}
    out: dict[str, Any] = {}
    for key, val in given.items():
        if key in allow:
            out[key] = val
            continue
        if key not in schema:
            problems.append(f"{path}.{key}: unknown key{_did_you_mean(key, list(schema))}")
            continue
        out[key] = _coerce(val, schema[key][0], f"{path}.{key}", problems)
    for key, (_, default) in schema.items():
        if key not in out:
            if default is REQUIRED:
                problems.append(f"{path}.{key}: required")
            else:
                out[key] = copy.deepcopy(default)
    return out


def _check_named(given: Any, kind: str, table: Mapping[str, Mapping[str, tuple[Any, Any]]],
                 path: str, problems: list[str]) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        problems.append(f"{path}: expected a mapping with a name, got {given!r}")
        return {}
    name = given.get("name", SECTION_DEFAULT_NAME[kind])
    if name not in table:
        problems.append(f"{path}.name: unknown {kind} {name!r}{_did_you_mean(str(name), list(table))}; "
                        f"choose one of {', '.join(table)}")
        return dict(given)
    rest = {k: v for k, v in given.items() if k != "name"}
    return {"name": name, **_check_section(rest, table[name], path, problems)}


def _check_sampler(given: Any, path: str, problems: list[str]) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        problems.append(f"{path}: expected a mapping with a name, got {given!r}")
        return {}
    name = given.get("name", "uniform")
    try:
        defaults = samplers.params(name)
    except samplers.SamplerConfigError as e:
        problems.append(f"{path}.name: {e}")
        return dict(given)
    out: dict[str, Any] = {"name": name}
    before = len(problems)
    for key, val in given.items():
        if key == "name":
            continue
        if key not in defaults:
            problems.append(f"{path}.{key}: unknown key{_did_you_mean(key, list(defaults))}; "
                            f"sampler {name!r} takes: {', '.join(defaults) or 'no parameters'}")
            continue
        default = defaults[key]
        if isinstance(default, float):
            val = _coerce(val, float, f"{path}.{key}", problems)
        elif default is not None and not isinstance(val, type(default)):
            problems.append(f"{path}.{key}: expected {type(default).__name__}, got {val!r}")
        out[key] = val
    for key, default in defaults.items():
        out.setdefault(key, default)
    if len(problems) == before:  # types fine: let the sampler's own class check the ranges
        problems += _sampler_range_problems(name, out, path)
    return out


def _sampler_range_problems(name: str, cfg: Mapping[str, Any], path: str) -> list[str]:
    """Build the sampler once (cheap: no data, no tensors) so each of its own ``__init__``
    checks (``beta >= 0``, ``bank_size >= 1``, ...) becomes a schema error with a path.

    Why not repeat the rules here: the sampler class is the one place its parameters are
    documented and validated (samplers/registry.py), also for users outside this suite.
    The samplers' messages start with the parameter name, which gives the path."""
    params = {k: v for k, v in cfg.items() if k != "name"}
    try:
        samplers.build(name, **params)
    except (ValueError, TypeError) as e:
        msg = str(e)
        first = msg.split(" ", 1)[0]
        where = f"{path}.{first}" if first in params else path
        return [f"{where}: {msg}"]
    return []


def resolve(raw: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """Validate ``raw`` and fill every default; raise UserError listing *all* problems."""
    problems: list[str] = []
    p = (lambda k: f"{path}.{k}" if path else k)
    if not isinstance(raw, Mapping):
        raise UserError(f"{path or 'run'}: expected a mapping, got {raw!r}")
    out: dict[str, Any] = {}
    for key, val in raw.items():
        if key not in ALL_KEYS:
            problems.append(f"{p(key)}: unknown key{_did_you_mean(key, ALL_KEYS)}")
        elif key in TOP_LEVEL:
            out[key] = _coerce(val, TOP_LEVEL[key][0], p(key), problems)
    for key, (_, default) in TOP_LEVEL.items():
        if key not in out:
            if default is REQUIRED and key not in raw:
                problems.append(f"{p(key)}: required")
            else:
                out[key] = default
    out["subset"] = (None if raw.get("subset") is None
                     else _check_section(raw["subset"], SUBSET, p("subset"), problems))
    out["augment"] = _check_section(raw.get("augment", {}), AUGMENT, p("augment"), problems)
    # label_noise: {kind, rate, map, labels} or null (clean labels); benchmarks/noise.py
    noise_problems = noise.problems(raw.get("label_noise"), p("label_noise"))
    problems += noise_problems
    out["label_noise"] = raw.get("label_noise") if noise_problems else noise.resolve(raw.get("label_noise"))
    for section, table in NAMED_SECTIONS.items():
        out[section] = _check_named(raw.get(section, {}), section, table, p(section), problems)
    out["sampler"] = _check_sampler(raw.get("sampler", {}), p("sampler"), problems)
    if out.get("arm") is None and isinstance(out["sampler"], Mapping):
        out["arm"] = out["sampler"].get("name")

    # Cross-field rules that a type check cannot see.
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if isinstance(out.get(key), int) and out[key] < 1:
            problems.append(f"{p(key)}: must be >= 1, got {out[key]}")
    budget = out.get("budget")
    if isinstance(budget, float) and not (0.0 < budget <= 1.0):
        problems.append(f"{p('budget')}: must be in (0, 1] (the fraction of each epoch "
                        f"trained), got {budget}")
    if out.get("amp") not in AMP_CHOICES:
        problems.append(f"{p('amp')}: expected one of {', '.join(AMP_CHOICES)}, got {out.get('amp')!r}")
    flip = out["augment"].get("flip")
    if isinstance(flip, str) and flip != "auto":
        problems.append(f"{p('augment.flip')}: expected true, false or auto, got {flip!r}")
    _range_problems(out, p, problems)
    bank = out["sampler"].get("bank_size")
    if isinstance(bank, int) and isinstance(out.get("batch_size"), int) and bank < out["batch_size"]:
        problems.append(f"{p('sampler.bank_size')}: bank of {bank} is smaller than the batch "
                        f"({out['batch_size']}); use bank_size >= batch_size")
    if problems:
        raise UserError(*problems)
    return out


#: Matrix and arm names become folder names and parts of run ids: plain identifiers only.
IDENTIFIER = re.compile(r"[A-Za-z0-9_.-]+")


def identifier_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a matrix/arm name (a folder name under ``--results``), or None.

    Why so strict: the matrix name is joined to the results root, so ``/abs`` or ``../x``
    would write outside it; a plain ``[A-Za-z0-9_.-]`` name that is not ``.``/``..`` cannot.
    """
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value) or value in (".", ".."):
        return (f"{value!r} is not a plain name: use letters, digits, '_', '.' and '-' only "
                "(no path separators, not '.' or '..')")
    return None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _range_problems(out: Mapping[str, Any], p: Any, problems: list[str]) -> None:
    """Value ranges the type check cannot see, so that an out-of-range value is a one-line
    error before any data is loaded instead of a failure (or a silently odd run) later.
    Sampler parameters are checked by their own classes (``_check_sampler``)."""
    def need(path: str, value: Any, ok: bool, rule: str) -> None:
        if _is_num(value) and not ok:
            problems.append(f"{p(path)}: must be {rule}, got {value!r}")

    for key in ("matrix", "arm"):
        if out.get(key) is not None and identifier_problem(out[key]):
            problems.append(f"{p(key)}: {identifier_problem(out[key])}")
    need("seed", out.get("seed"), _is_num(out.get("seed")) and out["seed"] >= 0, ">= 0")
    v = out.get("validation")
    need("validation", v, _is_num(v) and v >= 0, ">= 0 (0 = no validation split)")
    sub = out.get("subset") or {}
    for key in ("train", "test"):
        need(f"subset.{key}", sub.get(key), _is_num(sub.get(key)) and sub[key] >= 1,
             ">= 1 (or null for the whole split)")
    need("subset.seed", sub.get("seed"), _is_num(sub.get("seed")) and sub["seed"] >= 0, ">= 0")
    cp = out["augment"].get("crop_padding")
    need("augment.crop_padding", cp, _is_num(cp) and cp >= 0, ">= 0")
    width = out["model"].get("width")
    need("model.width", width, _is_num(width) and math.isfinite(width) and width > 0,
         "a finite number > 0")
    if out["model"].get("name") in MODELS:  # the model's own rules (stem, depth, timm)
        problems += [f"{p('model')}.{why}" for why in models.problems(out["model"]["name"], out["model"])]
    opt = out["optimizer"]
    fin = (lambda x: _is_num(x) and math.isfinite(x))
    need("optimizer.lr", opt.get("lr"), fin(opt.get("lr")) and opt["lr"] > 0, "a finite number > 0")
    need("optimizer.weight_decay", opt.get("weight_decay"),
         fin(opt.get("weight_decay")) and opt["weight_decay"] >= 0, "a finite number >= 0")
    if opt.get("name") == "sgd":
        m = opt.get("momentum")
        need("optimizer.momentum", m, fin(m) and 0 <= m < 1, "in [0, 1)")
        if opt.get("nesterov") is True and _is_num(m) and m == 0:
            problems.append(f"{p('optimizer.nesterov')}: Nesterov momentum needs momentum > 0")
    if opt.get("name") == "adam":
        betas = opt.get("betas")
        if not (isinstance(betas, list) and len(betas) == 2
                and all(_is_num(b) and 0 <= b < 1 for b in betas)):
            problems.append(f"{p('optimizer.betas')}: must be a list of two numbers in [0, 1), "
                            f"e.g. [0.9, 0.999], got {betas!r}")
        need("optimizer.eps", opt.get("eps"), fin(opt.get("eps")) and opt["eps"] > 0,
             "a finite number > 0")
    sched = out["schedule"]
    if "final_lr" in sched:
        f = sched.get("final_lr")
        need("schedule.final_lr", f, fin(f) and f >= 0, "a finite number >= 0")
    if sched.get("name") == "step":
        ms = sched.get("milestones")
        if not (isinstance(ms, list) and all(isinstance(m, int) and not isinstance(m, bool)
                                             and m >= 1 for m in ms)):
            problems.append(f"{p('schedule.milestones')}: must be a list of positive integer "
                            f"epochs, e.g. [15, 25], got {ms!r}")
        g = sched.get("gamma")
        need("schedule.gamma", g, fin(g) and g > 0, "a finite number > 0")


@dataclass(frozen=True)
class RunSpec:
    """One run, fully resolved. Build with ``RunSpec.from_dict`` (validates)."""

    config: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], path: str = "") -> "RunSpec":
        return cls(resolve(raw, path))

    def __getitem__(self, key: str) -> Any:
        return self.config[key]

    def get(self, dotted: str, default: Any = None) -> Any:
        cur: Any = self.config
        for part in dotted.split("."):
            if not isinstance(cur, Mapping) or part not in cur:
                return default
            cur = cur[part]
        return cur

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.config))

    @property
    def hash(self) -> str:
        """Short hash of everything that defines the experiment (not the matrix name).

        Keys added to the schema after runs were published (``HASH_STABLE_DEFAULTS``) are
        left out while they hold the value that reproduces the old behaviour, so a new
        option never renames, and so never silently re-trains, the runs made before it.
        """
        body = {k: v for k, v in self.config.items() if k != "matrix"}
        body = _drop_stable_defaults(body)
        # A sampler whose rule changed (``Sampler.revision``) renames its runs, so results
        # made under the old rule are never taken as done (revision 1 adds nothing).
        revision = samplers.get(self.config["sampler"]["name"]).revision
        if revision != 1:
            body["sampler_revision"] = revision
        canon = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:8]

    @property
    def run_id(self) -> str:
        """Readable + hash: ``cifar10-impon-bank200-seed0-1a2b3c4d``."""
        parts = [self.config["dataset"], self.config["arm"]]
        bank = self.config["sampler"].get("bank_size")
        if bank is not None:
            parts.append(f"bank{bank}")
        budget = self.config.get("budget", 1.0)
        if budget != 1.0:  # full budget stays unnamed, so ids made before the key are kept
            parts.append(f"budget{budget:g}")
        noisy = noise.id_part(self.config.get("label_noise"))
        if noisy:  # clean labels stay unnamed (ids made before the key are kept)
            parts.append(noisy)
        parts.append(f"seed{self.config['seed']}")
        safe = "-".join(str(x) for x in parts).replace("/", "_").replace(" ", "_")
        return f"{safe}-{self.hash}"


#: Dotted keys added to the schema after runs were published, with the value that means
#: "behave as before the key existed". While a run holds that value the key is not part of
#: its hash (see ``RunSpec.hash``). Add every new key here; never change a listed value.
#: ``sampler.<param>`` entries apply to every sampler that has the parameter.
HASH_STABLE_DEFAULTS: dict[str, Any] = {
    "validation": 0,   # no validation split: the whole (subset of the) training set trains
    "budget": 1.0,                  # full epochs, as before the budget axis
    "sampler.score_mode": "train",  # Selective Backprop's train-mode scoring, as before
    "sampler.draw": "with_replacement",  # unif_sgd: a fresh subset per epoch, as before
    "label_noise": None,            # the dataset's own (clean) training labels
    "model.stem": "cifar",          # ResNets' 3x3 stride-1 stem, the only one before the key
}


def _drop_stable_defaults(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    for dotted, value in HASH_STABLE_DEFAULTS.items():
        *parents, leaf = dotted.split(".")
        cur: Any = body
        for part in parents:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(cur, dict) and leaf in cur and cur[leaf] == value:
            del cur[leaf]
    return body


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["epochs=2", "model.width=0.25"]`` -> nested override dict (values parsed as YAML)."""
    from . import yamlsafe

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=2")
        key, _, val = item.partition("=")
        try:  # the matrix file's rules: seed=010 is an error, not the octal 8
            value = yamlsafe.load_text(val, "--set", root=key.strip())
        except yamlsafe.YamlSyntaxError:
            value = val
        cur = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = value
    return out
