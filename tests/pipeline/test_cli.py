import pytest

from distill3d.cli.main import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_generate_caption_outside_toy_grammar(tmp_path, capsys):
    assert main(["generate", "a photo of a dragon", "--out", str(tmp_path / "r")]) == 2
    assert "grammar" in _one_line_error(capsys)


def test_generate_unknown_method_and_bad_set(tmp_path, capsys):
    assert main(["generate", "a red cube", "--method", "magic", "--out", str(tmp_path / "r")]) == 2
    assert "unknown generate method" in _one_line_error(capsys)
    assert main(["generate", "a red cube", "--set", "steps=lots", "--out", str(tmp_path / "r")]) == 2
    assert "expected int" in _one_line_error(capsys)


def test_generate_with_missing_stable_diffusion_weights_says_what_to_do(tmp_path, capsys, monkeypatch):
    pytest.importorskip("diffusers", reason="the Stable Diffusion prior needs the 'sd' extra")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    rc = main(["generate", "a photo of a dragon", "--prior", "sd", "--model", str(tmp_path / "no_such_model"),
               "--out", str(tmp_path / "r")])
    assert rc == 1  # missing files are not bad arguments (exit 2) but still a clear, one-line failure
    err = _one_line_error(capsys)
    assert "no_such_model" in err and "--model" in err
    assert not (tmp_path / "r" / "run.json").exists()


def test_methods_lists_every_registered_method_under_its_kind_and_every_representation(capsys):
    from distill3d.guidance import KINDS, methods_of
    from distill3d.scene.registry import REPRESENTATIONS

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    sections = out.split("edit methods")
    assert len(sections) == 2
    for kind, text in zip(KINDS, sections):
        for name, entry in methods_of(kind).items():
            assert f"\n{name}: {entry.description}\n    {entry.config()}\n" in text
    for name, entry in REPRESENTATIONS.items():
        assert f"representation {name}: " in out and f"{entry.config_type()}" in out


def test_the_prior_choices_of_the_cli_are_the_registry_of_priors():
    """The CLI lists the prior kinds by hand (importing the registry would load torch for `--help`): keep in step."""
    from distill3d.cli.generate import PRIOR_OPTIONS
    from distill3d.pipeline.priors import PRIOR_KINDS

    @PRIOR_OPTIONS[0]
    def command(prior_kind):  # the --prior option alone, applied to a stand-in command
        return prior_kind

    assert tuple(command.__click_params__[0].type.choices) == PRIOR_KINDS
