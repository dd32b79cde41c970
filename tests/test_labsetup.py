"""The JupyterLab server setting that keeps the status bar "Busy" while a cell runs (the browser
suite checks the behaviour; here: the file, merged and idempotent)."""
import json

from ranklab.labsetup import SUBSHELL_MESSAGES, default_untracked, write_kernel_status_config


def test_subshell_messages_are_added_to_the_untracked_types_and_other_settings_kept(tmp_path):
    path = tmp_path / "etc" / "jupyter" / "jupyter_server_config.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"ServerApp": {"port": 9999}}))
    write_kernel_status_config(path)
    config = json.loads(path.read_text())
    untracked = config["MappingKernelManager"]["untracked_message_types"]
    assert config["ServerApp"] == {"port": 9999}
    assert untracked[: len(default_untracked())] == default_untracked()  # jupyter_server's own list is kept
    assert set(SUBSHELL_MESSAGES) <= set(untracked) and "create_subshell_request" in untracked
    write_kernel_status_config(path)
    assert json.loads(path.read_text()) == config  # twice changes nothing


def test_the_server_reads_it(tmp_path, monkeypatch):
    from jupyter_server.serverapp import ServerApp

    write_kernel_status_config(tmp_path / "jupyter_server_config.json")
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path))
    app = ServerApp()
    app.load_config_file()
    assert "create_subshell_request" in app.config.MappingKernelManager.untracked_message_types
