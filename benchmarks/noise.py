"""Label noise: corrupting the *training* labels of a run, seeded by the data seed.

Why here and not in a sampler: noise is a property of the data every arm of a matrix trains
on, so the draw uses the subset seed (``subset.seed``, 0 without a subset) and its own
stream, never the run seed: every arm and every seed of a matrix sees the same noisy
labels, and a paired difference compares methods on identical data. Test and validation
labels are never touched (the validation split is carved out before the noise is drawn).

Kinds (RunSpec ``label_noise: {kind, rate, map, labels}``):

``symmetric``
    Exactly ``round(rate * n)`` training examples, drawn uniformly without replacement,
    get a label drawn uniformly from the *other* classes, so ``rate`` is the fraction of
    wrong labels (the "symmetric flipping" of Han et al., NeurIPS 2018, Co-teaching). Ours:
    an exact count instead of an independent coin per example, so the realised rate is
    ``rate`` up to rounding and the diagnostic's chance line is exact.
``asymmetric``
    Class-dependent flips, ``round(rate * n_c)`` examples of each source class ``c`` moved
    to its target. ``map: cifar10`` is the map of Patrini et al., CVPR 2017 (truck ->
    automobile, bird -> airplane, deer -> horse, cat <-> dog; class order of the CIFAR-10
    files); ``map: next_class`` moves class c to (c + 1) mod C (the "pair flipping" of
    Han et al. 2018), the usual choice for CIFAR-100. ``map: auto`` (default) takes
    ``cifar10`` for a 10-class dataset whose name starts with ``cifar10`` (cifar10, the
    cifar10-5k subset, its smoke twin) and ``next_class`` otherwise -- ours; Patrini et al.'s
    CIFAR-100 map flips within super-classes, which this suite does not implement.
``human``
    CIFAR-10N / CIFAR-100N human labels (Wei et al., ICLR 2022): the official file
    ``CIFAR-10_human.pt`` (keys ``aggre_label``, ``worse_label``, ``random_label1..3``,
    ``clean_label``) or ``CIFAR-100_human.pt`` (keys ``noisy_label``, ``clean_label``, ...)
    put by the user in ``DATA_ROOT/<dataset>/``; ``labels`` names the key. The arrays are in
    the order of the official training files, which is checked: ``clean_label`` must equal
    the loaded labels.

What a run records (``run.json`` -> ``dataset.label_noise``): the setting, the number and
fraction of noisy training labels, and a fingerprint of the noisy labels.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from .errors import UserError

KINDS = ("symmetric", "asymmetric", "human")
MAPS = ("auto", "cifar10", "next_class")

#: Patrini et al., CVPR 2017: the CIFAR-10 classes that are confused with a similar one
#: (indices of the official files: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog,
#: 6 frog, 7 horse, 8 ship, 9 truck).
CIFAR10_MAP = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

#: The official CIFAR-N files (github.com/UCSC-REAL/cifar-10-100n, ``data/``), per built-in.
HUMAN_FILES = {"cifar10": ("CIFAR-10_human.pt", ("aggre_label", "worse_label", "random_label1",
                                                  "random_label2", "random_label3")),
               "cifar100": ("CIFAR-100_human.pt", ("noisy_label",))}

#: ``stratified_indices``-style stream number of the noise draw (0 train subset, 1 test
#: subset, 2 validation split).
NOISE_STREAM = 3


def problems(cfg: Any, path: str = "label_noise") -> list[str]:
    """Why ``cfg`` is not a valid ``label_noise`` setting (empty if it is, or None)."""
    if cfg is None:
        return []
    if not isinstance(cfg, Mapping):
        return [f"{path}: expected a mapping like {{kind: symmetric, rate: 0.2}} or null, got {cfg!r}"]
    out = []
    allowed = {"kind", "rate", "map", "labels"}
    for key in cfg:
        if key not in allowed:
            out.append(f"{path}.{key}: unknown key; label_noise takes kind, rate, map, labels")
    kind = cfg.get("kind")
    if kind not in KINDS:
        return out + [f"{path}.kind: expected one of {', '.join(KINDS)}, got {kind!r}"]
    rate, labels, mapping = cfg.get("rate"), cfg.get("labels"), cfg.get("map")
    if kind == "human":
        if rate is not None:
            out.append(f"{path}.rate: human labels bring their own noise; remove rate")
        if mapping is not None:
            out.append(f"{path}.map: only asymmetric noise has a class map; remove map")
        known = sorted({k for _, keys in HUMAN_FILES.values() for k in keys})
        if labels not in known:
            out.append(f"{path}.labels: name the key of the CIFAR-N file to train on, one of "
                       f"{', '.join(known)}; got {labels!r}")
        return out
    if labels is not None:
        out.append(f"{path}.labels: only kind human reads a label file; remove labels")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1:
        out.append(f"{path}.rate: must be a number in (0, 1), the fraction of wrong training "
                   f"labels, got {rate!r} (for clean labels leave label_noise out)")
    if kind == "symmetric" and mapping is not None:
        out.append(f"{path}.map: only asymmetric noise has a class map; remove map")
    if kind == "asymmetric" and mapping is not None and mapping not in MAPS:
        out.append(f"{path}.map: expected one of {', '.join(MAPS)}, got {mapping!r}")
    return out


def resolve(cfg: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """The setting with its defaults filled (``map: auto`` for asymmetric), or None."""
    if cfg is None:
        return None
    out = {"kind": cfg["kind"]}
    if cfg["kind"] == "human":
        out["labels"] = cfg["labels"]
    else:
        out["rate"] = float(cfg["rate"])
        if cfg["kind"] == "asymmetric":
            out["map"] = cfg.get("map") or "auto"
    return out


def id_part(cfg: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The readable run-id part (``sym0.2``, ``asym0.4``, ``human-worse_label``), or None."""
    if cfg is None:
        return None
    if cfg["kind"] == "human":
        return f"human-{cfg['labels']}"
    return f"{'sym' if cfg['kind'] == 'symmetric' else 'asym'}{cfg['rate']:g}"


def class_map(dataset: str, num_classes: int, mapping: str) -> dict[int, int]:
    """source class -> target class of asymmetric noise (see the module docstring)."""
    if mapping == "auto":
        mapping = "cifar10" if num_classes == 10 and dataset.startswith("cifar10") else "next_class"
    if mapping == "cifar10":
        if num_classes != 10:
            raise UserError(f"label_noise.map: cifar10 needs 10 classes, {dataset} has "
                            f"{num_classes}; use map: next_class")
        return dict(CIFAR10_MAP)
    return {c: (c + 1) % num_classes for c in range(num_classes)}


def corrupt(y: np.ndarray, cfg: Mapping[str, Any], *, num_classes: int, seed: int,
            dataset: str, index: Optional[np.ndarray] = None,
            folder: Optional[Path] = None) -> np.ndarray:
    """The noisy copy of the training labels ``y`` (``y`` is not modified).

    ``seed`` is the data seed (the subset seed); ``index`` the positions of ``y``'s examples
    in the official training split (needed by ``human``); ``folder`` the dataset's folder.
    """
    kind = cfg["kind"]
    y = np.asarray(y, dtype=np.int64)
    noisy = y.copy()
    rng = np.random.default_rng([int(seed), NOISE_STREAM])
    if kind == "symmetric":
        k = int(round(cfg["rate"] * y.size))
        picked = rng.choice(y.size, size=k, replace=False)
        # a uniform draw among the C-1 other classes: shift by 1..C-1
        shift = rng.integers(1, num_classes, size=k)
        noisy[picked] = (y[picked] + shift) % num_classes
    elif kind == "asymmetric":
        for src, dst in sorted(class_map(dataset, num_classes, cfg["map"]).items()):
            members = np.flatnonzero(y == src)
            k = int(round(cfg["rate"] * members.size))
            noisy[rng.choice(members, size=k, replace=False)] = dst
    else:
        noisy = _human(y, cfg["labels"], dataset=dataset, index=index, folder=folder)
    return noisy


def _human(y: np.ndarray, key: str, *, dataset: str, index: Optional[np.ndarray],
           folder: Optional[Path]) -> np.ndarray:
    if dataset not in HUMAN_FILES:
        raise UserError(f"label_noise.kind human: CIFAR-N labels exist for cifar10 and cifar100 "
                        f"only, not {dataset!r}")
    name, keys = HUMAN_FILES[dataset]
    if key not in keys:
        raise UserError(f"label_noise.labels: {name} has no {key!r}; use one of {', '.join(keys)}")
    path = Path(folder or ".") / name
    if not path.is_file():
        raise UserError(f"label_noise: no {path}; download {name} from "
                        "https://github.com/UCSC-REAL/cifar-10-100n (folder data/) and put it there")
    table = read_human_file(path)
    missing = [k for k in (key, "clean_label") if k not in table]
    if missing:
        raise UserError(f"label_noise: {path} has no {' or '.join(missing)} (found: "
                        f"{', '.join(sorted(table))}); is it the official {name}?")
    clean = np.asarray(table["clean_label"], dtype=np.int64).reshape(-1)
    labels = np.asarray(table[key], dtype=np.int64).reshape(-1)
    where = np.arange(y.size) if index is None else np.asarray(index)
    if labels.size != clean.size or where.size != y.size or (where.size and where.max() >= clean.size) \
            or not np.array_equal(clean[where], y):
        raise UserError(f"label_noise: {path}'s clean_label does not match the loaded {dataset} "
                        "training labels (a different file or a different order of the training "
                        "set); use the official file with the official training files")
    return labels[where].copy()


def read_human_file(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an official CIFAR-N ``.pt`` file (a ``torch.save``d dict of numpy
    arrays), loaded with torch's restricted unpickler: only numpy arrays are allowed in."""
    import torch  # the file is a torch pickle; only the trainer calls this

    allowed = _numpy_globals()
    try:
        with torch.serialization.safe_globals(allowed):
            table = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user problem
        raise UserError(f"label_noise: cannot read {path} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:100] if str(e) else ''}); is it the official file?") from None
    if not isinstance(table, dict):
        raise UserError(f"label_noise: {path} holds a {type(table).__name__}, not the official "
                        "dict of label arrays")
    return {str(k): np.asarray(v) for k, v in table.items()}


def _numpy_globals() -> list[Any]:
    """What unpickling a numpy array needs (numpy 1 and 2 spell the module differently)."""
    out: list[Any] = [np.ndarray, np.dtype]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            mod = __import__(module, fromlist=["_reconstruct"])
            out.append(mod._reconstruct)
            break
        except (ImportError, AttributeError):
            continue
    out += [type(np.dtype(t)) for t in ("int64", "int32", "uint8", "float32", "float64", "bool")]
    return out


def summary(clean: np.ndarray, noisy: np.ndarray, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What run.json records of the noise: setting, count, realised fraction, fingerprint."""
    wrong = int(np.count_nonzero(clean != noisy))
    return {**cfg, "noisy": wrong, "fraction": wrong / max(1, clean.size),
            "labels_fingerprint": hashlib.sha256(np.ascontiguousarray(noisy, dtype=np.int64).data)
            .hexdigest()[:16]}
