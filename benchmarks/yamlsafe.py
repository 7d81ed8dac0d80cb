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

Anchors, aliases and merge keys (``<<: *base``) of ordinary size keep working.
"""
from __future__ import annotations

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


def load_text(text: str, source: str) -> Any:
    """Parse ``text`` (from ``source``, for messages) as YAML; UserError on any hazard."""
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
        raise UserError(f"{source}: not valid YAML ({where}{what})") from None
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
