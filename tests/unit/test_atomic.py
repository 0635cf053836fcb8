import pytest

from cicloml.atomic import atomic_path


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["table.parquet"]


def test_a_finished_write_replaces_the_file(tmp_path):
    target = tmp_path / "nested" / "table.parquet"
    with atomic_path(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new"
    assert [path.name for path in target.parent.iterdir()] == ["table.parquet"]
