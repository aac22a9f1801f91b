#!/usr/bin/env python3
"""The include graph and the file-size rule (ARCHITECTURE.md, "Modules").

  scripts/check-layering.py [--root DIR] [--allow FILE] [--strict]

Reads every `#include <localdns/OTHER/...>` (or "localdns/OTHER/...") in
src/MODULE/** and include/localdns/MODULE/** and prints one line per include
the module may not make:

  src/upstream/exchange.cpp:12: upstream may not include config (localdns/config/config.hpp)

and one line per source file over 600 lines in src/, include/, tests/ and
bench/ (not tests/deploy/node_modules, test data, fuzz corpora, nor *.md):

  src/doctor/checks.cpp: 866 lines, over 600

Exit status: 0 when nothing is forbidden, 1 when something is, 2 on a usage
error. A file under src/ outside a module folder (src/main.cpp) counts as app.

The allow-list (default: scripts/layering-allow.txt under --root, when it
exists) names known violations that do not fail the check, one a line:

  src/upstream/exchange.cpp: localdns/config/config.hpp
  src/doctor/checks.cpp: size

An entry that matches nothing is reported on stderr ("stale"); with --strict
it fails the check too. Python 3 standard library only.
"""

import argparse
import os
import re
import sys

MAX_LINES = 600

# What each module may include besides itself. config is special: see below.
ALLOWED = {
    "util": set(),
    "dns": {"util"},
    "cache": {"dns", "util"},
    "metrics": {"dns", "util"},
    "node": {"dns", "util"},
    "upstream": {"dns", "metrics", "util"},
    "server": {"dns", "cache", "upstream", "metrics", "util"},
    "doctor": {"dns", "node", "util"},
    "config": {"dns", "util"},
    "app": None,  # everything
}
# config builds the modules' settings: besides dns/ and util/ it may include
# `<localdns/MODULE/settings.hpp>` of any module but these, and no other
# header of any module. A settings header is a leaf: it may include only dns/
# and util/ (checked below), so config reaching server/settings.hpp never
# reaches the server's machinery.
CONFIG_NEVER = {"app", "doctor"}
SETTINGS_MAY_INCLUDE = {"dns", "util"}
CONFIG_SETTINGS_HEADER = "settings.hpp"

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]localdns/([A-Za-z0-9_]+)/([^>"]+)[>"]')
SOURCE_DIRS = ("src", "include", "tests", "bench")
SKIP_DIRS = {"node_modules", "corpus", "corpus_corefile", "data"}
SKIP_SUFFIXES = (".md", ".png", ".svg", ".jpg", ".gz")


def module_of(rel):
    """The module a file under src/ or include/localdns/ belongs to, or None."""
    parts = rel.split("/")
    if parts[0] == "src":
        return parts[1] if len(parts) > 2 else "app"
    if parts[0] == "include" and len(parts) > 3 and parts[1] == "localdns":
        return parts[2]
    return None


def allowed(module, other, header, rel=""):
    if rel.endswith("/" + CONFIG_SETTINGS_HEADER) and rel.startswith("include/"):
        return other in SETTINGS_MAY_INCLUDE
    if other == module:
        return True
    if module not in ALLOWED:
        return False  # an unknown module folder has no permissions
    permitted = ALLOWED[module]
    if permitted is None or other in permitted:
        return True
    if module == "config" and other not in CONFIG_NEVER:
        return header == CONFIG_SETTINGS_HEADER
    return False


def walk(root, top):
    base = os.path.join(root, top)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for f in sorted(filenames):
            path = os.path.join(dirpath, f)
            yield os.path.relpath(path, root).replace(os.sep, "/"), path


def read_text(path):
    with open(path, "rb") as f:
        data = f.read()
    if b"\0" in data[:8192]:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def find_violations(root):
    """[(allow key, message)] for every forbidden include and oversized file."""
    out = []
    for top in ("src", "include"):
        for rel, path in walk(root, top):
            module = module_of(rel)
            if module is None:
                continue
            text = read_text(path)
            if text is None:
                continue
            for n, line in enumerate(text.splitlines(), 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                other, header = m.group(1), m.group(2)
                if not allowed(module, other, header, rel):
                    target = f"localdns/{other}/{header}"
                    out.append((f"{rel}: {target}",
                                f"{rel}:{n}: {module} may not include {other} ({target})"))
    for top in SOURCE_DIRS:
        for rel, path in walk(root, top):
            if rel.endswith(SKIP_SUFFIXES):
                continue
            text = read_text(path)
            if text is None:
                continue
            lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
            if lines > MAX_LINES:
                out.append((f"{rel}: size", f"{rel}: {lines} lines, over {MAX_LINES}"))
    return out


def read_allow(path):
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                entries.append(" ".join(line.split()))
    return entries


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description="localdns include-graph and file-size check")
    p.add_argument("--root", default=os.path.dirname(here), help="the source tree (default: repo)")
    p.add_argument("--allow", help="allow-list file (default: ROOT/scripts/layering-allow.txt)")
    p.add_argument("--strict", action="store_true", help="stale allow-list entries fail too")
    args = p.parse_args(argv)
    root = os.path.abspath(args.root)
    if not os.path.isdir(os.path.join(root, "src")):
        print(f"check-layering: {root}: no src/ folder", file=sys.stderr)
        return 2
    allow_path = args.allow or os.path.join(root, "scripts", "layering-allow.txt")
    allow = []
    if os.path.exists(allow_path):
        allow = read_allow(allow_path)
    elif args.allow:
        print(f"check-layering: {allow_path}: no such file", file=sys.stderr)
        return 2
    allow_set = set(allow)
    used = set()
    failed = 0
    for key, message in find_violations(root):
        if key in allow_set:
            used.add(key)
            continue
        print(message)
        failed += 1
    stale = [a for a in allow if a not in used]
    for a in stale:
        print(f"check-layering: stale allow-list entry (fixed? remove it): {a}", file=sys.stderr)
    if failed:
        print(f"check-layering: {failed} violation(s); see ARCHITECTURE.md", file=sys.stderr)
        return 1
    if stale and args.strict:
        return 1
    allowed_now = len(used)
    print(f"check-layering: ok ({allowed_now} known violation(s) allowed by the allow-list)"
          if allowed_now else "check-layering: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
