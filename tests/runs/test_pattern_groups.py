"""A goal's patterns read per-goal pattern groups (`PatternGroup`) kept by every write, plus the runs not
folded in yet. Whatever mix of writes arrives (decisions, outcomes, replaced outcomes, run ends, late writes
to ended runs, idle runs folded and woken up, imports, batches, deletes, purges), the answer equals the
SDK's own aggregation of the goal's runs in index order (`heuristics.aggregate_runs`, what
`BuilderQuery(path)` computes), order included."""

import random
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.core.management import call_command
from django.utils import timezone

from framework.builder import heuristics
from runs import export, ingest, queries, retention, rollups, tasks
from runs.models import PatternGroup, Run
from runs.schemas import RunEndIn

pytestmark = pytest.mark.django_db

GOALS = ["alpha", "beta", "gamma"]
ERRORS = [None, "", "timeout", "rate limited", "x" * 3000]  # longer than a btree entry may be


def ordered(aggregates: dict) -> dict:
    """The aggregates with every dict as a list of items, so the comparison checks first-seen order too."""
    return {
        **aggregates,
        "type_counts": list(aggregates["type_counts"].items()),
        "choice_counts": [(intent, list(counts)) for intent, counts in aggregates["choice_counts"].items()],
    }


def reference(goal_id: str) -> dict:
    runs = [export.run_to_framework(run) for run in Run.objects.for_goal(goal_id).in_index_order()]
    return ordered(heuristics.aggregate_runs(runs))


def assert_answers_match():
    assert not PatternGroup.objects.filter(stale=True).exists()  # repaired inside every write
    for goal_id in GOALS:
        assert ordered(queries.goal_aggregates(goal_id)) == reference(goal_id), goal_id


def stored_groups() -> set[tuple]:
    return set(PatternGroup.objects.values_list("goal_id", "kind", "key", "detail", "total", "failed",
                                                "first_end_seq", "first_run", "first_seq"))


def decision(rng: random.Random, n: int, *, outcome: bool) -> dict:
    options = [{"id": f"o{i}", "description": f"option {i}"} for i in range(rng.randrange(1, 4))]
    body = {"id": f"dec_{n}", "node_id": rng.choice("abcde"), "intent": rng.choice(["fetch", "parse", "i" * 60]),
            "decision_type": rng.choice(["tool_selection", "custom", "retry_strategy"]), "options": options,
            "chosen_option_id": rng.choice(["o0", "o1", "missing"])}
    if outcome:
        body["outcome"] = outcome_body(rng)
    return body


def outcome_body(rng: random.Random) -> dict:
    return {"success": rng.random() < 0.5, "error": rng.choice(ERRORS), "tokens_used": rng.randrange(100)}


class History:
    """Random writes through every path that stores runs and decisions."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.runs: dict[str, set[int]] = {}  # run id -> decision numbers used
        self.count = 0

    def new_decision(self, run_id: str, *, outcome: bool) -> dict:
        used = self.runs[run_id]
        n = self.rng.choice([k for k in range(60) if k not in used])  # sometimes before stored ones
        used.add(n)
        return decision(self.rng, n, outcome=outcome)

    def step(self) -> None:
        rng, live = self.rng, [run_id for run_id in self.runs if Run.objects.filter(run_id=run_id).exists()]
        action = rng.choice(["start", "start", "decision", "decision", "decision", "batch", "outcome", "outcome",
                             "end", "end", "import", "delete", "idle"] if live else ["start", "import"])
        if action == "start":
            self.count += 1
            run_id = f"r{self.count}"
            self.runs[run_id] = set()
            ingest.start_run({"id": run_id, "goal_id": rng.choice(GOALS)})
        elif action == "import":
            self.count += 1
            run_id = f"imp{self.count}"
            self.runs[run_id] = set()
            decisions = [decision(rng, n, outcome=rng.random() < 0.8) for n in range(rng.randrange(5))]
            self.runs[run_id].update(range(len(decisions)))
            ingest.import_run({"id": run_id, "goal_id": rng.choice(GOALS), "decisions": decisions,
                               "status": rng.choice(["running", "completed", "failed"])})
        elif action == "decision":  # to a running or an ended run alike
            run_id = rng.choice(live)
            ingest.add_decision(run_id, self.new_decision(run_id, outcome=rng.random() < 0.5))
        elif action == "batch":  # consecutive new decisions and outcomes take the set-based path
            run_id = rng.choice(live)
            events = []
            for _ in range(rng.randrange(2, 5)):
                body = self.new_decision(run_id, outcome=False)
                events.append({"type": "decision", "run_id": run_id, "decision_id": body["id"], "body": body})
                if rng.random() < 0.6:
                    events.append({"type": "outcome", "run_id": run_id, "decision_id": body["id"],
                                   "body": outcome_body(rng)})
            assert {status for status, _ in ingest.apply_events(events)} == {201}
        elif action == "outcome":  # a first outcome or a replaced one, on a running or an ended run
            run_id = rng.choice(live)
            if self.runs[run_id]:
                n = rng.choice(sorted(self.runs[run_id]))
                ingest.record_outcome(run_id, f"dec_{n}", outcome_body(rng))
        elif action == "end":  # an imported running run ends too: its place in index order moves
            run_id = rng.choice(live)
            if Run.objects.get(run_id=run_id).completed_at is None:
                body = {"status": rng.choice(["completed", "failed", "stuck"])}
                # as the API ends a run reported alone: the one statement first, the full path for the rest
                if rng.random() < 0.5 or ingest.end_pending_run(run_id, RunEndIn.model_validate(body)) is None:
                    ingest.end_run(run_id, body)
        elif action == "idle":  # runs left running join the groups; later writes keep them there
            rollups.fold_idle_runs(timedelta(0))
        else:  # as the admin or a shell would, one or several at once
            doomed = rng.sample(live, min(len(live), rng.randrange(1, 3)))
            Run.objects.filter(run_id__in=doomed).delete()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_patterns_equal_the_sdk_aggregation_after_a_random_mix_of_writes(seed):
    history, seen = History(seed), set()
    for step in range(150):
        history.step()
        if step % 10 == 9:
            assert_answers_match()
            seen.update(Run.objects.filter(end_seq=None).values_list("pattern_pending", flat=True))
    assert seen == {True, False}  # running runs were grouped live at some checks, folded at others
    assert Run.objects.filter(pattern_pending=False).exclude(end_seq=None).exists()
    assert PatternGroup.objects.filter(kind="error", key="x" * 3000).exists() or seed != 1
    assert_answers_match()


def test_rebuilding_from_the_rows_gives_the_groups_every_write_kept(capsys):
    history = History(5)
    for _ in range(120):
        history.step()
    kept = stored_groups()
    call_command("rebuild_rollups")
    assert "pattern groups" in capsys.readouterr().out
    assert stored_groups() == kept
    assert_answers_match()


def test_a_replaced_outcome_on_an_ended_run_moves_its_error_to_a_later_first_sighting():
    for run_id, error in [("first", "boom"), ("second", "other"), ("third", "boom")]:
        ingest.start_run({"id": run_id, "goal_id": "alpha"})
        ingest.add_decision(run_id, {"id": "dec_0", "node_id": "n", "intent": "i",
                                     "outcome": {"success": False, "error": error}})
        ingest.end_run(run_id, {"status": "failed"})
    assert queries.goal_aggregates("alpha")["error_counts"] == [("boom", 2), ("other", 1)]
    ingest.record_outcome("first", "dec_0", {"success": True})  # "boom" is now first seen in the third run
    assert queries.goal_aggregates("alpha")["error_counts"] == [("other", 1), ("boom", 1)]
    assert_answers_match()


def test_purged_runs_leave_the_groups_and_the_first_sightings_of_the_rest(settings):
    history = History(9)
    for _ in range(300):
        history.step()
    now = datetime.now(dt_timezone.utc)
    old = list(Run.objects.exclude(completed_at=None).in_index_order().values_list("pk", flat=True))[::2]
    Run.objects.filter(pk__in=old).update(completed_at=now - timedelta(days=30))  # every other one in index order
    settings.RETENTION_DAYS = 15
    report = retention.purge(batch_size=4, now=now)
    assert report.runs == len(old) >= 3 and Run.objects.filter(pattern_pending=False).exists()
    assert_answers_match()


def test_groups_that_disagree_with_the_rows_are_refolded_by_the_next_write():
    for run_id in ["a", "b"]:
        ingest.start_run({"id": run_id, "goal_id": "alpha"})
        ingest.add_decision(run_id, {"id": "dec_0", "node_id": "n", "intent": "i",
                                     "outcome": {"success": False, "error": "boom"}})
        ingest.end_run(run_id, {"status": "failed"})
    PatternGroup.objects.filter(kind="error").update(total=5)  # damaged by hand: counts no run holds
    ingest.record_outcome("a", "dec_0", {"success": True})
    ingest.record_outcome("b", "dec_0", {"success": True})
    assert queries.goal_aggregates("alpha")["error_counts"] == []
    assert_answers_match()


def test_runs_left_running_join_the_groups_and_stay_exact_when_they_wake_up():
    for run_id in ["left", "active"]:
        ingest.start_run({"id": run_id, "goal_id": "alpha"})
        ingest.add_decision(run_id, {"id": "dec_0", "node_id": "n", "intent": "i",
                                     "outcome": {"success": False, "error": f"{run_id} failed"}})
    Run.objects.filter(run_id="left").update(updated_at=timezone.now() - timedelta(hours=1))
    assert tasks.fold_idle_runs() == 1  # PATTERN_FOLD_IDLE_MINUTES: the active run stays live
    assert list(Run.objects.order_by("run_id").values_list("run_id", "pattern_pending")) == [
        ("active", True), ("left", False)]
    assert_answers_match()
    ingest.add_decision("left", {"id": "dec_1", "node_id": "m", "intent": "i"})
    ingest.record_outcome("left", "dec_0", {"success": True})
    ingest.end_run("left", {"status": "completed"})  # it moves before the active run in index order
    assert queries.goal_aggregates("alpha")["node_counts"] == [("n", 1, 2), ("m", 1, 1)]
    assert_answers_match()
