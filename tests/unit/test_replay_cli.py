"""`iopcare replay`: a backtest of one or two rule packs over an event file."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from click.testing import CliRunner

from iopcare.cli import main
from iopcare.domain.backtest import run_backtest
from iopcare.rulepacks import DEFAULT_PACK, DEFAULT_PACK_PATH, load_pack
from iopcare.simulation import generate_cohort, write_ndjson

EVENTS = sorted(generate_cohort(12, seed=21, start=date(2026, 1, 5)), key=lambda e: (e.time, e.id))


def _files(tmp_path: Path) -> tuple[Path, Path]:
    events = tmp_path / "events.ndjson"
    with events.open("w") as out:
        write_ndjson(EVENTS[:100], out)
        out.write("{not json\n")  # a broken line in the middle is skipped and counted, not fatal
        write_ndjson(EVENTS[100:], out)
    stricter = tmp_path / "stricter.toml"
    text = DEFAULT_PACK_PATH.read_text()
    text = text.replace('version = "' + DEFAULT_PACK.version + '"', 'version = "fewer-craving"', 1)
    stricter.write_text(text.replace("rise_at_least = 3", "rise_at_least = 5", 1))
    return events, stricter


def test_replay_reports_alerts_by_rule_and_compares_two_packs(tmp_path: Path) -> None:
    events, stricter = _files(tmp_path)
    result = CliRunner().invoke(main, ["replay", "--events", str(events), "--compare", str(stricter)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{len(EVENTS):,} events, 12 patients")
    assert "skipped invalid lines: invalid_json 1" in lines

    expected = run_backtest(EVENTS, DEFAULT_PACK)
    other = run_backtest(EVENTS, load_pack(stricter))
    total = next(line for line in lines if line.startswith("all alerts")).split()
    assert total[2:] == [
        f"{len(expected.alerts):,}",
        f"{len(other.alerts):,}",
        f"{len(other.alerts) - len(expected.alerts):+,}",
    ]
    rising = next(line for line in lines if line.startswith("craving_rising")).split()
    before = expected.by_rule_and_severity()[("craving_rising", "medium")]
    after = other.by_rule_and_severity()[("craving_rising", "medium")]
    assert rising == ["craving_rising", "medium", f"{before:,}", f"{after:,}", f"{after - before:+,}"]
    assert after < before


def test_an_invalid_pack_is_refused_with_the_problem_named(tmp_path: Path) -> None:
    events, _ = _files(tmp_path)
    broken = tmp_path / "broken.toml"
    broken.write_text(DEFAULT_PACK_PATH.read_text().replace("at_least = 8", "at_least = 80", 1))
    result = CliRunner().invoke(main, ["replay", "--events", str(events), "--rules", str(broken)])
    assert result.exit_code == 2
    assert "craving_high" in result.output and "at_least" in result.output
