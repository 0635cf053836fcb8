from pathlib import Path

from cicloml.settings import Settings


def test_environment_prefix_and_absolute_state_dir(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CICLO_STATE_DIR", "relative/state")
    monkeypatch.setenv("CICLO_ONLINE_STORE", "redis")
    settings = Settings()
    assert settings.state_dir == tmp_path / "relative" / "state"
    assert settings.online_store == "redis"
    assert settings.data_dir == tmp_path / "relative" / "state" / "data"


def test_state_dir_does_not_move_when_the_process_changes_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CICLO_STATE_DIR", raising=False)
    settings = Settings()
    monkeypatch.chdir(Path("/"))
    assert settings.feast_dir == tmp_path / ".ciclo" / "feast"
