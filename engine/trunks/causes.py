"""Per-cause failover policy: does this outcome move the call to another trunk?

An attempt's outcome arrives as three signals (``HungUp``/``OriginateFailed``):
the Q.850 cause, the SIP final response when there was one, and the switch's
own name for the cause. Each may be missing or disagree a little between
switches (FreeSWITCH reports a 503 as NORMAL_TEMPORARY_FAILURE, Asterisk as
34 congestion; a dead FreeSWITCH gateway is the private GATEWAY_DOWN, which the
driver numbers 27). So the policy lists all three kinds and checks each.

The rule, in this order:

1. a 2xx SIP code, or no failure signal at all, is ``success``;
2. a match on ANY never-list (Q.850, SIP or name) makes it ``final``. This wins
   over a failover match on another signal: a 486 Busy that the carrier maps to
   41 must not ring the callee again through another carrier. Config validation
   also refuses a cause that is in both lists of one group, so the only way to
   fail over on, say, 17 is to remove it from ``never_q850`` explicitly;
3. a match on any failover list is ``failover``;
4. anything else is ``final``: an unknown cause never re-rings a callee.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.trunks.model import CausePolicy, Verdict

#: Q.850 causes that say "this route is broken or full", not "the callee said no":
#: 34 no circuit, 38 network out of order, 41 temporary failure, 42 switching
#: equipment congestion, 44 requested channel unavailable, 47 resource
#: unavailable, 102 recovery on timer expiry (the carrier never answered).
DEFAULT_FAILOVER_Q850 = frozenset({34, 38, 41, 42, 44, 47, 102})
#: 408 request timeout, 500 server error, 502 bad gateway, 503 service unavailable.
DEFAULT_FAILOVER_SIP = frozenset({408, 500, 502, 503})
#: FreeSWITCH private causes of an originate that never left the box.
DEFAULT_FAILOVER_NAMES = frozenset({"GATEWAY_DOWN", "INVALID_GATEWAY", "NORMAL_TEMPORARY_FAILURE"})

#: 1 unallocated number, 16 normal clearing, 17 busy, 19 no answer, 21 rejected:
#: the callee (or the caller) decided; another carrier would re-ring them.
DEFAULT_NEVER_Q850 = frozenset({1, 16, 17, 19, 21})
#: 404 not found, 480 temporarily unavailable, 486 busy here, 487 request
#: terminated (we cancelled: originate timeout or the API hung up), 603 decline.
DEFAULT_NEVER_SIP = frozenset({404, 480, 486, 487, 603})
#: FreeSWITCH numbers its "request terminated" as the private cause 487
#: ORIGINATOR_CANCEL, which reaches us as a name, so the SIP 487 rule needs it.
DEFAULT_NEVER_NAMES = frozenset({"ORIGINATOR_CANCEL"})


def default_policy() -> CausePolicy:
    return CausePolicy(
        failover_q850=DEFAULT_FAILOVER_Q850,
        failover_sip=DEFAULT_FAILOVER_SIP,
        failover_names=DEFAULT_FAILOVER_NAMES,
        never_q850=DEFAULT_NEVER_Q850,
        never_sip=DEFAULT_NEVER_SIP,
        never_names=DEFAULT_NEVER_NAMES,
    )


def cause_name(text: str) -> str:
    """The cause name inside a driver's ``cause_text``, upper snake case.

    FreeSWITCH gives ``USER_BUSY``; Asterisk gives ``User busy`` or, for an
    originate that never created a channel, ``NETWORK_OUT_OF_ORDER
    (OriginateResponse Failure, Reason 0)``. Both become ``USER_BUSY`` /
    ``NETWORK_OUT_OF_ORDER``; comparison is on that form.
    """
    head = text.split("(", 1)[0].strip()
    return "_".join(head.upper().replace("-", " ").split())


def normalize_names(names: Iterable[str]) -> frozenset[str]:
    return frozenset(cause_name(n) for n in names)


def classify(
    cause: int | None, sip_code: int | None, cause_text: str, policy: CausePolicy
) -> Verdict:
    """``failover`` | ``final`` | ``success`` for one attempt's outcome (rules above)."""
    if sip_code is not None and 200 <= sip_code < 300:
        return "success"
    name = cause_name(cause_text) if cause_text else ""
    if cause is None and sip_code is None and not name:
        return "success"
    if (
        (cause is not None and cause in policy.never_q850)
        or (sip_code is not None and sip_code in policy.never_sip)
        or (name and name in policy.never_names)
    ):
        return "final"
    if (
        (cause is not None and cause in policy.failover_q850)
        or (sip_code is not None and sip_code in policy.failover_sip)
        or (name and name in policy.failover_names)
    ):
        return "failover"
    return "final"
