"""Speech plugins. TTS: :class:`~engine.speech.cache.PromptCache` over a
:class:`~engine.speech.tts.Synthesizer` (espeak-ng by default)."""
