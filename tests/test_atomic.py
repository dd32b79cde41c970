"""Atomic writes leave what a plain write would: the content, and the usual permissions."""
import os
import stat

from ranklab.atomic import write_folder, write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_and_folders_get_the_permissions_of_a_plain_write(tmp_path):
    mask = os.umask(0o022)
    try:
        file = write_text(tmp_path / "a.json", "{}")
        folder = write_folder(tmp_path / "run", lambda tmp: (tmp / "x.txt").write_text("x"))
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        assert _mode(file) == _mode(plain) == 0o644  # not mkstemp's 0600: figures stay readable to others
        assert _mode(folder) == 0o755 and (folder / "x.txt").read_text() == "x"
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    finally:
        os.umask(mask)
