import pytest

from k2.cli import build_parser

COMMANDS = [["up"], ["down"], ["status"], ["jars"], ["kafka"], ["lake"], ["feed"], ["gaps"], ["stream"], ["settings"]]


@pytest.mark.parametrize("command", [[], *COMMANDS])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: k2")
    assert len(out.splitlines()) > 3
