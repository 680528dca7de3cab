"""FreeSWITCH hangup-cause names <-> Q.850 numbers (switch_types.h, 1.10).

FreeSWITCH names causes (``USER_BUSY``) and numbers them with Q.850 codes up
to 127 and private codes above (``ORIGINATOR_CANCEL`` is 487). Its own
``switch_channel_cause_q850()`` maps every private code to 16, and that is
what ``variable_hangup_cause_q850`` shows (the no-answer fixture: far end
ORIGINATOR_CANCEL, q850 16). We prefer that variable when present.

For an originate that never created a channel (``-ERR GATEWAY_DOWN``) there
is no variable, and 16 would hide the failure, so :data:`ORIGINATE_FAILURE_Q850`
gives the nearest meaningful Q.850 code for those private causes.
"""

from __future__ import annotations

Q850_BY_NAME: dict[str, int] = {
    "UNSPECIFIED": 0,
    "UNALLOCATED_NUMBER": 1,
    "NO_ROUTE_TRANSIT_NET": 2,
    "NO_ROUTE_DESTINATION": 3,
    "CHANNEL_UNACCEPTABLE": 6,
    "CALL_AWARDED_DELIVERED": 7,
    "NORMAL_CLEARING": 16,
    "USER_BUSY": 17,
    "NO_USER_RESPONSE": 18,
    "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20,
    "CALL_REJECTED": 21,
    "NUMBER_CHANGED": 22,
    "REDIRECTION_TO_NEW_DESTINATION": 23,
    "EXCHANGE_ROUTING_ERROR": 25,
    "DESTINATION_OUT_OF_ORDER": 27,
    "INVALID_NUMBER_FORMAT": 28,
    "FACILITY_REJECTED": 29,
    "RESPONSE_TO_STATUS_ENQUIRY": 30,
    "NORMAL_UNSPECIFIED": 31,
    "NORMAL_CIRCUIT_CONGESTION": 34,
    "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41,
    "SWITCH_CONGESTION": 42,
    "ACCESS_INFO_DISCARDED": 43,
    "REQUESTED_CHAN_UNAVAIL": 44,
    "PRE_EMPTED": 45,
    "FACILITY_NOT_SUBSCRIBED": 50,
    "OUTGOING_CALL_BARRED": 52,
    "INCOMING_CALL_BARRED": 54,
    "BEARERCAPABILITY_NOTAUTH": 57,
    "BEARERCAPABILITY_NOTAVAIL": 58,
    "SERVICE_UNAVAILABLE": 63,
    "BEARERCAPABILITY_NOTIMPL": 65,
    "CHAN_NOT_IMPLEMENTED": 66,
    "FACILITY_NOT_IMPLEMENTED": 69,
    "SERVICE_NOT_IMPLEMENTED": 79,
    "INVALID_CALL_REFERENCE": 81,
    "INCOMPATIBLE_DESTINATION": 88,
    "INVALID_MSG_UNSPECIFIED": 95,
    "MANDATORY_IE_MISSING": 96,
    "MESSAGE_TYPE_NONEXIST": 97,
    "WRONG_MESSAGE": 98,
    "IE_NONEXIST": 99,
    "INVALID_IE_CONTENTS": 100,
    "WRONG_CALL_STATE": 101,
    "RECOVERY_ON_TIMER_EXPIRE": 102,
    "MANDATORY_IE_LENGTH_ERROR": 103,
    "PROTOCOL_ERROR": 111,
    "INTERWORKING": 127,
}

NAME_BY_Q850: dict[int, str] = {v: k for k, v in Q850_BY_NAME.items()}

# FreeSWITCH-private causes seen when no channel was created, mapped to the
# Q.850 code a CDR reader would expect.
ORIGINATE_FAILURE_Q850: dict[str, int] = {
    "GATEWAY_DOWN": 27,  # the route is known but dead: "destination out of order"
    "INVALID_GATEWAY": 3,
    "INVALID_PROFILE": 3,
    "INVALID_URL": 3,
    "USER_NOT_REGISTERED": 20,  # subscriber absent
    "PROGRESS_TIMEOUT": 102,
    "ALLOTTED_TIMEOUT": 102,
    "NO_PICKUP": 19,
    "ORIGINATOR_CANCEL": 16,
    "SYSTEM_SHUTDOWN": 41,
    "CRASH": 41,
}


def q850_from_name(name: str) -> int:
    """Q.850 code for a FreeSWITCH cause name; private causes per the table above, else 16."""
    code = Q850_BY_NAME.get(name)
    if code is not None:
        return code
    return ORIGINATE_FAILURE_Q850.get(name, 16)


def name_from_q850(code: int) -> str:
    """FreeSWITCH cause name for ``uuid_kill``; unknown codes become NORMAL_CLEARING."""
    return NAME_BY_Q850.get(code, "NORMAL_CLEARING")


# SIP final response -> Q.850 as Asterisk maps it (chan_pjsip/chan_sip
# hangup_sip2cause). FreeSWITCH follows RFC 3398 instead and differs on some
# codes: a 503 is NORMAL_TEMPORARY_FAILURE (41) there, congestion (34) on
# Asterisk (both fixture sets show it). The engine promises one cause per
# outcome whatever the switch, so a leg that got a SIP failure response is
# reported with Asterisk's number; cause_text keeps FreeSWITCH's own name.
Q850_BY_SIP_FAILURE: dict[int, int] = {
    401: 21,
    403: 21,
    404: 1,
    407: 21,
    408: 18,
    410: 22,
    480: 19,
    484: 28,
    485: 1,
    486: 17,
    488: 58,
    500: 41,
    501: 29,
    502: 27,
    503: 34,
    504: 102,
    600: 17,
    603: 21,
    604: 1,
    606: 58,
}
