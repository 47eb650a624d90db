from modelforge.db import Job, database, init_database
from modelforge.settings import Settings


def test_sqlite_store_lives_under_the_home_folder_in_wal_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELFORGE_DB_PATH", raising=False)
    settings = Settings(home=tmp_path / "home")
    db = init_database(settings)
    assert settings.database_path == tmp_path / "home" / "modelforge.db"
    assert settings.database_path.exists()
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_database_path_and_url_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELFORGE_DB_PATH", str(tmp_path / "elsewhere.db"))
    assert Settings(home=tmp_path).database_path == tmp_path / "elsewhere.db"

    url_db = tmp_path / "by-url.db"
    monkeypatch.setenv("MODELFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{url_db}")
    init_database(Settings.from_env())
    Job.create(name="x", config="{}", output_dir=str(tmp_path))
    assert database.obj.database == str(url_db)
    assert url_db.exists() and Job.select().count() == 1
