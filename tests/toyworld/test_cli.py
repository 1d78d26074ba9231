from PIL import Image

from distill3d.cli.main import main


def test_toy_render_writes_views(tmp_path, capsys):
    rc = main(["toy", "render", "a red cube on top of a blue sphere", "--azimuths", "0,180", "--size", "24",
               "--out", str(tmp_path)])
    assert rc == 0
    assert Image.open(tmp_path / "view_0.png").size == (24, 24)
    assert Image.open(tmp_path / "views.png").size == (48, 24)


def test_toy_render_bad_caption_is_one_line_exit_2(tmp_path, capsys):
    rc = main(["toy", "render", "a red dog", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "sphere" in err and "Traceback" not in err


def test_toy_render_bad_azimuths(tmp_path, capsys):
    assert main(["toy", "render", "a red cube", "--azimuths", "0,x", "--out", str(tmp_path)]) == 2
    assert "azimuths" in capsys.readouterr().err


def test_unknown_command_exit_2(capsys):
    assert main(["no-such-command"]) == 2


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    assert "toy" in capsys.readouterr().out
