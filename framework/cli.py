"""`python -m framework` / `framework`: look at runs in a storage folder or on a dashboard.

    framework runs list [--goal G] [--status S] [--limit N]
    framework runs show RUN_ID
    framework stats | patterns GOAL | analyze RUN_ID | suggest GOAL
    framework push PATH --to URL [--api-key K]
    framework flush [--to URL]

Every command takes --storage (a folder or a dashboard URL; default $FRAMEWORK_STORAGE, else ".")
and --json. Errors print one line on stderr and exit with status 2.
"""

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from framework.builder.query import BuilderQuery
from framework.schemas.run import Run, RunStatus
from framework.transport.http import Client, DashboardError, resolve_api_key
from framework.transport.remote import RemoteQuery, check

USAGE_ERROR = 2


class CliError(Exception):
    """A problem the user can fix; printed as one line."""


def _is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


# === READING RUNS ===


class Local:
    """A storage folder, read strictly: a malformed run file is an error naming the file."""

    def __init__(self, path: str):
        self.path = Path(path)
        if not self.path.exists():
            raise CliError(f"storage folder {path} does not exist")
        if not (self.path / "runs").is_dir():
            raise CliError(f"{path} is not a framework storage folder (it has no runs/ directory)")
        for name in ("indexes", "summaries"):  # FileStorage makes its sub-folders; a file there stops it
            if (self.path / name).exists() and not (self.path / name).is_dir():
                raise CliError(f"{path} is not a usable storage folder: {self.path / name} is a file, not a directory")
        self.query = BuilderQuery(self.path)

    def load(self, file: Path) -> Run:
        try:
            return Run.model_validate_json(file.read_bytes())
        except (ValidationError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CliError(f"{file} is not a valid run file: {first}") from None
        except OSError as exc:
            raise CliError(f"cannot read {file}: {exc.strerror}") from None

    def runs(self) -> list[Run]:
        return [self.load(file) for file in sorted((self.path / "runs").glob("*.json"))]

    def run(self, run_id: str) -> Run | None:
        file = self.path / "runs" / f"{run_id}.json"
        if "/" in run_id or "\\" in run_id or not file.is_file():
            return None
        return self.load(file)

    def list_runs(self, goal: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        runs = [r for r in self.runs() if (goal is None or r.goal_id == goal) and (status is None or r.status == status)]
        runs.sort(key=lambda r: r.started_at, reverse=True)
        return [_row(run) for run in runs[:limit]]

    def stats(self) -> dict[str, Any]:
        return _stats(self.runs())


class Remote:
    def __init__(self, url: str, api_key: str | None):
        self.client = Client(url, api_key=api_key, timeout=30.0)
        self.query = RemoteQuery(url, api_key=api_key)

    def run(self, run_id: str) -> Run | None:
        return self.query.get_full_run(run_id)

    def list_runs(self, goal: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        rows, cursor = [], None
        while len(rows) < limit:
            body = check(self.client.get("/runs", goal_id=goal, status=status, limit=min(limit - len(rows), 500),
                                         cursor=cursor), self.client)
            rows.extend(body["items"])
            cursor = body.get("next_cursor")
            if not cursor or not body["items"]:
                break
        return rows[:limit]

    def stats(self) -> dict[str, Any]:
        return check(self.client.get("/stats"), self.client)


def _row(run: Run) -> dict[str, Any]:
    m = run.metrics
    return {
        "run_id": run.id, "goal_id": run.goal_id, "goal_description": run.goal_description,
        "status": str(run.status), "started_at": run.started_at.isoformat(),
        "completed_at": run.completed_at.isoformat() if run.completed_at else None,
        "duration_ms": run.duration_ms, "decision_count": m.total_decisions,
        "success_count": m.successful_decisions, "failure_count": m.failed_decisions,
        "success_rate": m.success_rate, "problem_count": len(run.problems),
        "total_tokens": m.total_tokens, "total_latency_ms": m.total_latency_ms,
    }


def _stats(runs: list[Run]) -> dict[str, Any]:
    """The same figures, keys and node ranking as the dashboard's GET /api/v1/stats."""
    total = len(runs)
    counts = {s: sum(1 for r in runs if r.status == s) for s in ("completed", "failed", "running")}
    ended = [r for r in runs if r.completed_at is not None]
    tokens = sum(r.metrics.total_tokens for r in runs)
    nodes: dict[str, list[int]] = {}
    for run in runs:
        for decision in run.decisions:
            failed_total = nodes.setdefault(decision.node_id, [0, 0])
            failed_total[0] += not decision.was_successful
            failed_total[1] += 1
    worst = sorted(((-f, n, f, t) for n, (f, t) in nodes.items() if f))[:5]
    return {
        "total_runs": total,
        "total_goals": len({r.goal_id for r in runs}),
        **counts,
        "total_decisions": sum(r.metrics.total_decisions for r in runs),
        "total_tokens": tokens,
        "success_rate": counts["completed"] / total if total else 0.0,
        "failure_rate": counts["failed"] / total if total else 0.0,
        "avg_duration_ms": int(sum(r.duration_ms for r in ended) / len(ended)) if ended else 0,
        "avg_tokens": tokens / total if total else 0.0,
        "worst_nodes": [{"node_id": n, "failed": f, "total": t, "failure_rate": f / t} for _, n, f, t in worst],
    }


# === TEXT OUTPUT ===


def _print_rows(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("No runs found.")
        return
    print(f"{'RUN ID':<36}  {'GOAL':<20}  {'STATUS':<9}  {'DECISIONS':>9}  {'SUCCESS':>7}  {'DURATION':>9}  STARTED")
    for row in rows:
        print(f"{row['run_id']:<36}  {row['goal_id'][:20]:<20}  {row['status']:<9}  {row['decision_count']:>9}  "
              f"{row['success_rate']:>7.0%}  {row['duration_ms'] / 1000:>8.1f}s  {str(row['started_at'])[:19]}")
    print(f"{len(rows)} run{'s' if len(rows) != 1 else ''}")


def _print_run(run: Run) -> None:
    m = run.metrics
    print(f"Run {run.id}")
    print(f"  Goal:       {run.goal_id}" + (f" — {run.goal_description}" if run.goal_description else ""))
    print(f"  Status:     {run.status}")
    print(f"  Started:    {run.started_at.isoformat(sep=' ', timespec='seconds')}")
    if run.completed_at:
        print(f"  Completed:  {run.completed_at.isoformat(sep=' ', timespec='seconds')}  ({run.duration_ms} ms)")
    print("Metrics")
    print(f"  Decisions:  {m.total_decisions} ({m.successful_decisions} succeeded, {m.failed_decisions} failed, "
          f"{m.success_rate:.1%} success)")
    print(f"  Tokens:     {m.total_tokens}")
    print(f"  Latency:    {m.total_latency_ms} ms")
    print(f"  Nodes:      {', '.join(m.nodes_executed) or '-'}")
    print(f"Decisions ({len(run.decisions)})")
    for decision in run.decisions:
        chosen = decision.chosen_option
        print(f"  {'✓' if decision.was_successful else '✗'} {decision.id} [{decision.node_id}] {decision.intent} → "
              f"{chosen.description if chosen else decision.chosen_option_id or 'unknown action'}")
        if decision.reasoning:
            print(f"      reasoning: {decision.reasoning}")
        outcome = decision.outcome
        if outcome is None:
            print("      outcome: (none recorded)")
        else:
            parts = [outcome.summary or ("succeeded" if outcome.success else "failed")]
            if outcome.error:
                parts.append(f"error: {outcome.error}")
            parts.append(f"{outcome.tokens_used} tokens, {outcome.latency_ms} ms")
            print(f"      outcome: {' — '.join(parts)}")
    if run.problems:
        print(f"Problems ({len(run.problems)})")
        for problem in run.problems:
            where = f" (at {problem.decision_id})" if problem.decision_id else ""
            print(f"  [{problem.severity}] {problem.description}{where}")
            if problem.suggested_fix:
                print(f"      fix: {problem.suggested_fix}")
    print("Narrative")
    print(f"  {run.narrative or '-'}")
    print("Output")
    print("  " + (json.dumps(run.output_data, indent=2, ensure_ascii=False).replace("\n", "\n  ") if run.output_data else "-"))


def _print_stats(stats: dict[str, Any]) -> None:
    print(f"Runs:              {stats['total_runs']}")
    print(f"Goals:             {stats['total_goals']}")
    print(f"Completed:         {stats['completed']} ({stats['success_rate']:.1%})")
    print(f"Failed:            {stats['failed']} ({stats['failure_rate']:.1%})")
    if stats.get("running"):
        print(f"Running:           {stats['running']}")
    print(f"Decisions:         {stats['total_decisions']}")
    print(f"Average duration:  {stats['avg_duration_ms']} ms")
    print(f"Average tokens:    {stats['avg_tokens']:.1f}")
    if stats["worst_nodes"]:
        print("Worst nodes (failure rate):")
        for node in stats["worst_nodes"]:
            print(f"  {node['node_id']}: {node['failure_rate']:.1%} ({node['failed']} of {node['total']} decisions)")


def _emit(args, data: Any, text) -> None:
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        text()


# === COMMANDS ===


def _source(args) -> Local | Remote:
    storage = args.storage or os.environ.get("FRAMEWORK_STORAGE") or "."
    return Remote(storage, args.api_key) if _is_url(storage) else Local(storage)


def cmd_runs_list(args) -> int:
    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    rows = _source(args).list_runs(args.goal, args.status, args.limit)
    _emit(args, rows, lambda: _print_rows(rows))
    return 0


def cmd_runs_show(args) -> int:
    run = _source(args).run(args.run_id)
    if run is None:
        raise CliError(f"run {args.run_id} not found")
    _emit(args, run.model_dump(mode="json"), lambda: _print_run(run))
    return 0


def cmd_stats(args) -> int:
    stats = _source(args).stats()
    _emit(args, stats, lambda: _print_stats(stats))
    return 0


def cmd_patterns(args) -> int:
    patterns = _source(args).query.find_patterns(args.goal)
    if patterns is None:
        raise CliError(f"no runs found for goal {args.goal}")
    _emit(args, patterns.to_dict(), lambda: print(patterns))
    return 0


def cmd_analyze(args) -> int:
    source = _source(args)
    run = source.run(args.run_id)
    if run is None:
        raise CliError(f"run {args.run_id} not found")
    analysis = source.query.analyze_failure(args.run_id)
    if analysis is None:
        _emit(args, {"run_id": run.id, "status": str(run.status), "analysis": None},
              lambda: print(f"Run {run.id} did not fail (status: {run.status}); nothing to analyze."))
        return 0
    _emit(args, analysis.to_dict(), lambda: print(analysis))
    return 0


def cmd_suggest(args) -> int:
    suggestions = _source(args).query.suggest_improvements(args.goal)

    def text() -> None:
        if not suggestions:
            print(f"No suggestions for goal {args.goal}.")
        for item in suggestions:
            print(f"[{item['priority']}] {item['type']} → {item['target']}")
            print(f"    {item['reason']}")
            print(f"    {item['recommendation']}")

    _emit(args, suggestions, text)
    return 0


def cmd_push(args) -> int:
    from framework.transport.sync import push_runs

    if not _is_url(args.to):
        raise CliError(f"--to must be a dashboard URL (http://host:port), got {args.to!r}")
    runs = Local(args.path).runs()
    runs.sort(key=lambda r: (r.completed_at or r.started_at, r.id))  # the order they were saved in
    tally = push_runs(runs, args.to, api_key=args.api_key)
    _emit(args, tally.as_dict(), lambda: print(
        f"Pushed {tally.runs} runs ({tally.events} events) to {args.to}: {tally.created} created, "
        f"{tally.unchanged} unchanged, {tally.rejected} rejected."))
    return 0


def cmd_flush(args) -> int:
    from framework.transport.sync import flush_spool, spools

    results = []
    for url, directory in spools(args.to):
        tally = flush_spool(url, api_key=args.api_key, directory=directory)
        results.append({"url": url, "spool": str(directory), **tally.as_dict()})

    def text() -> None:
        if not results or not any(r["events"] for r in results):
            print("Nothing to flush.")
        for r in results:
            if r["events"]:
                print(f"Replayed {r['events']} events to {r['url']}: {r['created']} created, "
                      f"{r['unchanged']} unchanged, {r['rejected']} rejected.")

    _emit(args, results, text)
    return 0


# === PARSER ===


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--storage", default=argparse.SUPPRESS,
                        help="storage folder or dashboard URL (default: $FRAMEWORK_STORAGE, else '.')")
    common.add_argument("--api-key", default=argparse.SUPPRESS, help="dashboard API key (default: $FRAMEWORK_API_KEY)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")

    parser = argparse.ArgumentParser(prog="framework", parents=[common], description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    runs = commands.add_parser("runs", help="list or show runs")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="list|show")
    listing = runs_commands.add_parser("list", parents=[common], help="list runs, newest first")
    listing.add_argument("--goal")
    listing.add_argument("--status", choices=[s.value for s in RunStatus])
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(handler=cmd_runs_list)
    show = runs_commands.add_parser("show", parents=[common], help="one run: metrics, decisions, problems, output")
    show.add_argument("run_id")
    show.set_defaults(handler=cmd_runs_show)

    commands.add_parser("stats", parents=[common], help="totals and rates over all runs").set_defaults(handler=cmd_stats)
    for name, arg, handler, text in (
        ("patterns", "goal", cmd_patterns, "patterns across a goal's runs"),
        ("analyze", "run_id", cmd_analyze, "why a run failed"),
        ("suggest", "goal", cmd_suggest, "improvement suggestions for a goal"),
    ):
        sub = commands.add_parser(name, parents=[common], help=text)
        sub.add_argument(arg)
        sub.set_defaults(handler=handler)

    push = commands.add_parser("push", parents=[common], help="send a storage folder's runs to a dashboard")
    push.add_argument("path")
    push.add_argument("--to", required=True, metavar="URL")
    push.set_defaults(handler=cmd_push)
    flush = commands.add_parser("flush", parents=[common], help="replay events spooled while a dashboard was down")
    flush.add_argument("--to", metavar="URL", help="only this dashboard's spool (default: every spool)")
    flush.set_defaults(handler=cmd_flush)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="framework: %(message)s")
    args = build_parser().parse_args(argv)
    args.storage = getattr(args, "storage", None)
    args.api_key = resolve_api_key(getattr(args, "api_key", None))
    args.json = getattr(args, "json", False)
    try:
        return args.handler(args)
    except (CliError, DashboardError, ValueError) as exc:
        print(f"framework: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a traceback helps nobody running a CLI; say what broke in one line
        print(f"framework: error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
    return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
