"""What a campaign's counts hold over a span of time, and at which moment each attempt counts.

One definition, read by ``GET /v1/campaigns/{id}/stats`` and the runner's abandon baseline
(``stats.period_counts``) and by the reports' campaign intervals (``engine/reports/fill.py``),
so a report's 15-minute bucket, the stats over the same span and the simulator agree:

- a **dial** counts when it was placed (``created_at``; the attempt row is written just before
  the originate);
- everything that follows an answer (the answer, a live answer, a machine, an abandon, a
  connection to an agent, and in the reports the agent's disposition) counts at the **answer**,
  as the pacing simulator books each live answer and each abandon at the moment the call was
  answered (``ShiftTally.live_answer(call.answer_at, ...)``, engine/dialer/sim/metrics.py).

The answer moment is the SQL function ``campaign_answer_at`` (migration 0018, also used by the
trigger that marks the report buckets a written attempt changes): the answer time, or the end
when no answer time was recorded, held between the dial and an hour after it (an attempt rings
for ``ring_timeout_s`` <= 120 s; the bounds only matter for a row with no answer time, or for a
clock skew between the engine that stamps the answer and the database that stamps the dial).
Being a function of the row alone, it makes every span additive (the 96 buckets of a day sum to
the day), and bounds the attempts a span can hold to those created from an hour before it
until its end: the ``(campaign_id, created_at)`` and ``(created_at)`` indexes find them.
"""

from __future__ import annotations

ANSWER_AT = "campaign_answer_at(a.created_at, a.answered_at, a.ended_at)"
# No answer moment is later than this after the attempt's creation: the clamp in
# campaign_answer_at (migration 0018), which this must equal.
ANSWER_WITHIN = "interval '1 hour'"

# (count, the moment it is booked at: "dial" or "answer", which attempts it counts)
COUNTS: tuple[tuple[str, str, str], ...] = (
    ("dials", "dial", "true"),
    ("answers", "answer", "a.answered_at IS NOT NULL"),
    # live answers: the abandon rate's denominator (stats.figures_of)
    ("human", "answer", "a.outcome IN ('human', 'abandoned')"),
    ("machine", "answer", "a.outcome = 'machine'"),
    ("abandoned", "answer", "a.abandoned"),
    ("connected", "answer", "a.agent_at IS NOT NULL"),
)
KEYS = tuple(name for name, _at, _cond in COUNTS)
_MOMENTS = {"dial": "a.created_at", "answer": ANSWER_AT}


def _within(moment: str, lo: str, hi: str | None) -> str:
    cond = f"{moment} >= ({lo})::timestamptz"
    return cond if hi is None else f"{cond} AND {moment} < ({hi})::timestamptz"


def created_for(lo: str, hi: str | None) -> str:
    """The condition on ``a.created_at`` every attempt with a moment in ``[lo, hi)`` meets (SQL
    expressions; ``hi`` None: no end): what lets the indexes on ``created_at`` find them."""
    cond = f"a.created_at >= ({lo})::timestamptz - {ANSWER_WITHIN}"
    return cond if hi is None else f"{cond} AND a.created_at < ({hi})::timestamptz"


def answered_in(lo: str, hi: str) -> str:
    """The condition: the attempt's answer moment is in ``[lo, hi)``."""
    return f"{created_for(lo, hi)} AND {_within(ANSWER_AT, lo, hi)}"


def counts_sql(*, keys: str, lo: str, hi: str | None, by_bucket: bool) -> str:
    """A SELECT of the COUNTS (columns in that order, named by ``KEYS``) of the attempts ``a``
    meeting ``keys`` (an SQL condition), each count booked at its moment and counted when that
    is in ``[lo, hi)`` (SQL expressions; ``hi`` None: no end). One row; or with ``by_bucket``
    one per campaign and report bucket with a count, led by ``campaign_id`` and ``bucket``."""
    if not by_bucket:
        within = {at: _within(moment, lo, hi) for at, moment in _MOMENTS.items()}
        cols = ",\n       ".join(
            f"count(*) FILTER (WHERE {within[at]} AND {cond}) AS {name}"
            for name, at, cond in COUNTS
        )
        return f"""
SELECT {cols}
FROM campaign_attempts a
WHERE ({keys}) AND {created_for(lo, hi)} AND ({within["dial"]} OR {within["answer"]})
"""
    # Each attempt twice, once at each moment, so each bucket gets what was booked in it.
    answer_side = " OR ".join(cond for _n, at, cond in COUNTS if at == "answer")
    cols = ",\n       ".join(
        f"count(*) FILTER (WHERE m.kind = '{at}' AND {cond}) AS {name}" for name, at, cond in COUNTS
    )
    return f"""
SELECT a.campaign_id, report_bucket(m.at) AS bucket,
       {cols}
FROM campaign_attempts a
CROSS JOIN LATERAL (VALUES ('dial', a.created_at), ('answer', {ANSWER_AT})) AS m (kind, at)
WHERE ({keys}) AND {created_for(lo, hi)} AND {_within("m.at", lo, hi)}
  AND (m.kind = 'dial' OR {answer_side})
GROUP BY 1, 2
"""
