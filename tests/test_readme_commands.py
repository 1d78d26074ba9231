"""Every ``distill3d ...`` command README.md shows runs, on the default (embedded) prior, through the CLI.

Each line starting with ``distill3d `` in the README's code blocks and inline code spans is one case. Its
placeholders become paths made here (``runs/first`` is the run of the README's first ``generate``; ``RUN`` a
copy of it; ``DIR`` a fresh folder; ``...`` the first ``generate``'s prompt and method), alternatives
(``ply|glb|obj|mp4``) run one by one, and runs are shortened (``--set steps=2``, small exports) where the command
takes those options. A case exits 0 and leaves the files the README names. Commands that cannot run here skip
with the reason, which the test checks against the README (weights) or the command (no dry-run option).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from distill3d.cli.main import main

README_PATH = Path(__file__).resolve().parents[1] / "README.md"
README = README_PATH.read_text()


def readme_commands(text: str) -> list[str]:
    """The ``distill3d ...`` lines of code blocks, then of inline code spans (a span may wrap: its
    whitespace is collapsed), in order, each once."""
    found, in_block = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and line.startswith("distill3d "):
            found.append(line.strip())
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)
              if span.startswith("distill3d ")]
    return list(dict.fromkeys(found))


COMMANDS = readme_commands(README)
FIRST = next(c for c in COMMANDS if c.startswith('distill3d generate "'))  # the README's first run

#: What makes a generate or edit fast here: two steps, tiny exports, few Gaussians, no checkpoints.
FAST_RUN = ("steps=2", "export_size=16", "turntable_frames=2", "mesh_resolution=8", "checkpoint_every=0",
            "preview_every=0")
FAST_EXPORT = {"mp4": ["--frames", "2", "--size", "16"], "glb": ["--resolution", "16"], "obj": ["--resolution", "16"]}
EXPORT_FILES = {"ply": "gaussians_export.ply", "glb": "mesh_export.glb", "obj": "mesh_export.obj",
                "mp4": "turntable_export.mp4"}


def _files_named(sentence_start: str) -> list[str]:
    """The backticked file names of the README paragraph that starts with ``sentence_start``."""
    paragraph = README[README.index(sentence_start):].split("\n\n")[0]
    return re.findall(r"`([^`/ ]+\.[a-z0-9]+)`", paragraph)


RUN_FILES = _files_named("The run writes")  # gaussians.ply, mesh.glb, ..., preset.json, run.json
EDIT_FILES = _files_named("The source is never written")  # before_after.png, turntable_before_after.mp4


def _present(folder: Path, name: str) -> bool:
    """``name`` in ``folder``; a turntable is a .gif where no ffmpeg is installed (export.video)."""
    return (folder / name).is_file() or (name.endswith(".mp4") and (folder / name).with_suffix(".gif").is_file())


# ---- commands that cannot run here, and why --------------------------------------------------------------


def _view_options() -> list[str]:
    from distill3d.cli.view import view

    return sorted(o for p in view.params if isinstance(p, click.Option) for o in p.opts)


def why_not_run(command: str) -> str | None:
    """The reason a README command cannot run in a test (checked to be true), or None."""
    if "--prior sd" in command:
        marked = "when you have the weights (`pip install -e '.[sd]'`, `--prior sd --model PATH`)"
        assert marked in " ".join(README.split())
        return ("needs Stable Diffusion weights, which the README marks ('when you have the weights', "
                "`--prior sd --model PATH`); the tiny-SD tests in tests/priors run that path")
    if command.startswith("distill3d view ") or " --view" in command:
        options = _view_options()
        assert not [o for o in options if "dry" in o or "check" in o], options  # else: run with that option
        return (f"serves a web viewer until Ctrl+C and `distill3d view` has no dry-run option (only "
                f"{', '.join(options)}); tests/viewer test the viewer")
    return None


def help_only(command: str) -> bool:
    """Benchmarks (``distill3d bench ...``) run for minutes to hours: the README names them, and the test
    checks that each named command exists (its --help exits 0)."""
    return command.startswith("distill3d bench")


# ---- from a README line to argument lists ----------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    first_run: Path  # the README's first generate, run once for this module
    tmp: Path  # this case's own folder


def _alternatives(tokens: list[str]) -> list[list[str]]:
    """``a|b|c`` in one token: one argument list per alternative (tokens with several: every combination)."""
    lists: list[list[str]] = [[]]
    for tok in tokens:
        choices = tok.split("|") if "|" in tok and not tok.startswith("-") else [tok]
        lists = [done + [c] for done in lists for c in choices]
    return lists


def _substitute(tokens: list[str], place: Place) -> list[str]:
    first = shlex.split(FIRST)[2:]
    prompt_and_method = first[:first.index("--out")]  # '"a red cube" --method anchords'
    out: list[str] = []
    for tok in tokens:
        if tok == "runs/first":
            out.append(str(place.first_run))
        elif tok.startswith("runs/"):
            out.append(str(place.tmp / tok))
        elif tok == "DIR":
            out.append(str(place.tmp / "dir"))
        elif tok == "RUN_OR_PLY":
            out.append(str(place.first_run))
        elif tok == "RUN":  # a copy: the export writes beside the run's own files
            out.append(str(shutil.copytree(place.first_run, place.tmp / "run_copy", dirs_exist_ok=True)))
        elif tok == "METHOD":
            out.append("anchords")
        elif tok == "...":
            out += [*prompt_and_method, "--out", str(place.tmp / "run")]
        else:
            out.append(tok)
    leftover = [t for t in out if re.fullmatch(r"[A-Z][A-Z_]+", t)]
    assert not leftover, f"a placeholder this test does not know: {leftover}"
    return out


def _shorten(argv: list[str]) -> list[str]:
    """Fewer steps and small exports, through the options each command has."""
    if argv[0] in ("generate", "edit"):
        argv = [re.sub(r"^steps=\d+$", "steps=2", a) for a in argv]
        extra = [*FAST_RUN, "num_gaussians=200"] if argv[0] == "generate" else FAST_RUN
        return argv + [a for kv in extra for a in ("--set", kv)]
    if argv[0] == "export":
        return argv + FAST_EXPORT.get(argv[argv.index("--format") + 1], [])
    return argv


def argument_lists(command: str, place: Place) -> list[list[str]]:
    tokens = shlex.split(re.sub(r"\s*\|\s*", "|", command))[1:]  # "tune | run | report" -> "tune|run|report"
    return [_shorten(_substitute(alt, place)) for alt in _alternatives(tokens)]


# ---- what each command leaves ----------------------------------------------------------------------------


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def check_result(argv: list[str], output: str) -> None:
    kind = " ".join(argv[:2]) if argv[0] == "toy" else argv[0]
    if kind == "generate":
        out = Path(_option(argv, "--out"))
        missing = [n for n in RUN_FILES if not _present(out, n)]
        assert RUN_FILES and not missing, f"{out} lacks {missing}"
        replaced = json.loads((out / "preset.json").read_text()).get("replaced_texts", {})
        assert all(f"note: {path} " in output for path in replaced), output  # said, and recorded
    elif kind == "edit":
        out = Path(_option(argv, "--out"))
        missing = [n for n in [*EDIT_FILES, "gaussians.ply", "run.json"] if not _present(out, n)]
        assert len(EDIT_FILES) == 2 and not missing, f"{out} lacks {missing}"
    elif kind in ("render", "toy render"):
        out = Path(_option(argv, "--out"))
        azimuths = _option(argv, "--azimuths").split(",") if "--azimuths" in argv else None
        views = sorted(p.name for p in out.glob("view_*.png"))
        assert (out / "views.png").is_file() and views, out
        assert azimuths is None or views == sorted(f"view_{a}.png" for a in azimuths), views
    elif kind == "export":
        fmt = _option(argv, "--format")
        assert _present(Path(argv[1]), EXPORT_FILES[fmt]), output  # the run's own file is kept beside it
    elif kind == "toy sample":
        out = Path(_option(argv, "--out"))
        views = int(_option(argv, "--views")) if "--views" in argv else 1
        n = int(_option(argv, "--n")) if "--n" in argv else 4
        assert (out / "grid.png").is_file() and len(list(out.glob("sample_*.png"))) == n * views, output
    elif kind == "methods":
        assert ("--set keys" if len(argv) > 1 else "generate methods") in output, output
    elif kind == "presets":
        assert "anchords-3dgs-ip" in output, output
    else:
        raise AssertionError(f"no expected output written down for `distill3d {kind}`: add it here")


# ---- the tests ----------------------------------------------------------------------------------------


def _run(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, list[str], int, str]:
    """The README's first ``generate``, run once (later commands read its folder): path, argv, code, output."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("readme")
    place = Place(root / "runs" / "first", root)
    (argv,) = argument_lists(FIRST, place)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(argv)
    return place.first_run, argv, code, buffer.getvalue()


def test_the_readme_shows_commands_of_every_kind():
    assert len(COMMANDS) >= 10 and FIRST.endswith("--out runs/first")
    for kind in ("generate", "edit", "render", "export", "toy render", "view", "methods", "presets"):
        assert any(c.startswith(f"distill3d {kind} ") or c == f"distill3d {kind}" for c in COMMANDS), kind


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(command, first_run, tmp_path, capsys):
    reason = why_not_run(command)
    if reason is not None:
        pytest.skip(reason)
    run_dir, first_argv, first_code, first_output = first_run
    for argv in argument_lists(command, Place(run_dir, tmp_path)):
        if help_only(command):
            argv = [a for a in argv if not a.startswith("-")] + ["--help"]
            code, output = _run(argv, capsys)
            assert code == 0 and "Usage: distill3d" in output, (argv, output)
            continue
        code, output = (first_code, first_output) if argv == first_argv else _run(argv, capsys)
        assert code == 0, (argv, output)
        check_result(argv, output)


def test_the_code_form_runs_on_the_toy_prior_with_the_empty_negative_prompt(tmp_path, capsys):
    """The README's `--set form=code` line: AnchorDS' code form's negative prompt (SDS-Bridge's failure text)
    is no toy caption, so on the toy prior the run uses the empty prompt, says so and records it."""
    from distill3d.guidance.anchords import CODE_NEGATIVE_PROMPT

    (command,) = [c for c in COMMANDS if "--set form=code" in c]
    (argv,) = argument_lists(command, Place(tmp_path / "unused", tmp_path))
    code, output = _run(argv, capsys)
    assert code == 0, output
    assert "note: form.negative_prompt 'oversaturated, smooth" in output and "the empty prompt ''" in output
    preset = json.loads((tmp_path / "run" / "preset.json").read_text())
    assert preset["method_config"]["form"]["negative_prompt"] == ""
    assert preset["method_config"]["form"]["guidance_scale"] == 50.0
    assert preset["replaced_texts"] == {"form.negative_prompt": {"was": CODE_NEGATIVE_PROMPT, "now": "",
                                                                 "why": "the toy prior cannot read it"}}
    # a negative prompt given with --set is the user's: refused as before, never replaced
    given = [*argv[:argv.index("--out") + 1], str(tmp_path / "given"), "--set", "form=code",
             "--set", "form.negative_prompt=blurry"]
    code, output = _run(given, capsys)
    assert code == 2 and "conditions on the text 'blurry', which the toy prior cannot read" in output
