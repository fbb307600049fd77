from k2 import system_packages
from k2.system_packages import SystemPackage


def test_missing_lists_only_packages_whose_program_is_absent() -> None:
    present = SystemPackage("coreutils", "ls", "always there")
    absent = SystemPackage("k2-no-such-package", "k2-no-such-program", "never there")
    assert system_packages.missing([present, absent]) == [absent]


def test_ensure_is_a_no_op_when_everything_is_present() -> None:
    assert system_packages.ensure([SystemPackage("coreutils", "ls", "always there")]) == []
