"""``cloud-bridge`` command line: help, version, config errors and the outbox subcommands."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_bridge.cli import SUBCOMMANDS, main
from cloud_bridge.outbox import open_sqlite
from pdm_common import __version__
from tests.bridge.samples import alert


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(
        f'[desks.main]\nkind = "webhook"\nbase_url = "http://127.0.0.1:9"\n[outbox]\npath = "{tmp_path / "o.db"}"\n',
        encoding="utf-8",
    )
    return path


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "run" in out and "outbox" in out
    assert len(SUBCOMMANDS) >= 2


def test_bad_config_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[outbox]\nbackend = "oracle"\n', encoding="utf-8")
    assert main(["--config", str(path), "outbox", "list"]) == 2
    err = capsys.readouterr().err
    assert "outbox.backend" in err and "Fix:" in err


def test_outbox_list_retry_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    box = open_sqlite(tmp_path / "o.db", max_events=100)
    box.enqueue(alert(1), desk="main", now=0.0)
    box.enqueue(alert(1, alert_id="other:x:low_flow"), desk="main", now=0.0)
    for ev in box.lease(owner="t", now=1.0, lease_s=5, limit=5):
        box.dead_letter(ev, owner="t", reason="http_400: refused", now=1.0)
    box.close()
    assert main(["--config", str(cfg), "outbox", "list", "--dead"]) == 0
    assert "http_400: refused" in capsys.readouterr().out
    assert main(["--config", str(cfg), "outbox", "retry", "1"]) == 0
    assert "requeued 1" in capsys.readouterr().out
    assert main(["--config", str(cfg), "outbox", "purge"]) == 0
    assert "purged 1" in capsys.readouterr().out
    assert main(["--config", str(cfg), "outbox", "list"]) == 0
    assert "queued=1" in capsys.readouterr().out


def test_outbox_lists_refused_messages_and_purges_but_never_retries_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    box = open_sqlite(tmp_path / "o.db", max_events=100)
    box.enqueue(alert(1), desk="main", now=0.0)
    box.refuse(topic="pdm/v1/bergen-1/hp-1/alert", reason="site_not_owned", detail="gateway 'gw-17' speaks for "
               "site 'oslo-north', not 'bergen-1'", payload=b"{}", now=10.0)
    box.refuse(topic="pdm/v1/oslo-north/hp-2/alert", reason="not_json", detail="bad", payload=b"x", now=11.0)
    box.close()
    assert main(["--config", str(cfg), "outbox", "list"]) == 0
    out = capsys.readouterr().out
    assert "# queued deliveries" in out and "# dead letters" in out and "# refused at intake" in out
    assert "1\tpdm/v1/bergen-1/hp-1/alert\t" in out and "site_not_owned" in out
    assert "# queued=1 " in out and "dead_letters=0 refused=2" in out
    assert main(["--config", str(cfg), "outbox", "list", "--refused"]) == 0
    only = capsys.readouterr().out
    assert "not_json" in only and "# queued deliveries" not in only and alert(1).alert_id not in only
    assert main(["--config", str(cfg), "outbox", "retry", "--refused", "1"]) == 64
    assert "never deliverable" in capsys.readouterr().err
    assert main(["--config", str(cfg), "outbox", "purge", "--refused", "1"]) == 0
    assert "purged 1 refused" in capsys.readouterr().out
    assert main(["--config", str(cfg), "outbox", "purge", "--refused"]) == 0
    assert "purged 1 refused" in capsys.readouterr().out
    assert main(["--config", str(cfg), "outbox", "list", "--queued"]) == 0
    assert "refused=0" in capsys.readouterr().out
