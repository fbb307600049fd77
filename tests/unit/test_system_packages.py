from k2 import system_packages
from k2.system_packages import SystemPackage


def test_missing_lists_only_packages_whose_program_is_absent() -> None:
    present = SystemPackage("coreutils", "ls", "always there")
    absent = SystemPackage("k2-no-such-package", "k2-no-such-program", "never there")
    assert system_packages.missing([present, absent]) == [absent]


def test_ensure_is_a_no_op_when_everything_is_present() -> None:
    assert system_packages.ensure([SystemPackage("coreutils", "ls", "always there")]) == []


def test_a_program_kept_off_path_is_found_by_the_package_probe() -> None:
    off_path = SystemPackage("k2-off-path", "k2-no-such-program", "found elsewhere", present=lambda: True)
    assert system_packages.missing([off_path]) == []


def test_the_tests_get_a_postgresql_server_and_redis() -> None:
    names = {p.name for p in system_packages.TEST_PACKAGES}
    assert {"postgresql", "redis-server"} <= names
