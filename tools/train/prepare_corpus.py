#!/usr/bin/env python3
"""Build the training corpus of the default model from freely licensed English text that
Debian packages install: documentation (HTML or POD) and the King James Bible.

    python3 tools/train/prepare_corpus.py [--out scratch/corpus] [--install]

Writes OUT/train.txt, OUT/heldout.txt (with --gzip also their .gz) and OUT/sources.json. Documents are separated by a
line holding only DOC_SEPARATOR; the held-out set is a deterministic ~2% of the documents
(chosen by a hash of the document's name), so training never sees them. Needs only the
Python standard library, the packages in SOURCES (--install runs apt-get for them), and
the `bible` and `pod2text` programs those packages bring.
"""
import argparse
import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

DOC_SEPARATOR = "<|end_of_text|>"
HELDOUT_PER_MILLE = 20

# Whole subtrees that are navigation, search boxes, permalinks or tables of contents.
SKIP_TAGS = {"script", "style", "head", "nav", "footer", "header", "noscript", "svg", "form", "button"}
SKIP_CLASSES = {
    "headerlink", "related", "sphinxsidebar", "sphinxsidebarwrapper", "navheader", "navfooter",
    "docnav", "toc", "list-of-tables", "list-of-examples", "list-of-figures", "breadcrumbs",
    "inline-search", "searchbox", "nav", "footer", "copyright", "legalnotice", "indexterm",
}
SKIP_IDS = {"hd", "ft", "sidebar", "global-nav", "header", "footer", "searchbox", "banner",
            "toc", "footnotes-nav", "breadcrumbs", "header_wrapper", "navigation"}
SKIP_ROLES = {"navigation", "search", "banner", "contentinfo"}
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
             "source", "track", "wbr"}
BLOCK_TAGS = {"p", "div", "section", "article", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol",
              "dl", "table", "tr", "blockquote", "pre", "figure", "caption", "hr", "br", "li",
              "dt", "dd", "title", "tbody", "thead"}


class TextExtractor(HTMLParser):
    """HTML to plain text: paragraphs become blank-line separated lines, <pre> keeps its
    layout, navigation subtrees are dropped. When the page marks its content with
    role="main" (Sphinx), only that part is kept."""

    def __init__(self, main_only):
        super().__init__(convert_charrefs=True)
        self.main_only = main_only
        self.skip = None  # (tag, depth) of the subtree being skipped
        self.main = None  # (tag, depth) of the main region while inside it
        self.pre_depth = 0
        self.parts = []

    def _collecting(self):
        return self.skip is None and (not self.main_only or self.main is not None)

    def handle_starttag(self, tag, attrs):
        if tag in VOID_TAGS:
            if tag in ("br", "hr") and self._collecting():
                self.parts.append(("pre", "\n") if self.pre_depth else ("break", ""))
            return
        if self.skip is not None:
            if tag == self.skip[0]:
                self.skip = (tag, self.skip[1] + 1)
            return
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        if (tag in SKIP_TAGS or classes & SKIP_CLASSES or a.get("id") in SKIP_IDS
                or a.get("role") in SKIP_ROLES or a.get("aria-hidden") == "true"):
            self.skip = (tag, 1)
            return
        if self.main is not None:
            if tag == self.main[0]:
                self.main = (tag, self.main[1] + 1)
        elif a.get("role") == "main":
            self.main = (tag, 1)
        if not self._collecting():
            return
        if tag == "pre":
            self.pre_depth += 1
        if tag in BLOCK_TAGS and (tag == "pre" or not self.pre_depth):
            self.parts.append(("break", ""))
        if tag == "li":
            self.parts.append(("text", "- "))

    def handle_endtag(self, tag):
        if tag in VOID_TAGS:
            return
        if self.skip is not None:
            if tag == self.skip[0]:
                depth = self.skip[1] - 1
                self.skip = None if depth == 0 else (tag, depth)
            return
        if self._collecting():
            if tag == "pre" and self.pre_depth:
                self.pre_depth -= 1
            if tag in BLOCK_TAGS and (tag == "pre" or not self.pre_depth):
                self.parts.append(("break", ""))
            elif tag in ("td", "th"):
                self.parts.append(("text", " "))
        if self.main is not None and tag == self.main[0]:
            depth = self.main[1] - 1
            self.main = None if depth == 0 else (tag, depth)

    def handle_data(self, data):
        if self._collecting():
            self.parts.append(("pre" if self.pre_depth else "text", data))

    def text(self):
        paragraphs, words, code = [], [], []

        def flush():
            line = " ".join("".join(words).split())
            if line:
                paragraphs.append(line)
            words.clear()
            lines = [ln.rstrip() for ln in "".join(code).expandtabs(4).split("\n")]
            while lines and not lines[0].strip():
                lines.pop(0)
            while lines and not lines[-1].strip():
                lines.pop()
            if lines:
                paragraphs.append("\n".join(lines))
            code.clear()

        for kind, data in self.parts:
            if kind == "pre":
                if words:
                    flush()
                code.append(data)
            elif kind == "break":
                if "".join(words).strip() != "-":  # keep a list marker with its item's text
                    flush()
            else:
                if code:
                    flush()
                words.append(data)
        flush()
        return "\n\n".join(paragraphs)


def html_to_text(path):
    raw = open(path, "rb").read().decode("utf-8", errors="replace")
    main_only = 'role="main"' in raw
    parser = TextExtractor(main_only)
    parser.feed(raw)
    parser.close()
    return parser.text()


def html_pages(root, exclude=()):
    skip = re.compile("|".join(exclude)) if exclude else None
    for path in sorted(glob.glob(os.path.join(root, "**", "*.html"), recursive=True)):
        rel = os.path.relpath(path, root)
        if skip and skip.search(rel):
            continue
        yield rel, html_to_text(path)


# Each source yields (document name, text).
def python_docs():
    return html_pages("/usr/share/doc/python3.11/html",
                      [r"^genindex", r"^py-modindex", r"^search", r"^_", r"^contents", r"^download",
                       r"^copyright", r"^license", r"^bugs", r"^about"])


def django_docs():
    return html_pages("/usr/share/doc/python-django-doc/html",
                      [r"^genindex", r"^py-modindex", r"^search", r"^_", r"^contents", r"^releases/"])


def postgresql_docs():
    return html_pages("/usr/share/doc/postgresql-doc-15/html",
                      [r"^bookindex", r"^release-", r"^index\.html", r"^legalnotice", r"^biblio"])


def debian_reference():
    return html_pages("/usr/share/debian-reference", [r"^(?!.*\.en\.html$)", r"^index\."])


def debian_handbook():
    return html_pages("/usr/share/doc/debian-handbook/html/en-US",
                      [r"^Common_Content", r"^index\.html", r"^ix01", r"^pr", r"^book\."])


def git_docs():
    return html_pages("/usr/share/doc/git-doc", [r"^RelNotes", r"^howto-index", r"^technical/api-index"])


LINUX_DOC_DIRS = ("admin-guide", "process", "kernel-hacking", "filesystems", "scheduler", "dev-tools",
                  "doc-guide", "mm", "locking", "RCU", "security", "trace", "networking", "core-api", "bpf",
                  "kbuild", "power", "block", "timers", "livepatch", "maintainer", "virt", "x86", "arm64",
                  "sound")


# Lists and tables rather than prose: ABI listings, the MAINTAINERS file, API summaries.
LINUX_DOC_EXCLUDE = re.compile(r"^admin-guide/(abi|devices|kernel-parameters|media/.*cardlist)|"
                               r"^process/maintainers|^filesystems/api-summary")


def linux_docs():
    root = "/usr/share/doc/linux-doc-6.1/html"
    for sub in LINUX_DOC_DIRS:
        for name, text in html_pages(os.path.join(root, sub)):
            if not LINUX_DOC_EXCLUDE.search(f"{sub}/{name}"):
                yield f"{sub}/{name}", text


def debian_guides():
    yield from (("developers-reference/" + n, t) for n, t in html_pages(
        "/usr/share/developers-reference", [r"^developers-reference\.html", r"^index", r"^search"]))
    yield from (("policy/" + n, t) for n, t in html_pages(
        "/usr/share/doc/debian-policy/policy.html", [r"^genindex", r"^index", r"^search"]))
    yield from (("maint-guide/" + n, t) for n, t in html_pages(
        "/usr/share/doc/maint-guide/html", [r"^(?!.*\.en\.html$)", r"^index\."]))


def perl_docs():
    for path in sorted(glob.glob("/usr/share/perl/*/pod/*.pod")):
        name = os.path.basename(path)
        if re.match(r"perl5\d+delta|perl\d+delta|perltoc|perlhist", name):
            continue
        out = subprocess.run(["pod2text", "-w", "100000", path], capture_output=True, text=True,
                             errors="replace").stdout
        yield name, out


def kjv_bible():
    """One document per chapter: a title line, then one verse per line (numbers dropped)."""
    out = subprocess.run(["bible", "-m", "16384", "-l", "100000", "Ge1:1-Re22:21"],
                         capture_output=True, text=True, check=True).stdout
    title, verses = None, []
    for line in out.split("\n") + ["Done 0"]:
        line = line.strip()
        if not line:
            continue
        heading = re.fullmatch(r"((?:\d )?[A-Z][A-Za-z ]+) (\d+)", line)
        verse = re.fullmatch(r"(\d+) (.+)", line)
        if heading:
            if title and verses:
                yield title, title + "\n\n" + "\n".join(verses)
            title, verses = line, []
        elif verse:
            verses.append(verse.group(2))
        else:
            raise SystemExit(f"kjv: unexpected line from `bible`: {line[:80]!r}")


SOURCES = [
    # name, Debian package(s), licence as the package's copyright file states, collector
    ("kjv-bible", ["bible-kjv", "bible-kjv-text"], "public domain (text); program GPL-2+", kjv_bible),
    ("python-docs", ["python3.11-doc"], "PSF License Version 2 (examples: Zero-Clause BSD)", python_docs),
    ("debian-reference", ["debian-reference-en"], "GPL-2+", debian_reference),
    ("debian-handbook", ["debian-handbook"], "GPL-2+ or CC-BY-SA-3.0", debian_handbook),
    ("postgresql-docs", ["postgresql-doc-15"], "PostgreSQL License (BSD-style)", postgresql_docs),
    ("django-docs", ["python-django-doc"], "BSD-3-Clause", django_docs),
    ("git-docs", ["git-doc"], "GPL-2", git_docs),
    ("perl-docs", ["perl-doc"], "GPL-1+ or Artistic", perl_docs),
    ("debian-guides", ["developers-reference", "debian-policy", "maint-guide"],
     "GPL-2 (developers-reference), GPL-2+ (debian-policy, maint-guide)", debian_guides),
    ("linux-docs", ["linux-doc-6.1"], "GPL-2", linux_docs),
]

BOILERPLATE_LINES = re.compile(
    r"^(Table of Contents|Contents|Previous topic|Next topic|This Page|Show Source|Navigation|"
    r"Report a Bug|Quick search|¶|Prev|Next|Up|Home)$")


def clean(text):
    text = text.replace("\r", "").replace("\u00a0", " ").replace("\u200b", "")
    lines = [ln for ln in text.split("\n") if not BOILERPLATE_LINES.match(ln.strip())]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text.replace(DOC_SEPARATOR, "<|end of text|>")


def is_heldout(source, name):
    digest = hashlib.sha256(f"{source}/{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % 1000 < HELDOUT_PER_MILLE


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="scratch/corpus")
    ap.add_argument("--install", action="store_true", help="apt-get install the source packages first")
    ap.add_argument("--gzip", action="store_true",
                    help="also write train.txt.gz and heldout.txt.gz (what the GPU machine is sent)")
    ap.add_argument("--min-chars", type=int, default=300, help="drop documents shorter than this")
    args = ap.parse_args()
    if args.install:
        packages = sorted({p for _, pkgs, _, _ in SOURCES for p in pkgs})
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], check=True)
    os.makedirs(args.out, exist_ok=True)
    seen = set()
    stats = []
    with open(os.path.join(args.out, "train.txt"), "w", encoding="utf-8") as train, \
            open(os.path.join(args.out, "heldout.txt"), "w", encoding="utf-8") as heldout:
        for source, packages, licence, collect in SOURCES:
            row = {"source": source, "packages": packages, "licence": licence, "docs": 0,
                   "heldout_docs": 0, "bytes": 0, "heldout_bytes": 0, "dropped_short": 0, "duplicates": 0}
            for name, raw in collect():
                text = clean(raw)
                if len(text) < args.min_chars:
                    row["dropped_short"] += 1
                    continue
                digest = hashlib.sha256(text.encode()).digest()
                if digest in seen:
                    row["duplicates"] += 1
                    continue
                seen.add(digest)
                held = is_heldout(source, name)
                (heldout if held else train).write(text + "\n" + DOC_SEPARATOR + "\n")
                size = len(text.encode())
                row["heldout_docs" if held else "docs"] += 1
                row["heldout_bytes" if held else "bytes"] += size
            stats.append(row)
            print(f"{source:18s} train {row['docs']:5d} docs {row['bytes'] / 1e6:7.2f} MB   heldout "
                  f"{row['heldout_docs']:3d} docs {row['heldout_bytes'] / 1e6:5.2f} MB", file=sys.stderr)
    total = {k: sum(r[k] for r in stats) for k in ("docs", "heldout_docs", "bytes", "heldout_bytes")}
    print(f"{'total':18s} train {total['docs']:5d} docs {total['bytes'] / 1e6:7.2f} MB   heldout "
          f"{total['heldout_docs']:3d} docs {total['heldout_bytes'] / 1e6:5.2f} MB", file=sys.stderr)
    if args.gzip:
        for name in ("train.txt", "heldout.txt"):
            path = os.path.join(args.out, name)
            with open(path, "rb") as src, gzip.GzipFile(path + ".gz", "wb", compresslevel=9, mtime=0) as dst:
                shutil.copyfileobj(src, dst)
    json.dump({"separator": DOC_SEPARATOR, "heldout_per_mille": HELDOUT_PER_MILLE, "sources": stats,
               "total": total}, open(os.path.join(args.out, "sources.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
