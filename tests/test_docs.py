"""README.md and docs/tutorial.md run as written.

Every ``bash`` and ``python`` block runs, in order, in a scratch folder holding a copy of
``sample_data/nhp_study`` (the documents' commands run from the repository root; nothing is written
into the sample). A block that cannot run says why in an HTML comment right before it
(``<!-- not-run: reason -->``). Each command must exit 0; the outputs it names must exist (regions.csv,
study.json, the label maps, report, phantom, export files); a quantification of the sample must give
the phantom's truth (truth.json); a ``text`` block after a block is output that run must print
(lines with ``...`` are elisions); a ``toml`` block is the sample's study file.

``spectrack`` commands run in this process (``spectrack.cli.main``), Python blocks with ``exec``: the
same code as the console script and ``python step.py``, without an interpreter start per block. A
command repeated verbatim in one document runs once.
"""

import json
import re
import shlex
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from spectrack.cli import main
from spectrack.phantom.sample import REPO_SAMPLE

REPO = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/tutorial.md"]
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->", re.S)


@dataclass
class Block:
    doc: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    not_run: str | None = None

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def read_blocks(doc: str) -> list[Block]:
    """The code blocks of a document; a ``<!-- not-run: reason -->`` comment on the line before one marks it."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse((REPO / doc).read_text(encoding="utf-8"))
    out, marks = [], {}  # marks: the line a comment ends before -> its reason
    for t in tokens:
        if t.type == "html_block":
            m = NOT_RUN.search(t.content)
            if m:
                marks[t.map[1]] = " ".join(m.group(1).split())
        elif t.type == "code_block":  # indented: cannot say what it is, nor be run
            out.append(Block(doc, t.map[0] + 1, "indented", t.content))
        elif t.type == "fence":
            lang = t.info.strip().split()[0] if t.info.strip() else ""
            out.append(Block(doc, t.map[0] + 1, lang, t.content, marks.pop(t.map[0], None)))
    assert not marks, f"{doc}: not-run comments not right before a block (lines {sorted(marks)})"
    return out


def commands(text: str) -> list[list[str]]:
    """Shell lines of a bash block as argument lists (continuations joined, comments dropped, split at &&)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        cmd: list[str] = []
        for w in words + ["&&"]:
            if w == "&&":
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
    return out


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _option(argv, *names, default=None):
    for n, a in enumerate(argv):
        if a in names and n + 1 < len(argv):
            return argv[n + 1]
    return default


class Runner:
    """Runs one document's blocks in ``work`` and checks what they write."""

    def __init__(self, work: Path, capsys, monkeypatch):
        self.work, self.capsys, self.monkeypatch = work, capsys, monkeypatch
        self.done: set[tuple] = set()
        self.truth = json.loads((work / "sample_data" / "nhp_study" / "truth.json").read_text())

    def run(self, block: Block) -> str:
        self.monkeypatch.chdir(self.work)
        if block.lang == "python":
            self.capsys.readouterr()
            exec(compile(block.text, block.where, "exec"), {"__name__": "__main__"})
            return self.capsys.readouterr().out
        printed = []
        for argv in commands(block.text):
            if argv[:3] == ["python", "-m", "spectrack"]:
                argv = ["spectrack"] + argv[3:]
            assert argv[0] == "spectrack", (f"{block.where}: {' '.join(argv)} is not a spectrack command: run it "
                                            "here or mark the block <!-- not-run: reason -->")
            if tuple(argv) in self.done:
                continue
            self.monkeypatch.setattr(sys, "argv", argv)
            self.capsys.readouterr()
            rc = main(argv[1:])
            cap = self.capsys.readouterr()
            assert rc == 0, f"{block.where}: {' '.join(argv)} exited {rc}:\n{cap.err[-2000:]}"
            self.check_outputs(block, argv[1:], cap.out)
            self.done.add(tuple(argv))
            printed.append(cap.out)
        return "\n".join(printed)

    def check_outputs(self, block: Block, args: list[str], out: str) -> None:
        w = self.work
        where = f"{block.where}: spectrack {' '.join(args)}"
        cmd = args[0]
        if cmd in ("quantify", "demo"):
            res = w / _option(args, "-o", "--out", default="results" if cmd == "quantify" else "results/demo")
            for name in ("regions.csv", "study.json", "labels/tp0_labels.nii.gz", "labels/tp0_labels.tsv"):
                assert (res / name).is_file(), f"{where}: no {name} in {res}"
            assert (res / "report.html").is_file() == ("--no-report" not in args), f"{where}: report.html"
            meta = json.loads((res / "study.json").read_text())
            table = pd.read_csv(res / "regions.csv")
            sample = cmd == "demo" or any("nhp_study" in a for a in args[1:] if not a.startswith("-"))
            if sample:  # every route the documents show gives the truth's %ID for the sample
                for tp in self.truth["timepoints"]:
                    for name, reg in tp["regions"].items():
                        got = table[(table.timepoint == tp["index"]) & (table.region == name)]["pct_id"].item()
                        assert got == pytest.approx(reg["pct_id"], rel=1e-3, abs=1e-6), (where, tp["index"], name)
                assert len(meta["label_maps"]) == 6
            if "--pvc" in args:  # recovery correction gives the blurred phantom's truth (first scan)
                study = next(Path(a) for a in args[1:] if not a.startswith("-"))
                study = study if (w / study / "truth.json").exists() else study.parent
                truth = json.loads((w / study / "truth.json").read_text())
                reg = truth["timepoints"][0]["regions"]["canal_cervical"]
                got = table[(table.timepoint == 0) & (table.region == "canal_cervical")]["pct_id_pvc"].item()
                assert got == pytest.approx(reg["pct_id"], rel=2e-3), where
        elif cmd == "phantom":
            ph = w / args[1]
            for name in ("truth.json", "spectrack.toml", "labels.nii.gz", "dicom"):
                assert (ph / name).exists(), f"{where}: no {name} in {ph}"
        elif cmd == "info" and "--json" in args:
            assert len(json.loads(out)["timepoints"]) == 6, where
        elif cmd == "info":
            assert out.startswith("subject "), f"{where}: {out[:200]}"
        elif cmd == "report":
            res = w / _option(args, "-o", "--out", default=args[1])
            assert (res / "report.html").is_file() and (res / "figures" / "mip.png").is_file(), where
        elif cmd == "export":
            fmt = _option(args, "--format", "-f")
            res = w / _option(args, "-o", "--out", default=str(Path(args[1]) / "export"))
            suffix = {"seg": "_seg.dcm", "rtstruct": "_rtstruct.dcm", "nifti": "_labels.nii.gz"}[fmt]
            tps = [int(v) for k, v in zip(args, args[1:]) if k in ("--timepoint", "-t")] or list(range(6))
            assert sorted(p.name for p in res.glob(f"*{suffix}")) == sorted(f"tp{t}{suffix}" for t in tps), where
        else:
            pytest.fail(f"{where}: the test does not know what {cmd} writes: add a check")


def _tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def test_every_code_block_is_fenced_with_a_language():
    for doc in DOCS:
        for b in read_blocks(doc):
            assert b.lang in ("bash", "python", "text", "toml"), \
                f"{b.where}: a {b.lang or 'plain'} block: fence it as bash, python (run), text (output) or toml"


def test_not_run_blocks_say_why():
    n = 0
    for doc in DOCS:
        for b in read_blocks(doc):
            if b.not_run is not None:
                assert b.lang in ("bash", "python") and len(b.not_run) > 20, b.where
                n += 1
    assert n >= 4  # installs, the test suite, the viewer, batch on the user's studies


@pytest.mark.parametrize("doc", DOCS)
def test_document_runs_as_written(doc, tmp_path, capsys, monkeypatch):
    work = tmp_path / "repo"
    shutil.copytree(REPO_SAMPLE, work / "sample_data" / "nhp_study")
    sample_before = _tree(REPO_SAMPLE)
    copy_before = _tree(work / "sample_data")
    monkeypatch.setenv("COLUMNS", "100")  # the width the shown tables were printed at
    runner = Runner(work, capsys, monkeypatch)
    study_file = tomllib.loads((work / "sample_data" / "nhp_study" / "spectrack.toml").read_text())
    last_output, ran = None, 0
    for b in read_blocks(doc):
        if b.lang == "toml":  # the documents show the sample's study file
            assert tomllib.loads(b.text) == study_file, f"{b.where}: not the sample's spectrack.toml"
            continue
        if b.lang == "text":
            if last_output is None:
                continue  # a diagram, or the output of a block that does not run here
            for chunk in re.split(r"^.*\.\.\..*$", b.text, flags=re.M):
                if chunk.strip():
                    assert _squash(chunk) in _squash(last_output), \
                        f"{b.where}: output shown is not what the block above prints:\n{chunk}\n--- printed:\n" \
                        f"{last_output[:3000]}"
            continue
        if b.not_run is not None:
            last_output = None
            continue
        last_output = runner.run(b)
        ran += 1
    assert ran >= 3
    assert _tree(REPO_SAMPLE) == sample_before, "the documents wrote into sample_data"
    assert _tree(work / "sample_data") == copy_before, "a command wrote into the sample"
