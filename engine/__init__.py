"""Telephony control engine for Asterisk 22 and FreeSWITCH 1.10."""
