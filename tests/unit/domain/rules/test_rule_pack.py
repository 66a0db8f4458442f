"""The rule pack: the packaged default implements the default clinical table of docs/rules.md; a
clinic's pack is validated with errors that say where the problem is."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from iopcare.domain.engagement import DEFAULT_TUNING
from iopcare.domain.rules import RULE_IDS, RulePackError
from iopcare.rulepacks import DEFAULT_PACK, DEFAULT_PACK_PATH, load_pack, parse_pack


def _default() -> dict[str, Any]:
    with DEFAULT_PACK_PATH.open("rb") as stream:
        return tomllib.load(stream)


def _problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(RulePackError) as caught:
        parse_pack(document, "clinic.toml")
    assert str(caught.value).startswith("rule pack clinic.toml is invalid:")
    return caught.value.problems


def test_the_default_pack_has_every_rule_of_the_clinical_table_with_its_numbers() -> None:
    rules = DEFAULT_PACK.rules
    assert set(RULE_IDS) == {
        "safety",
        "reported_use",
        "positive_screen",
        "craving_high",
        "craving_rising",
        "mood_low",
        "missed_in_a_row",
        "missed_often",
        "early_disengagement",
        "weekly_plan_shortfall",
        "silence",
        "sober_living_incident",
        "family_no_show",
        "family_cancellations",
        "family_not_booked",
        "fellowship_shortfall",
        "step_up",
        "step_down",
    }
    assert (rules.safety.severity, rules.safety.phq9_item9_at_least) == ("critical", 1)
    assert (rules.craving_high.at_least, rules.craving_high.severity) == (8, "medium")
    assert (rules.craving_rising.rise_at_least, rules.craving_rising.checkins) == (3, 3)
    assert (rules.missed_in_a_row.misses, rules.missed_often.misses, rules.missed_often.days) == (2, 3, 14)
    assert rules.missed_often.severity == "high"
    assert (rules.early_disengagement.first_sessions, rules.early_disengagement.misses) == (5, 1)
    assert [(s.hours, s.severity) for s in rules.silence.after] == [(48, "medium"), (72, "high")]
    assert rules.sober_living_incident.severity_by_kind == {
        "positive_test": "high",
        "curfew_violation": "low",
        "missed_house_meeting": "low",
        "left": "high",
        "evicted": "high",
    }
    assert (rules.family_cancellations.cancellations, rules.family_cancellations.days) == (2, 30)
    assert (rules.family_not_booked.by_day, rules.family_not_booked.severity) == (21, "info")
    assert (rules.step_up.use_signals, rules.step_up.days, rules.step_up.low_attendance_share) == (2, 14, 0.5)
    assert (rules.step_down.weeks, rules.step_down.mean_craving_at_most) == (4, 3.0)


def test_response_targets_are_what_the_lifecycle_escalates_by() -> None:
    assert DEFAULT_PACK.response_targets_by_severity() == {
        "critical": timedelta(minutes=15),
        "high": timedelta(hours=4),
        "medium": timedelta(hours=24),
        "low": None,  # the next business day
    }
    assert DEFAULT_PACK.response_target("info") == "never"
    assert DEFAULT_PACK.response_targets.business_day_starts_at_hour == 9


def test_the_level_catalogue_is_configuration_asam_third_edition_by_default() -> None:
    levels = DEFAULT_PACK.levels
    assert levels.program == "2.1"
    assert levels.step_up_to == ["2.5", "3.1", "3.3", "3.5", "3.7"]
    assert levels.step_down_to == "1"
    assert levels.describe(levels.step_up_to) == "2.5 (partial hospitalization) or 3.1/3.3/3.5/3.7"
    assert levels.at_step_up_level("2.5") and levels.at_step_up_level("4")
    assert not levels.at_step_up_level("2.1") and not levels.at_step_up_level("2.7")


FOURTH_EDITION = """
[levels]
edition = "ASAM Criteria, 4th edition"
program = "2.1"
step_up_to = ["2.5", "2.7", "3.1"]
step_down_to = "1.7"
catalogue = [
  { code = "1.0", name = "long-term remission monitoring" },
  { code = "1.5", name = "outpatient therapy" },
  { code = "1.7", name = "medically managed outpatient" },
  { code = "2.1", name = "intensive outpatient" },
  { code = "2.5", name = "high-intensity outpatient" },
  { code = "2.7", name = "medically managed intensive outpatient" },
  { code = "3.1", name = "clinically managed low-intensity residential" },
  { code = "3.5", name = "clinically managed high-intensity residential" },
  { code = "3.7", name = "medically managed residential" },
  { code = "4", name = "medically managed inpatient" },
]

"""


def test_a_clinic_pack_on_the_fourth_edition_loads_from_a_file(tmp_path: Path) -> None:
    text = DEFAULT_PACK_PATH.read_text()
    levels_start, rules_start = text.index("[levels]"), text.index("# --- rules")
    text = text[:levels_start] + FOURTH_EDITION.lstrip() + text[rules_start:]
    text = re.sub(r'version = "default-[^"]+"', 'version = "clinic-7.2026.2"', text, count=1)
    path = tmp_path / "clinic.toml"
    path.write_text(text)
    pack = load_pack(path)
    assert pack.version == "clinic-7.2026.2"
    assert pack.levels.edition == "ASAM Criteria, 4th edition"
    assert pack.levels.describe(pack.levels.step_up_to) == "2.5 (high-intensity outpatient) or 2.7/3.1"
    assert pack.levels.describe([pack.levels.step_down_to]) == "1.7 (medically managed outpatient)"


def test_an_unknown_rule_is_named_with_the_known_ones() -> None:
    document = _default()
    document["rules"]["craving_hgh"] = document["rules"].pop("craving_high")
    problems = _problems(document)
    assert "rules.craving_high: missing field" in problems
    (unknown,) = [p for p in problems if p.startswith("rules.craving_hgh:")]
    assert unknown.startswith(
        "rules.craving_hgh: unknown rule 'craving_hgh'; known rules: safety, reported_use"
    )


def test_a_missing_field_is_named() -> None:
    document = _default()
    del document["rules"]["missed_often"]["days"]
    assert _problems(document) == ["rules.missed_often.days: missing field"]


def test_a_misspelt_field_is_an_unknown_field_not_a_silent_default() -> None:
    document = _default()
    document["rules"]["craving_high"]["at_leest"] = 7
    assert "rules.craving_high.at_leest: unknown field" in _problems(document)


def test_a_bad_threshold_is_named_with_its_value() -> None:
    document = _default()
    document["rules"]["craving_high"]["at_least"] = 11
    document["rules"]["missed_in_a_row"]["misses"] = 0
    assert _problems(document) == [
        "rules.craving_high.at_least: bad threshold 11: Input should be less than or equal to 10",
        "rules.missed_in_a_row.misses: bad threshold 0: Input should be greater than or equal to 1",
    ]


def test_a_window_longer_than_the_state_remembers_is_refused() -> None:
    document = _default()
    document["rules"]["missed_often"]["days"] = 60
    assert _problems(document) == [
        "rules.missed_often.days: bad threshold 60: 60 days is longer than the 42 days of history the "
        "patient state keeps (history.retention_days)"
    ]
    document["rules"]["missed_often"]["days"] = 14
    document["rules"]["silence"]["after"][1]["hours"] = 43 * 24
    assert _problems(document) == [
        "rules.silence.after[1].hours: bad threshold 1032: 1032 hours is longer than the 42 days of "
        "history the patient state keeps (history.retention_days)"
    ]


def test_the_history_kept_is_the_packs_and_longer_windows_fit_a_longer_history() -> None:
    document = _default()
    document["history"]["retention_days"] = 90
    document["rules"]["missed_often"]["days"] = 60
    pack = parse_pack(document)
    assert pack.rules.missed_often.days == 60
    assert pack.tuning.retention == timedelta(days=90) and pack.tuning.lateness == timedelta(days=7)
    assert DEFAULT_PACK.tuning == DEFAULT_TUNING  # the default pack writes out the code's defaults
    del document["history"]
    assert _problems(document) == ["history: missing field"]


def test_an_unknown_severity_is_named_with_the_known_ones() -> None:
    document = _default()
    document["rules"]["reported_use"]["severity"] = "urgent"
    document["rules"]["sober_living_incident"]["severity_by_kind"]["left"] = "severe"
    expected = "expected one of critical, high, medium, low, info"
    assert _problems(document) == [
        f"rules.reported_use.severity: unknown severity 'urgent'; {expected}",
        f"rules.sober_living_incident.severity_by_kind.left: unknown severity 'severe'; {expected}",
    ]


def test_an_unknown_house_report_kind_is_named() -> None:
    document = _default()
    document["rules"]["sober_living_incident"]["severity_by_kind"]["relapse"] = "high"
    (problem,) = _problems(document)
    assert problem.startswith(
        "rules.sober_living_incident.severity_by_kind.relapse: unknown house report kind"
    )


def test_an_unknown_level_is_named_with_the_catalogue() -> None:
    document = _default()
    document["levels"]["step_up_to"] = ["2.5", "2.7"]
    (problem,) = _problems(document)
    assert problem == (
        "levels: step_up_to: unknown level '2.7'; the catalogue (ASAM Criteria, 3rd edition) has "
        "0.5, 1, 2.1, 2.5, 3.1, 3.3, 3.5, 3.7, 4"
    )


def test_a_step_up_must_be_more_intensive_and_a_step_down_less() -> None:
    document = _default()
    document["levels"]["step_down_to"] = "2.5"
    assert _problems(document) == [
        "levels: step_down_to: level '2.5' is not less intensive than the program level '2.1'"
    ]


def test_step_up_may_supersede_only_known_rules_and_never_safety() -> None:
    document = _default()
    document["rules"]["step_up"]["supersedes"] = ["reported_use", "craving_hi"]
    assert _problems(document)[0].startswith("rules: step_up.supersedes: unknown rule 'craving_hi'")
    document["rules"]["step_up"]["supersedes"] = ["safety"]
    assert _problems(document) == ["rules: step_up.supersedes: a safety alert is never superseded"]


def test_bad_calendar_and_response_targets_are_named() -> None:
    document = _default()
    document["calendar"]["time_zone"] = "Mars/Olympus"
    document["response_targets"]["high"] = "soon"
    assert _problems(document) == [
        "calendar.time_zone: unknown time zone 'Mars/Olympus'",
        "response_targets.high: bad response target 'soon': write e.g. '15m', '4h', '2d', "
        "'next business day' or 'never'",
    ]


def test_a_file_that_is_not_toml_or_not_there_is_a_pack_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[rules.safety\nversion = 1\n")
    with pytest.raises(RulePackError, match=r"broken.toml is invalid:\n  not valid TOML: .*line 1"):
        load_pack(broken)
    with pytest.raises(RulePackError, match="cannot read the file"):
        load_pack(tmp_path / "missing.toml")


def test_a_clinic_can_switch_a_rule_off() -> None:
    document = _default()
    document["rules"]["craving_rising"]["enabled"] = False
    pack = parse_pack(document)
    assert "craving_rising" not in pack.enabled_rules
    assert "craving_high" in pack.enabled_rules


def test_every_rule_declares_its_tier_and_safety_use_and_screens_always_page() -> None:
    tiers = {rule: DEFAULT_PACK.tier(rule) for rule in RULE_IDS}
    assert {rule for rule, tier in tiers.items() if tier == "page"} == {
        "safety",
        "reported_use",
        "positive_screen",
        "missed_often",
        "step_up",
    }
    assert {rule for rule, tier in tiers.items() if tier == "digest"} == {
        "early_disengagement",
        "family_no_show",
        "family_cancellations",
        "family_not_booked",
        "fellowship_shortfall",
        "step_down",
    }
    assert DEFAULT_PACK.horizon("craving_rising") == 14 and DEFAULT_PACK.horizon("step_down") == 28
    assert DEFAULT_PACK.tier("a_clinic_local_rule") == "inbox"
    for rule in ("safety", "reported_use", "positive_screen"):
        document = _default()
        document["rules"][rule]["tier"] = "digest"
        assert _problems(document) == [
            f"rules: {rule}.tier: a {rule} alert always pages (tier 'page'), not 'digest'"
        ]
    document = _default()
    del document["rules"]["silence"]["tier"]
    document["rules"]["craving_rising"]["tier"] = "pager"
    assert _problems(document) == [
        "rules.craving_rising.tier: Input should be 'page', 'inbox' or 'digest'",
        "rules.silence.tier: missing field",
    ]


def test_a_minor_house_report_goes_to_the_digest_and_a_kind_that_does_not_alert_has_no_tier() -> None:
    rule = DEFAULT_PACK.rules.sober_living_incident
    assert rule.tier == "inbox"
    assert rule.tier_of("curfew_violation") == "digest" and rule.tier_of("missed_house_meeting") == "digest"
    assert rule.tier_of("positive_test") == "inbox" and rule.tier_of("evicted") == "inbox"
    document = _default()
    document["rules"]["sober_living_incident"]["tier_by_kind"]["conflict"] = "digest"
    document["rules"]["sober_living_incident"]["tier_by_kind"]["left"] = "pager"
    assert _problems(document) == [
        "rules.sober_living_incident.tier_by_kind.left: Input should be 'page', 'inbox' or 'digest'",
    ]
    document["rules"]["sober_living_incident"]["tier_by_kind"]["left"] = "page"
    assert _problems(document) == [
        "rules.sober_living_incident: tier_by_kind.conflict: a conflict report does not alert "
        "(not in severity_by_kind)",
    ]
