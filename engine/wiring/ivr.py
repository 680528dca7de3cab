"""IVR flows (docs/ivr.md) and their doors: FastAGI for Asterisk, the outbound socket for
FreeSWITCH; live speech input (docs/speech.md) and the engine's own TTS prompts."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from engine.acd.ivr_entry import IvrQueueEntry
from engine.acd.service import AcdService
from engine.calls.ivr_control import IvrCallControl
from engine.calls.service import CallService
from engine.campaigns.ivr_context import ContactVariables
from engine.campaigns.service import CampaignService
from engine.config import EngineConfig
from engine.core.config import AsteriskSwitch, FreeSwitchSwitch
from engine.ivr.ports import SpeechInput
from engine.ivr.runtime import IvrRuntime
from engine.ivr.speech_input import AudioSocketTurns, PromptFiles, TapSpeechInput, UnicastTurns
from engine.ivr.webhook import HttpWebhookClient
from engine.pbx.asterisk.agi_server import FastAgiServer
from engine.pbx.asterisk.audiosocket import AudioSocketServer
from engine.pbx.base import CallSession, PbxDriver
from engine.pbx.freeswitch.driver import FreeSwitchDriver
from engine.pbx.freeswitch.outbound import FreeSwitchCallSession, OutboundServer
from engine.recordings.service import RecordingService
from engine.speech.cache import PromptCache
from engine.speech.espeak import EspeakNg
from engine.speech.listen import Pools
from engine.speech.settings import TtsSettings
from engine.store.outbox import LanePublisher
from engine.telemetry.logging import get_logger
from engine.wiring.background import Background
from engine.wiring.listen import named_bind
from engine.wiring.outbox import Outbox

log = get_logger("engine.ivr")


@dataclass(frozen=True)
class Ivr:
    runtime: IvrRuntime
    agi_port: int
    audiosocket_port: int


async def start_ivr(
    cfg: EngineConfig,
    outbox: Outbox,
    acd: AcdService,
    calls: CallService,
    recordings: RecordingService,
    campaigns: CampaignService | None,
    drivers: dict[str, PbxDriver],
    background: Background,
    stack: AsyncExitStack,
    closing: Callable[[], bool],
) -> Ivr:
    webhooks = HttpWebhookClient()
    stack.push_async_callback(webhooks.close)
    speech, audiosocket_port = await _speech_input(cfg, drivers, stack)
    ivr = IvrRuntime(
        cfg.resolve(cfg.engine.ivr_dir),
        # The `record` step's messages become recordings (docs/recordings.md "Voicemail").
        VoicemailIntake(LanePublisher(outbox.events), recordings),
        tts=_prompt_cache(cfg),
        # `queue` steps hand calls to the ACD (engine/acd/ivr_entry.py).
        queues=IvrQueueEntry(acd, calls),
        # `transfer` and `split` (engine/calls/ivr_control.py).
        calls=IvrCallControl(calls),
        # A campaign call's contact fields as contact.* variables (docs/ivr.md).
        context=ContactVariables(campaigns, calls) if campaigns is not None else None,
        webhooks=webhooks,
        speech=speech,
        recordings_dir=_ivr_recordings_dir(cfg),
    )
    await ivr.reload()
    for problem in unknown_flow_references(cfg, ivr.flows):
        log.warning("engine.toml names an IVR flow that is not loaded", problem=problem)
    if cfg.engine.ivr_watch_interval_s > 0:
        background.consume(ivr.watch(cfg.engine.ivr_watch_interval_s, closing), "ivr-watch")
    agi_port = 0
    # One IVR runtime, two doors: FastAGI for Asterisk, the outbound
    # socket for FreeSWITCH. Both hand the flow a CallSession.
    if any(isinstance(sw, AsteriskSwitch) for sw in cfg.switches):
        agi = FastAgiServer(cfg.fastagi.host, cfg.fastagi.port, ivr.handle)
        with named_bind("[fastagi] bind", cfg.fastagi.bind):
            await stack.enter_async_context(agi)
        agi_port = agi.port
    # Several FreeSWITCH boxes may share one outbound-socket listener.
    binds = {sw.outbound_bind for sw in cfg.switches if isinstance(sw, FreeSwitchSwitch)}
    for bind in sorted(binds):
        host, _, port = bind.rpartition(":")
        with named_bind("[[switches]] outbound_bind", bind):
            await stack.enter_async_context(OutboundServer(ivr.handle, host, int(port)))
    return Ivr(ivr, agi_port, audiosocket_port)


def unknown_flow_references(cfg: EngineConfig, flows: Collection[str]) -> list[str]:
    """The flows engine.toml sends calls to that are not loaded: a queue's overflow (its
    callers would be hung up when they reach it) and a configured campaign's machine flow.
    Logged at start and listed by a reload, as ``warnings``."""
    out: list[str] = []
    for qi, queue in enumerate(cfg.queues):
        for ri, rule in enumerate(queue.overflow):
            if rule.ivr_flow and rule.ivr_flow not in flows:
                out.append(
                    f"queues[{qi}].overflow[{ri}].ivr_flow: no IVR flow named {rule.ivr_flow!r} "
                    f"is loaded; callers of queue {queue.name!r} sent there after "
                    f"{rule.after_s:g} s would be hung up"
                )
    for ci, campaign in enumerate(cfg.campaigns):
        flow = campaign.spec.amd.machine_flow
        if flow and flow not in flows:
            out.append(
                f"campaigns[{ci}].spec.amd.machine_flow: no IVR flow named {flow!r} is loaded; "
                f"answering machines of campaign {campaign.name!r} would be hung up on"
            )
    return out


class VoicemailIntake:
    """The IVR's event sink: each ``IvrRecorded`` (a voicemail message) is handed to the
    recordings service, which journals it in the recordings lane before the event itself
    is journalled; the event then carries the message's ``recording_id``. Both journal
    writes happen before the step's ``emit`` returns."""

    def __init__(self, events: LanePublisher, recordings: RecordingService) -> None:
        self._events = events
        self._recordings = recordings

    async def publish(self, data: Mapping[str, Any]) -> None:
        if data.get("type") == "IvrRecorded" and data.get("kind") == "voicemail":
            try:
                rid = self._recordings.voicemail(data)
            except Exception as err:  # the event still goes out (as before this intake)
                log.error("voicemail message not indexed", error=repr(err))
                rid = None
            if rid is not None:
                data = {**data, "recording_id": rid}
        await self._events.publish(data)


async def _speech_input(
    cfg: EngineConfig, drivers: dict[str, PbxDriver], stack: AsyncExitStack
) -> tuple[SpeechInput | None, int]:
    """Live speech for IVR steps (docs/speech.md): the AudioSocket server (Asterisk),
    the unicast tap (FreeSWITCH, through the driver) and one warm ASR pool per plugin.
    None keeps the runtime's keys-only input. With it, the AudioSocket server's port
    (0: none)."""
    if not cfg.speech.enabled:
        return None, 0
    pools = Pools(size=cfg.speech.workers)
    stack.push_async_callback(pools.stop)
    openers: list[Any] = []
    port = 0
    if any(isinstance(sw, AsteriskSwitch) for sw in cfg.switches):
        server = AudioSocketServer(cfg.speech.host, cfg.speech.port)
        await stack.enter_async_context(server)
        port = server.port
        openers.append(
            AudioSocketTurns(server, _prompt_files(cfg), advertise_host=cfg.speech.advertise_host)
        )
    fs = [d for d in drivers.values() if isinstance(d, FreeSwitchDriver)]
    if fs:
        openers.append(UnicastTurns(lambda session: _freeswitch_of(fs, session)))
    return TapSpeechInput(pools, openers, default_plugin=cfg.speech.default_plugin), port


def _freeswitch_of(
    drivers: list[FreeSwitchDriver], session: CallSession
) -> FreeSwitchDriver | None:
    """The FreeSWITCH driver a session's leg belongs to: outbound-socket sessions only (an
    AGI session is Asterisk's); with several FreeSWITCH boxes, the one whose switch name
    the leg's ``FreeSWITCH-Switchname`` gives."""
    if not isinstance(session, FreeSwitchCallSession):
        return None
    if len(drivers) == 1:
        return drivers[0]
    host = session.variables.get("FreeSWITCH-Switchname", "")
    return next((d for d in drivers if d.name == host), None)


def _prompt_files(cfg: EngineConfig) -> PromptFiles:
    """The engine's own TTS prompts as files, for playing them over the media tap."""
    if cfg.tts.dir:
        directory = cfg.resolve(cfg.tts.dir)
        return PromptFiles(directory, cfg.tts.prefix or str(directory))
    settings = TtsSettings.from_env()
    return PromptFiles(settings.directory, settings.prefix)


def _prompt_cache(cfg: EngineConfig) -> PromptCache | None:
    """The [tts] table, or None to let the IVR runtime use ENGINE_TTS_* / defaults."""
    if not cfg.tts.dir:
        return None
    directory = cfg.resolve(cfg.tts.dir)
    synth = EspeakNg(cfg.tts.espeak_binary, timeout_s=cfg.tts.timeout_s)
    return PromptCache(synth, directory, cfg.tts.prefix or str(directory))


def _ivr_recordings_dir(cfg: EngineConfig) -> str:
    """``[engine] ivr_recordings_dir``; unset, the environment's, else the one recordings
    switch directory, where the recordings service finds (and seals) the messages."""
    if cfg.engine.ivr_recordings_dir:
        return cfg.engine.ivr_recordings_dir
    if os.environ.get("ENGINE_IVR_RECORDINGS_DIR"):
        return ""  # IvrRuntime reads it
    switches = list(cfg.recordings.switches.values()) if cfg.recordings.enabled else []
    return switches[0].switch_dir if len(switches) == 1 else ""
