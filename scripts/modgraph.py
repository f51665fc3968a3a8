#!/usr/bin/env python3
"""Module graph of one Rust crate, from the paths its source names; exit 1 on a cycle.

    scripts/modgraph.py [--strict] rootfs/src [bootstrap/src ...]

Reads every non-test `.rs` file under each `src/` directory, maps it to its module
(`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`), and collects the modules it names: `use`
trees (`crate::`, `super::`, `self::`, braces included), inline `crate::a::b::f()` and
`super::x` paths, and paths through the file's own child modules (`mod archive;` then
`archive::open(...)`). Each path resolves to the deepest module it names.

It prints, with the number of files-and-names behind each edge:
  * the graph between top-level modules (`pull -> cache`), and
  * for each directory, the graph between its files: the directory's head (`source/mod.rs`
    or `pull.rs`) and the files inside it, deeper files counted as their ancestor there.
A cycle between top-level modules, or between files of one directory that does not pass
through the directory's head, is printed and makes the exit status 1. A cycle through a head
(it uses its children while a child imports an item the head defines, such as `super::Error`)
is printed as a head cycle; it fails only with `--strict`, where shared types must live in a
file of their own at the bottom of the directory.

Test code is left out: files named `tests.rs` or `*_tests.rs`, and anything after a
`#[cfg(test)]` line in a file (test modules sit at the end of files here).
No dependencies beyond the Python 3 standard library.
"""

import os
import re
import sys
from collections import defaultdict

ROOTS = ("lib.rs", "main.rs")


def module_of(src, path):
    """The module path (tuple) of file `path` under `src`."""
    rel = os.path.relpath(path, src)
    parts = rel[:-3].split(os.sep)  # strip .rs
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] + ".rs" in ROOTS):
        parts = parts[:-1]
    return tuple(parts)


def is_test_file(name):
    return name == "tests.rs" or name.endswith("_tests.rs")


def strip(text):
    """Source without comments, string literals and test code."""
    cut = re.search(r"^\s*#\[cfg\(test\)\]", text, re.M)
    if cut:
        text = text[: cut.start()]
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            i = n if j < 0 else j + len(end)
            out.append('""')
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", text[i:]).group(0))
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use(tree):
    """Flatten a `use` tree (`a::{b, c::{d, self}}`) into paths (lists of segments)."""
    tree = re.sub(r"\s+", "", tree)
    results = []

    def walk(prefix, s):
        # split s at top-level commas
        depth, start, items = 0, 0, []
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(s[start:k])
                start = k + 1
        items.append(s[start:])
        for item in items:
            if not item:
                continue
            brace = item.find("{")
            if brace >= 0:
                head = item[:brace].rstrip(":")
                segs = [x for x in head.split("::") if x] if head else []
                walk(prefix + segs, item[brace + 1 : item.rfind("}")])
            else:
                item = item.split("as")[0] if re.search(r"\bas\b", item) else item
                segs = [x for x in item.split("::") if x]
                if segs and segs[-1] == "self":
                    segs = segs[:-1]
                results.append(prefix + segs)

    walk([], tree)
    return results


class Crate:
    def __init__(self, src):
        self.src = src
        self.files = {}  # module -> path
        for dirpath, _, names in os.walk(src):
            for name in names:
                if name.endswith(".rs") and not is_test_file(name):
                    path = os.path.join(dirpath, name)
                    self.files[module_of(src, path)] = path
        # references: (from module, to module) -> set of names
        self.refs = defaultdict(set)

    def resolve(self, base, segs):
        """Module named by path `segs` seen from module `base`; None when outside the crate."""
        if not segs:
            return None
        if segs[0] == "crate":
            cur, rest = (), segs[1:]
        elif segs[0] in ("super", "self"):
            cur, rest = base, segs
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    cur = cur[:-1]
                rest = rest[1:]
        elif base + (segs[0],) in self.files:
            cur, rest = base, segs  # a child module of this file
        else:
            return None
        for seg in rest:
            if cur + (seg,) in self.files:
                cur = cur + (seg,)
            else:
                break
        return cur

    def scan(self):
        for module, path in self.files.items():
            with open(path, encoding="utf-8") as f:
                text = strip(f.read())
            paths = []
            for m in re.finditer(r"\buse\s+([^;]+);", text):
                paths.extend(expand_use(m.group(1)))
            body = re.sub(r"\buse\s+[^;]+;", "", text)
            for m in re.finditer(r"(?<![\w:])((?:crate|super|self|[a-z_][a-z0-9_]*)(?:::[A-Za-z_][A-Za-z0-9_]*|::\*)+)", body):
                paths.append(m.group(1).split("::"))
            for segs in paths:
                target = self.resolve(module, segs)
                if target is None or target == module:
                    continue
                name = "::".join(segs)
                self.refs[(module, target)].add(name)

    def top_edges(self):
        edges = defaultdict(int)
        for (a, b), names in self.refs.items():
            if a and b and a[0] != b[0]:
                edges[(a[0], b[0])] += len(names)
        return edges

    def dir_edges(self):
        """directory module -> {(file, file): count}, files named relative to the directory."""
        out = defaultdict(lambda: defaultdict(int))
        for (a, b), names in self.refs.items():
            common = 0
            while common < min(len(a), len(b)) and a[common] == b[common]:
                common += 1
            head = a[:common]
            if not head:
                continue
            # Each side seen from inside the directory `head`: the head itself or one child.
            def local(m):
                return m[: len(head) + 1]
            la, lb = local(a), local(b)
            if la != lb:
                out[head][(la, lb)] += len(names)
        return out

    def label(self, module):
        path = self.files.get(module)
        return os.path.relpath(path, self.src) if path else "::".join(module) + " (dir)"


def cycles(edges):
    """Strongly connected components of more than one node, each with one cycle through it."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(set(graph) | {b for _, b in edges}):
        if v not in index:
            connect(v)
    found = []
    for comp in comps:
        members = set(comp)
        start = comp[0]
        # shortest path back to start, breadth first inside the component
        prev, queue = {start: None}, [start]
        end = None
        while queue and end is None:
            nxt = []
            for v in queue:
                for w in sorted(graph[v]):
                    if w not in members:
                        continue
                    if w == start:
                        end = v
                        break
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if end is not None:
                    break
            queue = nxt
        path = [end]
        while prev[path[-1]] is not None:
            path.append(prev[path[-1]])
        found.append((comp, list(reversed(path)) + [start]))
    return found


def within(module, local, head):
    """Whether `module` is `local` as seen from directory `head` (a head is only itself)."""
    if local == head:
        return module == head
    return module[: len(local)] == local


def report(src, strict):
    crate = Crate(src)
    crate.scan()
    bad = 0
    print(f"== {src}: {len(crate.files)} files")
    top = crate.top_edges()
    print("top-level modules (edge: names used):")
    for (a, b), n in sorted(top.items()):
        print(f"  {a} -> {b}: {n}")
    for comp, cyc in cycles(top):
        bad += 1
        print(f"  CYCLE among {', '.join(comp)}: {' -> '.join(cyc)}")
        for a, b in zip(cyc, cyc[1:]):
            names = sorted(
                n
                for (x, y), ns in crate.refs.items()
                if x and y and x[0] == a and y[0] == b
                for n in ns
            )
            print(f"    {a} -> {b}: {', '.join(names)}")
    for head, edges in sorted(crate.dir_edges().items()):
        print(f"directory {'/'.join(head)}/ (head {crate.label(head)}):")
        for (a, b), n in sorted(edges.items()):
            print(f"  {crate.label(a)} -> {crate.label(b)}: {n}")
        for comp, cyc in cycles(edges):
            through_head = head in comp
            if strict or not through_head:
                bad += 1
            kind = "HEAD CYCLE" if through_head else "CYCLE"
            print(f"  {kind}: {' -> '.join(crate.label(m) for m in cyc)}")
            for a, b in zip(cyc, cyc[1:]):
                names = sorted(
                    n
                    for (x, y), ns in crate.refs.items()
                    if within(x, a, head) and within(y, b, head)
                    for n in ns
                )
                print(f"    {crate.label(a)} -> {crate.label(b)}: {', '.join(names)}")
    print(f"{'no cycle' if not bad else f'{bad} cycle(s)'} in {src}")
    return bad


def main(argv):
    if len([a for a in argv[1:] if a != "--strict"]) < 1 or any(
        a in ("-h", "--help") for a in argv[1:]
    ):
        print(__doc__.strip())
        return 0 if any(a in ("-h", "--help") for a in argv[1:]) else 2
    strict = "--strict" in argv[1:]
    bad = 0
    for src in [a for a in argv[1:] if a != "--strict"]:
        if not os.path.isdir(src):
            print(f"{src} is not a directory: give a crate's src/", file=sys.stderr)
            return 2
        bad += report(src, strict)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
