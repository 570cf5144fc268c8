#!/usr/bin/env python3
"""check_citations.py SOURCE_DIR: comments and docs cite documents inside the
repository (issue 15 §3): nothing names ../shared/ or /work/, and every
"ARCHITECTURE.md §N[.M]" cited is a numbered section (or step) of
docs/ARCHITECTURE.md. Exit 1 listing each offender."""
import os
import re
import sys

root = sys.argv[1]
SKIP_DIRS = {".git", "node_modules", "web-dist"}
EXTS = (".c", ".h", ".py", ".sh", ".md", ".txt", ".yaml", ".yml", ".tsv", ".sql", ".cmake", ".mjs", ".js", ".ts",
        ".proto", ".env")
NAMES = ("CMakeLists.txt", "Makefile", "dev", "Dockerfile")

arch = open(os.path.join(root, "docs/ARCHITECTURE.md"), encoding="utf-8").read()
sections = set(re.findall(r"^## (\d+)\. ", arch, re.M)) | set(re.findall(r"\*\*(\d+\.\d+)\*\*", arch))

outside = re.compile(r"\.\./shared/|/work/(shared|briefs|main|wt-)")
cite = re.compile(r"ARCHITECTURE(?:\.md)?,? ?§ ?(\d+(?:\.\d+)?)")
bad = []
for dirpath, dirnames, files in os.walk(root):
    rel = os.path.relpath(dirpath, root)
    dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith("build") and not d.startswith(".paddock")]
    for f in files:
        if not (f.endswith(EXTS) or f in NAMES):
            continue
        path = os.path.join(dirpath, f)
        relf = os.path.normpath(os.path.join(rel, f))
        if relf == "tests/unit/check_citations.py":
            continue
        try:
            text = open(path, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if outside.search(line):
                bad.append(f"{relf}:{n}: cites a document outside the repository: {line.strip()}")
            for m in cite.finditer(line):
                if m.group(1) not in sections:
                    bad.append(f"{relf}:{n}: ARCHITECTURE.md §{m.group(1)} is not a section of docs/ARCHITECTURE.md")
if bad:
    print("\n".join(bad))
    sys.exit(1)
print(f"check_citations: no outside citations; ARCHITECTURE.md sections cited all exist ({sorted(sections)})")
