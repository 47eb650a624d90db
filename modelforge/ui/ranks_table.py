"""The ranks of a distributed job as the Finetune and History tabs show them: one row per process, by machine."""

from __future__ import annotations


def ranks_markdown(view: dict) -> str:
    """How the job was launched and, for a distributed job, a table of its ranks (machine, host, pid, device, state)."""
    lines = [f"launched as: **{view['launch']}**"]
    if view["ranks"]:
        lines += ["", "| rank | machine | host | pid | device | state | step |", "|---|---|---|---|---|---|---|"]
        lines += [
            f"| {r['rank']} | {r['machine']} | {r['host']} | {r['pid']} | {r['device']} | {r['state']} | {r['step']} |"
            for r in view["ranks"]
        ]
    return "\n".join(lines)
