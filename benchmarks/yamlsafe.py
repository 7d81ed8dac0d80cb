"""Reading user YAML (matrix files) without its hazards.

``yaml.safe_load`` alone accepts three things that let a user get a wrong result or hang
the runner without being told:

* **Duplicate keys** (``epochs: 30`` ... ``epochs: 3`` in one mapping): PyYAML keeps the
  last one silently. Here they are an error naming the key and both lines.
* **Alias bombs** ("billion laughs": ``a: &a [x, x]``, ``b: &b [*a, *a]``, ...): PyYAML
  shares aliased objects, so loading is cheap, but everything that walks the document
  afterwards (deep merges, deep copies, hashing a RunSpec) expands it exponentially. Here
  the document is measured *as expanded* on the node graph, before any Python object is
  built, and rejected above :data:`MAX_EXPANDED_NODES`.
* **Huge documents**: bounded by :data:`MAX_BYTES` before parsing.
* **YAML 1.1 number forms**: PyYAML resolves plain scalars by YAML 1.1, so ``seed: 010``
  is the octal 8, ``1_000`` is 1000, ``1:30`` is 90 (base 60), ``0x10``/``0b10`` are 16
  and 2, while ``0o10`` and ``019`` stay text. Nobody writing a seed or a size means
  any of that, and the result differs from every YAML 1.2 reader. Decision: every plain
  (unquoted) value in one of these forms is an **error** naming its path and both
  readings (``defaults.seed: 010 has a leading zero; write 10 or 8 (YAML 1.1 would read it
  as octal 8)``), never converted and never kept as text silently; quote it to mean text.
  Plain decimal integers (``0``, ``-3``) and decimal floats (``0.5``, ``1.0e-6``) are as
  before. The same rule applies to ``--set KEY=VALUE`` values (:func:`load_text` with
  ``root``).

Anchors, aliases and merge keys (``<<: *base``) of ordinary size keep working.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

#: Largest matrix file accepted. The shipped matrices are a few kB; 1 MiB leaves room for
#: generated ones (thousands of arms) while bounding parse time and memory.
MAX_BYTES = 1 << 20
#: Largest document after alias expansion, in YAML nodes (scalars + collections). A
#: 1 MiB file without aliases has well under 10^6 nodes, so honest files never reach it.
MAX_EXPANDED_NODES = 1_000_000


class YamlSyntaxError(UserError):
    """The text is not YAML at all (callers that accept plain text may catch this)."""


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys within one mapping (merge keys excepted)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *base``: later explicit keys override merged ones, by design
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: SafeLoader reports it itself below
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise _DuplicateKey(key, line, first)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Node count of the document with every alias expanded, computed on the node graph
    (aliases are shared node objects there), memoised per node, so it costs time linear
    in the *written* document however large the expansion. Stops counting past ``limit``."""
    memo: dict[int, int] = {}
    # Iterative post-order walk: deep nesting must not hit Python's recursion limit.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in memo:
            continue
        if isinstance(node, yaml.ScalarNode):
            memo[id(node)] = 1
            continue
        kids = ([k for pair in node.value for k in pair] if isinstance(node, yaml.MappingNode)
                else list(node.value))
        if children_done:
            memo[id(node)] = min(limit + 1, 1 + sum(memo[id(k)] for k in kids))
        else:
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in memo)
    return memo[id(root)]


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
_DECIMAL_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_OCTAL_0O = re.compile(r"[-+]?0o[0-7_]+")
_NUMBERISH = re.compile(r"[-+]?[0-9]")


def _number_problem(node: yaml.ScalarNode, loader: yaml.SafeLoader) -> str | None:
    """Why a plain scalar is a YAML-1.1-only number form (see the module docstring), or None."""
    text = node.value
    if node.style is not None or not _NUMBERISH.match(text):  # quoted, or not number-like
        return None
    if _LEADING_ZERO.fullmatch(text):
        dec = int(text.replace("_", ""), 10)
        if node.tag != _INT or dec == loader.construct_yaml_int(node):
            return f"{text} has a leading zero; write {dec} (quote it if it is text)"
        octal = loader.construct_yaml_int(node)
        return f"{text} has a leading zero; write {dec} or {octal} (YAML 1.1 would read it as octal {octal})"
    if _OCTAL_0O.fullmatch(text):
        value: Any = int(text.replace("_", ""), 0)
    elif node.tag == _INT and not _DECIMAL_INT.fullmatch(text):
        value = loader.construct_yaml_int(node)
    elif node.tag == _FLOAT and ("_" in text or ":" in text):
        value = loader.construct_yaml_float(node)
    else:
        return None
    return (f"{text} is a YAML 1.1 number form that reads as {value}; write {value}, or quote it "
            f"('{text}') if it is text")


def _number_problems(root: yaml.Node, loader: yaml.SafeLoader, top: str) -> list[tuple[int, str]]:
    """(line, "path: problem") of every value in a YAML-1.1-only number form, walking the node
    graph once per node (aliases are shared nodes), so the cost is that of the written text."""
    out: list[tuple[int, str]] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, top)]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            problem = _number_problem(node, loader)
            if problem:
                out.append((node.start_mark.line + 1, f"{path or '(document)'}: {problem}"))
        elif isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                stack.append((value, f"{path}.{name}" if path else str(name)))
        else:
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(node.value))))
    return out


def load_text(text: str, source: str, root: str = "") -> Any:
    """Parse ``text`` (from ``source``, for messages) as YAML; UserError on any hazard.

    ``root``: the key path the text is the value of (``--set seed=010`` passes ``seed``);
    messages then read ``--set seed: ...`` instead of naming a line of a file.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise UserError(f"{source}: larger than {MAX_BYTES // 1024} KiB; a matrix file is a few "
                        "kB of settings, split it or generate fewer arms")
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, MAX_EXPANDED_NODES)
        if size > MAX_EXPANDED_NODES:
            raise UserError(f"{source}: its aliases (*name) expand to more than "
                            f"{MAX_EXPANDED_NODES:,} values (an 'alias bomb'?); write the "
                            "values out or use fewer nested aliases")
        numbers = _number_problems(node, loader, root)
        if numbers:
            raise UserError(*[f"{source} {what}" if root else f"{source}: line {line}: {what}"
                              for line, what in numbers])
        return loader.construct_document(node)
    except _DuplicateKey as d:
        raise UserError(f"{source}: line {d.line}: duplicate key {d.key!r} (first at line "
                        f"{d.first}); YAML would silently keep only the last, remove one") from None
    except RecursionError:
        raise UserError(f"{source}: nested too deeply to be a matrix file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise YamlSyntaxError(f"{source}: not valid YAML ({where}{what})") from None
    finally:
        loader.dispose()


def load_file(path: Path) -> Any:
    """Read ``path`` as UTF-8 YAML; UserError (one line) if too big, not UTF-8 or unsafe."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise UserError(f"{path}: {size:,} bytes, larger than {MAX_BYTES // 1024} KiB; a matrix "
                            "file is a few kB of settings")
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                        "save the file as UTF-8") from None
    return load_text(text, str(path))
