"""Build the labelled ASR corpus: spoken menu choices and free sentences, English and Korean.

    python scripts/asr_corpus.py [--out var/asr-corpus]

Writes ``NNN.wav`` (8 kHz, mono, 16-bit: what Asterisk's format_wav plays) and
``labels.json`` (``[{"id": "103", "lang": "en", "kind": "menu", "keyword": "sales",
"text": "sales please", "split": "heldout", "lead_ms": ..., "speech_ms": ...}]``).
Ids 1NN are English (pocketsphinx), 2NN Korean (vosk); the sandbox carrier's 76NNN numbers
play file NNN. Deterministic: texts, espeak-ng voices, speeds, pauses and noise (numpy, fixed
seed) are fixed here. Needs ``espeak-ng`` and ``sox`` (scripts/host-deps).

Splits: even NN are the tuning half (VAD, search settings, confidence thresholds
and keyword handling are chosen looking at these only), odd NN the held-out half that
bench/asr.py reports on. The halves share no espeak-ng voice, speaking rate or noise level
(``TUNING`` / ``HELDOUT`` below), so a setting that fits the tuning voices is measured on
voices it was never tried with.

The third split, ``fresh`` (ids 3NN English, 4NN Korean, round 3 of docs/speech.md), was made
after the tuning and held-out halves had both been looked at: new voices, speeds, noise
levels, lead-ins, caller phrasings and free sentences, none shared with the other two
(``FRESH`` and ``*_FRESH`` below). Its file hashes are in ``scripts/asr_fresh.sha256``; it is
reported once, after the method is final. ``--split fresh`` builds only it. ``fresh2``
(5NN/6NN), ``fresh3`` (7NN/8NN, round 4), ``fresh4`` (9NN/0NN, round 5) and ``fresh5`` (18N-19N and
352-383 English, 28N-29N and 452-483 Korean, round 6) and ``fresh6`` (552-599 and 384-387
English, 652-699 and 484-487 Korean, round 7) are later unseen splits made the same way.

``mbrola1`` (752-799 and 388-391, English only; round 9) is the first split spoken with MBROLA
diphone voices (espeak-ng's ``mb-*`` voices: concatenated recordings of real speakers, far
closer to callers than espeak-ng's formant voices). Splits from ``mbrola1`` on are
``DrawnSplit`` values in ``SPLITS``: one ``LangSplit`` per language (voices, phrasings,
sentences, ids, seeds), so a language can be added to a split later without changing the
other language's files. MBROLA voices need ``scripts/host-deps --mbrola`` (contrib and
non-free packages; the corpus only, never ``make test``). ``mbrola2`` (852-899 and 488-491,
Korean only; round 9 (Korean)) is spoken by MBROLA hn1 through scripts/mbrola_ko.py's table;
``mbrola3`` (952-979, 396-399, 492-499, Korean only, 30 menu answers and 10 sentences: the last
free ids; round 10 (Korean)) likewise, at other pitches; ``mbrola4`` (052-099 and 392-395,
English only; round 10) the second English one.

``--revoice en=mb-us1,mb-us2`` re-speaks the chosen splits' items of that language with other
voices (drawn per item, seeded; texts, speeds, lead-ins and noise unchanged) into another
directory, for offline comparisons of voices on seen data (round 9); such a directory is never
played by the carrier.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.speech.wav import Pcm, encode_wav
from scripts.corpus_audio import mix, speak_text

RATE = 8000
PEAK = 14000

EN_KEYWORDS = ("billing", "operator", "cancel", "repair", "payment")
EN_MENU_FORMS = ("{k}", "{k} please", "i want {k}", "give me {k}", "{k}", "i would like {k}")
EN_FREE = (
    "i would like to check my account balance",
    "my internet connection is not working",
    "can you call me back tomorrow morning",
    "i want to change my address",
    "the delivery did not arrive yesterday",
    "please send me a new card",
    "how much do i owe this month",
    "i am calling about my order",
    "thank you very much for your help",
    "what time do you open on monday",
    "i need to speak to a manager",
    "my password does not work any more",
    "is there a discount for students",
    "i moved to a new house last week",
    "the phone bill is too high",
    "can i pay with a credit card",
    "i lost my card this morning",
    "please stop calling me",
    "my name is john smith",
    "i would like to book a table for two",
)

KO_KEYWORDS = ("영업", "환불", "보험", "문의", "해지")
KO_MENU_FORMS = ("{k}", "{k} 주세요", "{k} 연결 해 주세요", "{k}", "네 {k}", "{k} 주세요")
KO_FREE = (
    "주문 을 취소 하고 싶어요",
    "배송 이 아직 안 왔어요",
    "요금 이 너무 많이 나왔어요",
    "상담원 과 통화 하고 싶어요",
    "내일 다시 전화 주세요",
    "카드 를 잃어버렸어요",
    "비밀번호 를 바꾸고 싶어요",
    "고객 센터 는 몇 시 에 열어요",
    "환불 은 언제 돼요",
    "주소 를 변경 하고 싶어요",
    "예약 을 하고 싶어요",
    "감사 합니다",
    "결제 가 안 돼요",
    "인터넷 이 안 돼요",
    "새 카드 를 보내 주세요",
    "제 이름 은 김 민수 입니다",
    "지금 통화 가능 하세요",
    "배송 주소 를 알려 주세요",
    "할인 이 있나요",
    "전화 번호 를 바꾸고 싶어요",
)


#: The fresh split's caller phrasings: some new ("yes", "thank you", "부탁 합니다", "으로 해
#: 주세요"), some the grammar knows but the older splits never said ("i need", "connect me to").
EN_MENU_FORMS_FRESH = (
    "{k}",
    "yes {k}",
    "i need {k}",
    "{k} thank you",
    "connect me to {k}",
    "{k}",
    "{k} please",
    "yes {k} please",
)
KO_MENU_FORMS_FRESH = (
    "{k}",
    "{k} 부탁 합니다",
    "네 {k} 주세요",
    "{k} 으로 해 주세요",
    "{k}",
    "네 {k}",
    "{k} 요",
    "{k} 주세요",
)
#: Fresh off-menu sentences: none names a menu keyword or repeats an older sentence.
EN_FREE_FRESH = (
    "where is the nearest store",
    "i want to return a broken phone",
    "my package was damaged",
    "could you repeat that",
    "i forgot my user name",
    "how long will the delivery take",
    "what is the weather like today",
    "i would like to upgrade my plan",
    "the screen on my laptop is cracked",
    "do you have any offers for families",
    "my son is sick today",
    "i will call again later",
)
KO_FREE_FRESH = (
    "가장 가까운 매장 이 어디 예요",
    "택배 가 파손 됐어요",
    "다시 말씀 해 주세요",
    "아이디 를 잊어버렸어요",
    "배달 은 얼마나 걸려요",
    "오늘 날씨 가 어때요",
    "요금제 를 바꾸고 싶어요",
    "화면 이 깨졌어요",
    "가족 할인 이 있나요",
    "나중 에 다시 전화 할게요",
    "물건 을 반품 하고 싶어요",
    "계좌 번호 를 알려 주세요",
)


@dataclass(frozen=True)
class Conditions:
    """What one half of the corpus is spoken with (the halves share none of it)."""

    en_voices: tuple[str, ...]
    ko_voices: tuple[str, ...]
    speeds: tuple[int, ...]  # espeak-ng words per minute
    noise_rms: tuple[int, ...]  # Gaussian line noise, int16 RMS (0: clean)
    lead_ms: tuple[int, ...]


TUNING = Conditions(
    en_voices=("en-us", "en-us-nyc", "en-gb-x-rp", "en-us+m3"),
    ko_voices=("ko", "ko+m3", "ko+f3"),
    speeds=(150, 165, 140, 175, 160),
    noise_rms=(0, 30, 60, 0, 100),
    lead_ms=(600, 730, 860, 990, 1120),
)
HELDOUT = Conditions(
    en_voices=("en-us+f3", "en-gb", "en+f4", "en+m7"),
    ko_voices=("ko+m1", "ko+f2", "ko+m5"),
    speeds=(130, 155, 185, 145, 170),
    noise_rms=(20, 45, 80, 10, 120),
    lead_ms=(650, 800, 950, 1050, 700),
)

FRESH = Conditions(
    en_voices=("en-us+m1", "en-us+f2", "en-gb-scotland", "en-029", "en-us+m6"),
    ko_voices=("ko+m2", "ko+f1", "ko+m4", "ko+f4"),
    speeds=(135, 148, 158, 168, 180),
    noise_rms=(5, 15, 35, 55, 90),
    lead_ms=(620, 760, 880, 1000, 1150),
)
FRESH_MENUS = 40  # per language: 8 phrasings x 5 keywords
#: The second unseen split (ids 5NN / 6NN). ``fresh`` indexes voice, speed and noise by the
#: item number modulo 5, like the keyword, so each English voice said one keyword only (a
#: design flaw found after its run); here each item's conditions are drawn independently.
FRESH2 = Conditions(
    en_voices=("en-us+m2", "en-us+f4", "en-us+m8", "en-gb-x-gbcwmd", "en-us+f5"),
    ko_voices=("ko+m6", "ko+f5", "ko+m7", "ko+m8"),
    speeds=(138, 152, 162, 172, 178),
    noise_rms=(8, 25, 40, 65, 110),
    lead_ms=(640, 790, 920, 1080, 1200),
)
EN_FREE_FRESH2 = (
    "i would like to speak with someone about my bill",
    "my router keeps turning off",
    "please tell me my balance",
    "i never got the confirmation email",
    "can i change my delivery date",
    "the technician did not come today",
    "how do i reset my phone",
    "i am moving abroad next month",
    "what are your opening hours",
    "my card was charged twice",
    "i want to close my account",
    "nobody answered my email",
)
KO_FREE_FRESH2 = (
    "제 요금 을 확인 하고 싶어요",
    "공유기 가 자꾸 꺼져요",
    "확인 메일 을 못 받았어요",
    "배달 날짜 를 바꿀 수 있나요",
    "기사 님 이 오늘 안 오셨어요",
    "휴대폰 을 초기화 하고 싶어요",
    "다음 달 에 이사 가요",
    "몇 시 까지 문 을 열어요",
    "카드 가 두 번 결제 됐어요",
    "계정 을 닫고 싶어요",
    "아무도 메일 에 답 을 안 했어요",
    "직원 과 이야기 하고 싶어요",
)


#: The third unseen split (ids 7NN / 8NN, round 4 of docs/speech.md), made after the round-4
#: method was final: voices no split used before (espeak-ng variants all new; the Korean ones
#: are variants other than m1-m8/f1-f5, which the older splits used up), new speeds, noise
#: levels, lead-ins, phrasings (some the grammars know, some not: "okay", "can i have",
#: "좀", "입니다", "부탁 해요") and sentences; each item's conditions drawn independently.
FRESH3 = Conditions(
    en_voices=("en-gb-x-gbclan", "en-us+m4", "en-us+f1", "en-us+m5", "en-us+klatt3", "en-us+linda"),
    ko_voices=("ko+Andy", "ko+steph", "ko+edward", "ko+john", "ko+klatt2"),
    speeds=(143, 153, 163, 169, 183),
    noise_rms=(12, 28, 50, 75, 95),
    lead_ms=(670, 830, 940, 1030, 1170),
)
EN_MENU_FORMS_FRESH3 = (
    "{k}",
    "{k} please",
    "yes {k}",
    "i want {k}",
    "{k} thanks",
    "okay {k}",
    "i need {k} please",
    "can i have {k}",
)
KO_MENU_FORMS_FRESH3 = (
    "{k}",
    "{k} 주세요",
    "네 {k}",
    "{k} 요",
    "{k} 해 주세요",
    "{k} 좀 해 주세요",
    "네 {k} 부탁 해요",
    "{k} 입니다",
)
EN_FREE_FRESH3 = (
    "i think someone used my card",
    "the app crashes when i log in",
    "can you send the invoice again",
    "my neighbour has the same problem",
    "i am waiting for a refund since june",
    "the signal is weak in my kitchen",
    "who can help me with my contract",
    "i got a letter i do not understand",
    "please update my phone number",
    "the parcel went to the wrong address",
    "is the shop open on sunday",
    "i would like to add my wife to the plan",
)
KO_FREE_FRESH3 = (
    "누가 제 카드 를 쓴 것 같아요",
    "앱 이 로그인 할 때 꺼져요",
    "청구서 를 다시 보내 주세요",
    "이웃 도 같은 문제 가 있어요",
    "택배 가 다른 주소 로 갔어요",
    "일요일 에 가게 문 을 여나요",
    "계약 에 대해 물어보고 싶어요",
    "이해 가 안 되는 편지 를 받았어요",
    "주방 에서 신호 가 약해요",
    "아내 를 요금제 에 추가 하고 싶어요",
    "비밀 번호 가 기억 이 안 나요",
    "오후 에 다시 연락 드릴게요",
)


#: The fourth unseen split (ids 9NN English, 0NN Korean: the carrier's 76NNN has three
#: digits; round 5 of docs/speech.md), made after the round-5 method was final: espeak-ng
#: variants no split used before, new speeds, noise levels, lead-ins, phrasings (some the
#: grammars know, some not: "um", "just", "i guess"; "음", "할게요", "부탁 드려요", "이요")
#: and sentences; each item's conditions drawn independently.
FRESH4 = Conditions(
    en_voices=(
        "en-us+robert",
        "en-us+Annie",
        "en-gb+max",
        "en-us+klatt4",
        "en-us+aunty",
        "en-gb-x-rp+michel",
    ),
    ko_voices=("ko+robert", "ko+Annie", "ko+max", "ko+klatt4", "ko+aunty", "ko+michel"),
    speeds=(137, 147, 157, 167, 176),
    noise_rms=(18, 33, 58, 85, 105),
    lead_ms=(690, 810, 960, 1060, 1140),
)
EN_MENU_FORMS_FRESH4 = (
    "{k}",
    "{k} please",
    "um {k}",
    "give me {k} please",
    "yes {k} thanks",
    "just {k}",
    "i want {k}",
    "{k} i guess",
)
KO_MENU_FORMS_FRESH4 = (
    "{k}",
    "{k} 주세요",
    "음 {k}",
    "{k} 으로 할게요",
    "네 {k} 주세요",
    "{k} 부탁 드려요",
    "{k} 이요",
    "네 {k}",
)
EN_FREE_FRESH4 = (
    "my daughter needs a new sim card",
    "the lights on the modem are blinking red",
    "why was i charged for roaming",
    "i would like a paper copy of my bill",
    "can someone come to fix the line on friday",
    "the music on hold is too loud",
    "i am travelling to spain next week",
    "my voicemail is full",
    "what is the number for the head office",
    "the last person hung up on me",
    "i need a receipt for my taxes",
    "do you sell second hand phones",
)
KO_FREE_FRESH4 = (
    "딸 에게 새 유심 이 필요 해요",
    "모뎀 불빛 이 빨갛게 깜빡여요",
    "로밍 요금 이 왜 나왔나요",
    "종이 청구서 를 받고 싶어요",
    "금요일 에 기사 님 을 보내 주실 수 있나요",
    "대기 음악 이 너무 시끄러워요",
    "다음 주 에 스페인 에 가요",
    "음성 사서함 이 가득 찼어요",
    "본사 전화 번호 가 뭐 예요",
    "아까 상담원 이 전화 를 끊었어요",
    "세금 때문에 영수증 이 필요 해요",
    "중고 휴대폰 도 파나요",
)


#: The fifth unseen split (round 6 of docs/speech.md), made before any round-6 tuning. Ids:
#: English 180-199 then 352-383, Korean 280-299 then 452-483 (the carrier's 76NNN takes three
#: digits and the 1NN-0NN blocks below x52 are taken; these are free in every split and
#: outside the live tests' 980-999; 1NN/3NN stay English and 2NN/4NN Korean). espeak-ng
#: variants no split used (david, belinda, paul, shelby, travis, Alex), speeds, noise levels,
#: lead-ins no split used, phrasings no split said ("yeah", "uh", "i'd like", "put me through
#: to", "i think", "i'm calling about"; "어", "할게요", "예", "때문에 전화 했어요", "연결 부탁
#: 드립니다", "저 ... 이요") and 12 new sentences each; conditions drawn per item.
FRESH5 = Conditions(
    en_voices=(
        "en-us+david",
        "en-us+belinda",
        "en-us-nyc+paul",
        "en-gb+shelby",
        "en-gb-scotland+travis",
        "en-029+Alex",
    ),
    ko_voices=("ko+david", "ko+belinda", "ko+paul", "ko+shelby", "ko+travis", "ko+Alex"),
    speeds=(142, 151, 159, 166, 174),
    noise_rms=(14, 38, 52, 70, 98),
    lead_ms=(660, 780, 910, 1020, 1110),
)
EN_MENU_FORMS_FRESH5 = (
    "{k}",
    "yeah {k}",
    "uh {k} please",
    "i'd like {k}",
    "put me through to {k}",
    "{k} i think",
    "i'm calling about {k}",
    "{k} please thank you",
)
KO_MENU_FORMS_FRESH5 = (
    "{k}",
    "어 {k}",
    "{k} 할게요",
    "예 {k} 주세요",
    "{k} 때문에 전화 했어요",
    "{k} 연결 부탁 드립니다",
    "저 {k} 이요",
    "{k} 으로 부탁 합니다",
)
EN_FREE_FRESH5 = (
    "my tablet will not charge",
    "i would like to talk about my last invoice",
    "the engineer left a mess in the hall",
    "how do i turn off the alarm",
    "someone keeps sending me text messages",
    "i cannot hear anything on calls",
    "what does this fee mean",
    "i want to keep my old number",
    "the website says my order is lost",
    "we are closing the shop for the winter",
    "please write down my new email",
    "is my contract finished next year",
)
KO_FREE_FRESH5 = (
    "태블릿 이 충전 이 안 돼요",
    "지난 청구서 에 대해 얘기 하고 싶어요",
    "기사 님 이 복도 를 더럽혔어요",
    "알람 을 어떻게 꺼요",
    "누가 자꾸 문자 를 보내요",
    "통화 할 때 아무것도 안 들려요",
    "이 수수료 는 뭐 예요",
    "예전 번호 를 그대로 쓰고 싶어요",
    "홈페이지 에 주문 이 없어졌다고 나와요",
    "겨울 에는 가게 를 닫아요",
    "새 이메일 을 적어 주세요",
    "제 계약 은 내년 에 끝나나요",
)


#: The sixth unseen split (round 7 of docs/speech.md), made before any round-7 tuning. Ids:
#: English 552-599 then 384-387, Korean 652-699 then 484-487 (free in every split, outside
#: the live tests' 980-999; odd hundreds stay English, even ones Korean). espeak-ng variants
#: no split used (adam, anika, benjamin, iven, norbert, victor), speeds, noise levels and
#: lead-ins no split used, a mix of phrasings the round-6 grammar knows ("{k}", "i need {k}
#: thank you", "can i have {k} please") and phrasings no split said ("hmm {k}", "{k} for me",
#: "could i get {k}", "i need help with {k}", "{k} is what i need"; Korean "아 {k} 이요",
#: "{k} 좀 부탁 해요", "{k} 관련 해서요", "그 {k} 요", "{k} 쪽 으로 연결 해 주세요", "{k} 관련
#: 전화 드렸어요") and 12 new sentences each; conditions drawn per item.
FRESH6 = Conditions(
    en_voices=(
        "en-us+adam",
        "en-us+anika",
        "en-gb+benjamin",
        "en-us-nyc+iven",
        "en-gb-x-rp+norbert",
        "en-gb-scotland+victor",
    ),
    ko_voices=("ko+adam", "ko+anika", "ko+benjamin", "ko+iven", "ko+norbert", "ko+victor"),
    speeds=(144, 154, 161, 171, 179),
    noise_rms=(16, 36, 48, 72, 92),
    lead_ms=(680, 820, 930, 1040, 1130),
)
EN_MENU_FORMS_FRESH6 = (
    "{k}",
    "hmm {k}",
    "i need {k} thank you",
    "{k} for me",
    "could i get {k}",
    "can i have {k} please",
    "i need help with {k}",
    "{k} is what i need",
)
KO_MENU_FORMS_FRESH6 = (
    "{k}",
    "아 {k} 이요",
    "네 {k} 주세요",
    "{k} 좀 부탁 해요",
    "{k} 관련 해서요",
    "그 {k} 요",
    "{k} 쪽 으로 연결 해 주세요",
    "{k} 관련 전화 드렸어요",
)
EN_FREE_FRESH6 = (
    "the printer you sent me makes a noise",
    "can my brother use my data allowance",
    "there is no dial tone since the storm",
    "when does my discount end",
    "do you deliver to the islands",
    "the tariff changed without any notice",
    "my son changed the wifi password",
    "the call keeps dropping after a minute",
    "do you have a plan for older people",
    "my grandmother wants a bigger keypad",
    "the whole street lost its connection",
    "please speak a little slower",
)
KO_FREE_FRESH6 = (
    "보내 주신 프린터 에서 소리 가 나요",
    "동생 이 제 데이터 를 써도 되나요",
    "폭풍 이후 로 발신음 이 없어요",
    "할인 은 언제 끝나요",
    "섬 에도 배달 하나요",
    "알림 없이 요금제 가 바뀌었어요",
    "아들 이 와이파이 비밀번호 를 바꿨어요",
    "통화 가 일 분 뒤 에 자꾸 끊겨요",
    "어르신 을 위한 요금제 가 있나요",
    "택배 를 기다리고 있어요",
    "온 동네 인터넷 이 끊겼어요",
    "할머니 께서 큰 버튼 전화기 를 원하세요",
)


@dataclass(frozen=True)
class Item:
    id: str
    lang: str
    kind: str  # menu | free
    keyword: str | None
    text: str
    split: str
    voice: str
    speed: int
    lead_ms: int
    noise_rms: int
    speech_ms: int = 0
    total_ms: int = 0


def plan(lang: str, menus: int) -> list[Item]:
    keywords, forms, free, base = (
        (EN_KEYWORDS, EN_MENU_FORMS, EN_FREE, 100)
        if lang == "en"
        else (KO_KEYWORDS, KO_MENU_FORMS, KO_FREE, 200)
    )
    items: list[Item] = []
    for n in range(menus + len(free)):
        if n < menus:
            kw: str | None = keywords[n % len(keywords)]
            text = forms[(n // len(keywords)) % len(forms)].format(k=kw)
        else:
            kw = None
            text = free[n - menus]
        half = TUNING if n % 2 == 0 else HELDOUT
        voices = half.en_voices if lang == "en" else half.ko_voices
        k = n // 2  # the item's place within its half
        items.append(
            Item(
                id=f"{base + n:03d}",
                lang=lang,
                kind="menu" if kw else "free",
                keyword=kw,
                text=text,
                split="tuning" if n % 2 == 0 else "heldout",
                voice=voices[k % len(voices)],
                speed=half.speeds[(k + 1) % len(half.speeds)],
                lead_ms=half.lead_ms[k % len(half.lead_ms)],
                noise_rms=half.noise_rms[(k + 2) % len(half.noise_rms)],
            )
        )
    return items


def _fresh_texts(
    keywords: Sequence[str],
    forms: Sequence[str],
    free: Sequence[str],
    count: int = FRESH_MENUS,
) -> list[tuple[str | None, str]]:
    """(keyword, text) of a fresh split's items: ``count`` menu answers, each keyword in
    turn in each form in turn, then the off-menu sentences (keyword None)."""
    menus: list[tuple[str | None, str]] = [
        (kw, forms[(n // len(keywords)) % len(forms)].format(k=kw))
        for n in range(count)
        for kw in [keywords[n % len(keywords)]]
    ]
    return menus + [(None, text) for text in free]


def plan_fresh(lang: str) -> list[Item]:
    """The fresh split: ids 3NN (English) and 4NN (Korean), FRESH conditions only."""
    keywords, forms, free, base = (
        (EN_KEYWORDS, EN_MENU_FORMS_FRESH, EN_FREE_FRESH, 300)
        if lang == "en"
        else (KO_KEYWORDS, KO_MENU_FORMS_FRESH, KO_FREE_FRESH, 400)
    )
    voices = FRESH.en_voices if lang == "en" else FRESH.ko_voices
    items: list[Item] = []
    for n, (kw, text) in enumerate(_fresh_texts(keywords, forms, free)):
        items.append(
            Item(
                id=f"{base + n:03d}",
                lang=lang,
                kind="menu" if kw else "free",
                keyword=kw,
                text=text,
                split="fresh",
                voice=voices[n % len(voices)],
                speed=FRESH.speeds[(n + 1) % len(FRESH.speeds)],
                lead_ms=FRESH.lead_ms[(n + 3) % len(FRESH.lead_ms)],
                noise_rms=FRESH.noise_rms[(n + 2) % len(FRESH.noise_rms)],
            )
        )
    return items


def _plan_drawn(
    lang: str,
    split: str,
    cond: Conditions,
    texts: dict[str, tuple[tuple[str, ...], tuple[str, ...], int, int]],
    menus: int = FRESH_MENUS,
) -> list[Item]:
    """A split whose conditions are drawn per item from ``cond`` (seeded): ``texts[lang]`` is
    (menu forms, free sentences, first id, seed); ``menus`` menu answers."""
    forms, free, base, seed = texts[lang]
    keywords = EN_KEYWORDS if lang == "en" else KO_KEYWORDS
    voices = cond.en_voices if lang == "en" else cond.ko_voices
    draw = np.random.default_rng(seed)
    items: list[Item] = []
    for n, (kw, text) in enumerate(_fresh_texts(keywords, forms, free, menus)):
        v, sp, le, no = (int(i) for i in draw.integers(0, [len(voices), 5, 5, 5]))
        items.append(
            Item(
                id=f"{base + n:03d}",
                lang=lang,
                kind="menu" if kw else "free",
                keyword=kw,
                text=text,
                split=split,
                voice=voices[v],
                speed=cond.speeds[sp],
                lead_ms=cond.lead_ms[le],
                noise_rms=cond.noise_rms[no],
            )
        )
    return items


def plan_fresh2(lang: str) -> list[Item]:
    """The second unseen split: ids 5NN / 6NN, FRESH2 conditions drawn per item (seeded)."""
    return _plan_drawn(
        lang,
        "fresh2",
        FRESH2,
        {
            "en": (EN_MENU_FORMS_FRESH, EN_FREE_FRESH2, 500, 20261206),
            "ko": (KO_MENU_FORMS_FRESH, KO_FREE_FRESH2, 600, 20261207),
        },
    )


def plan_fresh3(lang: str) -> list[Item]:
    """The third unseen split: ids 7NN / 8NN, FRESH3 conditions drawn per item (seeded)."""
    return _plan_drawn(
        lang,
        "fresh3",
        FRESH3,
        {
            "en": (EN_MENU_FORMS_FRESH3, EN_FREE_FRESH3, 700, 20261209),
            "ko": (KO_MENU_FORMS_FRESH3, KO_FREE_FRESH3, 800, 20261210),
        },
    )


def plan_fresh4(lang: str) -> list[Item]:
    """The fourth unseen split: ids 9NN / 0NN, FRESH4 conditions drawn per item (seeded)."""
    return _plan_drawn(
        lang,
        "fresh4",
        FRESH4,
        {
            "en": (EN_MENU_FORMS_FRESH4, EN_FREE_FRESH4, 900, 20261212),
            "ko": (KO_MENU_FORMS_FRESH4, KO_FREE_FRESH4, 0, 20261213),
        },
    )


#: fresh5's ids (see FRESH5): English 180-199 then 352-383, Korean 280-299 then 452-483.
FRESH5_IDS = {
    "en": (*range(180, 200), *range(352, 384)),
    "ko": (*range(280, 300), *range(452, 484)),
}


def _with_ids(items: list[Item], ids: tuple[int, ...]) -> list[Item]:
    """A split whose ids are not one block (fresh5 on): the items renumbered in order."""
    assert len(ids) == len(items)
    return [replace(x, id=f"{i:03d}") for x, i in zip(items, ids, strict=True)]


def plan_fresh5(lang: str) -> list[Item]:
    """The fifth unseen split: FRESH5 conditions drawn per item (seeded), ids FRESH5_IDS."""
    items = _plan_drawn(
        lang,
        "fresh5",
        FRESH5,
        {
            "en": (EN_MENU_FORMS_FRESH5, EN_FREE_FRESH5, 0, 20261215),
            "ko": (KO_MENU_FORMS_FRESH5, KO_FREE_FRESH5, 0, 20261216),
        },
    )
    return _with_ids(items, FRESH5_IDS[lang])


#: fresh6's ids (see FRESH6): English 552-599 then 384-387, Korean 652-699 then 484-487.
FRESH6_IDS = {
    "en": (*range(552, 600), *range(384, 388)),
    "ko": (*range(652, 700), *range(484, 488)),
}


def plan_fresh6(lang: str) -> list[Item]:
    """The sixth unseen split: FRESH6 conditions drawn per item (seeded), ids FRESH6_IDS."""
    items = _plan_drawn(
        lang,
        "fresh6",
        FRESH6,
        {
            "en": (EN_MENU_FORMS_FRESH6, EN_FREE_FRESH6, 0, 20261218),
            "ko": (KO_MENU_FORMS_FRESH6, KO_FREE_FRESH6, 0, 20261219),
        },
    )
    return _with_ids(items, FRESH6_IDS[lang])


@dataclass(frozen=True)
class LangSplit:
    """One language's part of a split whose conditions are drawn per item (mbrola1 on)."""

    voices: tuple[str, ...]
    forms: tuple[str, ...]  # menu phrasings, "{k}" the keyword
    free: tuple[str, ...]  # off-menu sentences
    ids: tuple[int, ...]  # one per item: FRESH_MENUS menu answers, then the sentences
    seed: int  # draws each item's voice, speed, lead-in and noise level
    noise_seed: int  # the line noise of this language's files
    menus: int = FRESH_MENUS  # menu answers (each keyword in turn in each form in turn)


@dataclass(frozen=True)
class DrawnSplit:
    """A split from mbrola1 on: shared speeds, noise levels and lead-ins, and each language's
    own part (``langs``; a language may be absent: that split has no items in it)."""

    speeds: tuple[int, ...]
    noise_rms: tuple[int, ...]
    lead_ms: tuple[int, ...]
    langs: dict[str, LangSplit]


#: Keywords per language (the menus of every split).
KEYWORDS = {"en": EN_KEYWORDS, "ko": KO_KEYWORDS}

#: The first unseen split spoken by MBROLA voices (round 9 of docs/speech.md), made and
#: committed before anything recognised it: all four English MBROLA voices installed
#: (mb-us1 American female, mb-us2 and mb-us3 American male, mb-en1 British male), chosen
#: before any figure on MBROLA speech existed. Speeds, noise levels and lead-ins no split
#: used; phrasings a mix like fresh6's: three the grammar knows ("{k}", "i want to talk to {k}
#: please", "yes give me {k}") and five no split said ("oh {k}", "let me speak to {k}", "it's
#: about {k}", "{k} if you can", "{k} right away"); 12 new sentences. Ids 752-799 then 388-391
#: (free in every split, outside the live tests' 980-999; 7NN/3NN stay English). English
#: only: a Korean part (ids 852-899 then 488-491 kept free for it) is a ``LangSplit`` under
#: "ko" with its own seeds, which leaves the English files and hashes as they are.
MBROLA1 = DrawnSplit(
    speeds=(141, 149, 156, 164, 173),
    noise_rms=(22, 42, 62, 78, 102),
    lead_ms=(710, 840, 970, 1070, 1160),
    langs={
        "en": LangSplit(
            voices=("mb-us1", "mb-us2", "mb-us3", "mb-en1"),
            forms=(
                "{k}",
                "oh {k}",
                "i want to talk to {k} please",
                "let me speak to {k}",
                "it's about {k}",
                "yes give me {k}",
                "{k} if you can",
                "{k} right away",
            ),
            free=(
                "my battery goes flat before lunch",
                "my sister wants to take over my line",
                "the television channels stopped working",
                "i am looking for a cheaper deal",
                "the shop gave me the wrong charger",
                "the account is still in my late husband's name",
                "there is a strange beeping on the line",
                "i keep getting calls from a hidden number",
                "the map says my street has fibre",
                "my dad cannot hear the phone ring",
                "we want to rent a phone for our holiday",
                "what happens to my points if i leave",
            ),
            ids=(*range(752, 800), *range(388, 392)),
            seed=20261221,
            noise_seed=20261222,
        ),
    },
)

#: The first unseen Korean split spoken by MBROLA (round 9 (Korean) of docs/speech.md), made
#: and committed before anything recognised it, after the hn1 table (scripts/mbrola_ko.py) was
#: final: the one Korean MBROLA voice, hn1, at espeak-ng pitches 40, 55, 70 and 85 (chosen
#: before any figure on corpus audio; the seen-data check used 35/50/65/80), speeds, noise
#: levels and lead-ins no split used; phrasings three the grammar knows ("{k}", "{k} 주세요",
#: "네 {k} 주세요") and five no split said; 12 new sentences. Ids 852-899 then 488-491, the
#: ones mbrola1 kept free for Korean (outside the live tests' 980-999). Korean only.
MBROLA2 = DrawnSplit(
    speeds=(136, 139, 146, 177, 182),
    noise_rms=(24, 44, 68, 88, 108),
    lead_ms=(720, 850, 980, 1090, 1190),
    langs={
        "ko": LangSplit(
            voices=("mb-hn1-p40", "mb-hn1-p55", "mb-hn1-p70", "mb-hn1-p85"),
            forms=(
                "{k}",
                "저기 {k} 이요",
                "네 {k} 주세요",
                "{k} 담당자 부탁 해요",
                "{k} 상담 하려고요",
                "{k} 주세요",
                "{k} 부서 로 연결 해 주세요",
                "{k} 좀 알아 보려고요",
            ),
            free=(
                "휴대폰 화면 이 안 켜져요",
                "이번 달 청구서 가 아직 안 왔어요",
                "해외 에서 문자 가 안 가요",
                "아버지 명의 로 가입 하고 싶어요",
                "인터넷 속도 가 너무 느려요",
                "멤버십 포인트 는 어떻게 써요",
                "매장 에 가면 바로 개통 되나요",
                "분실 신고 를 하고 싶어요",
                "자동 이체 날짜 를 바꾸고 싶어요",
                "요금 이 두 번 빠져 나갔어요",
                "와이파이 가 자꾸 끊겨요",
                "데이터 를 더 쓰고 싶어요",
            ),
            ids=(*range(852, 900), *range(488, 492)),
            seed=20261224,
            noise_seed=20261225,
        ),
    },
)

#: The second unseen Korean split spoken by MBROLA hn1 (round 10 (Korean) of docs/speech.md),
#: made and committed before anything recognised it and before any change or experiment of
#: that round: hn1 at espeak-ng pitches 45, 62, 77 and 92 (no split or check used them),
#: speeds, noise levels and lead-ins no split used; phrasings two the grammar knows ("네 {k}",
#: "{k} 주세요") and four no split said; 10 new sentences. Ids 952-979, 396-399, 492-499: the
#: only three-digit ids (what the carrier's 76NNN plays) that no split, the live tests'
#: 980-999 nor another branch's English mbrola2 part (052-099, 392-395) holds; 40 of them, so
#: 30 menu answers (each keyword 6 times, the acceptance's >= 30) and 10 sentences instead of
#: 40 and 12. Korean only.
MBROLA3 = DrawnSplit(
    speeds=(131, 133, 134, 181, 184),
    noise_rms=(26, 32, 46, 64, 96),
    lead_ms=(740, 870, 1010, 1100, 1180),
    langs={
        "ko": LangSplit(
            voices=("mb-hn1-p45", "mb-hn1-p62", "mb-hn1-p77", "mb-hn1-p92"),
            forms=(
                "네 {k}",
                "{k} 하고 싶은데요",
                "여보세요 {k} 요",
                "{k} 주세요",
                "{k} 문제 로 전화 했는데요",
                "{k} 쪽 부탁 드려요",
            ),
            free=(
                "충전기 가 고장 났어요",
                "유심 카드 가 인식 이 안 돼요",
                "통화 중 에 자꾸 끊어져요",
                "가족 결합 할인 을 받고 싶어요",
                "어제 주문 한 휴대폰 이 안 왔어요",
                "번호 이동 은 얼마나 걸려요",
                "약정 기간 이 언제 끝나요",
                "영수증 을 다시 받고 싶어요",
                "집 전화 를 새로 놓고 싶어요",
                "로밍 요금 이 궁금 해요",
            ),
            ids=(*range(952, 980), *range(396, 400), *range(492, 500)),
            seed=20261226,
            noise_seed=20261227,
            menus=30,
        ),
    },
)

#: The second unseen English MBROLA split (round 10 of docs/speech.md), made and committed before
#: any round-10 change or experiment: the same four English MBROLA voices; speeds, noise levels
#: and lead-ins no split used; phrasings a mix: three the round-9 grammar knows ("{k}", "yes i
#: need {k}", "connect me to {k} please", the last two in combinations no split said) and five
#: no split said ("well {k}", "{k} is fine", "i have a question about {k}", "{k} i suppose",
#: "sorry {k}"); 12 new sentences (none names a keyword; each checked against every earlier
#: sentence for near repeats). Ids 052-099 then 392-395: free in every split, outside the live
#: tests' 980-999 and the Korean MBROLA part's 852-899 / 488-491 (the carrier's 76NNN takes
#: three digits: 76052 plays 052.wav). English only, as mbrola1. Committed as "mbrola2" (aa34661)
#: on a branch while the Korean mbrola2 was made on another; renamed when both landed (the
#: audio is the same bytes: the name only labels the items).
MBROLA4 = DrawnSplit(
    speeds=(134, 139, 146, 177, 182),
    noise_rms=(24, 44, 68, 88, 108),
    lead_ms=(720, 850, 980, 1090, 1180),
    langs={
        "en": LangSplit(
            voices=("mb-us1", "mb-us2", "mb-us3", "mb-en1"),
            forms=(
                "{k}",
                "well {k}",
                "yes i need {k}",
                "{k} is fine",
                "i have a question about {k}",
                "connect me to {k} please",
                "{k} i suppose",
                "sorry {k}",
            ),
            free=(
                "i dropped my phone in the bath",
                "the new router came with no instructions",
                "my mother is in hospital this week",
                "where should i send the old modem",
                "our landlord asks who put in the line",
                "the voice on the line sounds like a robot",
                "i would rather get letters by post",
                "my bank says the direct debit failed",
                "how many minutes do i have left",
                "the store closed before i could get there",
                "my car charger melted in the heat",
                "we are expecting a baby in march",
            ),
            ids=(*range(52, 100), *range(392, 396)),
            seed=20261226,
            noise_seed=20261227,
        ),
    },
)

#: Splits defined as ``DrawnSplit`` values, by name.
SPLITS: dict[str, DrawnSplit] = {
    "mbrola1": MBROLA1,
    "mbrola2": MBROLA2,
    "mbrola3": MBROLA3,
    "mbrola4": MBROLA4,
}


def plan_all(menus: int = 60) -> dict[str, list[Item]]:
    """Every split's items, both languages, by the name ``--split`` takes ("old" is the
    tuning and held-out halves, ``menus`` answers per language)."""
    fresh = {
        "fresh": plan_fresh,
        "fresh2": plan_fresh2,
        "fresh3": plan_fresh3,
        "fresh4": plan_fresh4,
        "fresh5": plan_fresh5,
        "fresh6": plan_fresh6,
    }
    return {
        "old": [*plan("en", menus), *plan("ko", menus)],
        **{name: [*f("en"), *f("ko")] for name, f in fresh.items()},
        **{name: [*plan_split(name, "en"), *plan_split(name, "ko")] for name in SPLITS},
    }


def plan_split(name: str, lang: str) -> list[Item]:
    """The items of one language of a ``SPLITS`` split (none when it has no such part)."""
    split = SPLITS[name]
    part = split.langs.get(lang)
    if part is None:
        return []
    cond = Conditions(
        en_voices=part.voices if lang == "en" else (),
        ko_voices=part.voices if lang == "ko" else (),
        speeds=split.speeds,
        noise_rms=split.noise_rms,
        lead_ms=split.lead_ms,
    )
    texts = {lang: (part.forms, part.free, 0, part.seed)}
    items = _plan_drawn(lang, name, cond, texts, part.menus)
    return _with_ids(items, part.ids)


def is_mbrola(voice: str) -> bool:
    """An espeak-ng voice that drives an MBROLA diphone database (``mb-us1``, ``mb/mb-en1``)."""
    return voice.startswith(("mb-", "mb/"))


def mbrola_problems(samples: Sequence[tuple[str, str]], tmp: Path) -> list[str]:
    """Why the MBROLA voices among ``samples`` ((voice, text) pairs) cannot speak here (empty:
    they all can). Each such voice speaks its first text once, through ``speak_text``, the
    path the build uses (so a voice with its own rendering, as a Korean one may have, is
    tried the way it is built): espeak-ng exits non-zero when MBROLA or the voice's database
    is missing, and never falls back to a formant voice."""
    first: dict[str, str] = {}
    for voice, text in samples:
        if is_mbrola(voice):
            first.setdefault(voice, text)
    if not first:
        return []
    if shutil.which("mbrola") is None:
        return [f"mbrola not found (needed by {', '.join(sorted(first))})"]
    problems = []
    for voice, text in sorted(first.items()):
        try:
            speech = speak_text(
                "mbrola-probe", text, voice=voice, speed=160, tmp=tmp, rate=RATE, peak=PEAK
            )
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(f"voice {voice} does not speak ({exc})")
            continue
        if len(speech) < RATE // 10:
            problems.append(f"voice {voice} gave {len(speech)} samples for {text!r}")
    return problems


def revoice(items: list[Item], lang: str, voices: Sequence[str], seed: int) -> list[Item]:
    """``items`` of ``lang`` spoken by ``voices`` instead (one drawn per item, seeded); the
    other languages' items are left out."""
    draw = np.random.default_rng(seed)
    mine = [x for x in items if x.lang == lang]
    picks = draw.integers(0, len(voices), len(mine))
    return [replace(x, voice=voices[int(v)]) for x, v in zip(mine, picks, strict=True)]


def labels_sha256(labels: Sequence[dict[str, object]]) -> str:
    """The hash of a split's labels as the asr_fresh*.sha256 files record it: the labels
    sorted by id, ``json.dumps(sort_keys=True, ensure_ascii=False)``, UTF-8."""
    ordered = sorted(labels, key=lambda x: str(x["id"]))
    text = json.dumps(ordered, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def speak(item: Item, tmp: Path) -> np.ndarray:
    return speak_text(
        str(item.id),
        item.text,
        voice=item.voice,
        speed=item.speed,
        tmp=tmp,
        rate=RATE,
        peak=PEAK,
        sox_options=("-G",),
    )


def render(item: Item, speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Lead silence (the caller hears the prompt end), the words, then 3 s of played silence
    # so the endpointer sees the caller stop while the call is still up.
    parts = [np.zeros(RATE * item.lead_ms // 1000), speech, np.zeros(RATE * 3)]
    return mix(parts, item.noise_rms, rng)


def _parse_revoice(specs: Sequence[str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        lang, _, voices = spec.partition("=")
        names = tuple(v for v in voices.split(",") if v)
        if lang not in KEYWORDS or not names:
            raise SystemExit(f"asr-corpus: --revoice {spec!r}: expected LANG=VOICE[,VOICE...]")
        out[lang] = names
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("var/asr-corpus"))
    parser.add_argument("--menus", type=int, default=60, help="menu utterances per language")
    names = ("old", "fresh", "fresh2", "fresh3", "fresh4", "fresh5", "fresh6", *SPLITS)
    parser.add_argument(
        "--split",
        default="all",
        help=f"build only these splits, comma-separated ({', '.join(names)}; "
        "old = tuning and heldout)",
    )
    parser.add_argument(
        "--revoice",
        action="append",
        default=[],
        metavar="LANG=VOICE,...",
        help="speak LANG's items with these voices instead (seeded draw per item); only that "
        "language is written, and only into another --out than var/asr-corpus",
    )
    parser.add_argument(
        "--sha256",
        action="store_true",
        help="print the built splits' hash lines (files, then labels) as scripts/asr_*.sha256",
    )
    args = parser.parse_args(argv)
    wanted = names if args.split == "all" else tuple(args.split.split(","))
    unknown = [w for w in wanted if w not in names]
    if unknown:
        parser.error(f"unknown split {', '.join(unknown)} (known: {', '.join(names)})")
    revoiced = _parse_revoice(args.revoice)
    if revoiced and args.out.resolve() == Path("var/asr-corpus").resolve():
        parser.error("--revoice writes the same ids with other voices: give another --out")
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            print(f"asr-corpus: {tool} not found; run scripts/host-deps as root", file=sys.stderr)
            return 2
    # One noise generator per split (per split and language from mbrola1 on), so adding a
    # split, or a language to a split, leaves the other files' bytes as they were.
    rng = np.random.default_rng(20261204)
    rngs = {
        "fresh": np.random.default_rng(20261205),
        "fresh2": np.random.default_rng(20261208),
        "fresh3": np.random.default_rng(20261211),
        "fresh4": np.random.default_rng(20261214),
        "fresh5": np.random.default_rng(20261217),
        "fresh6": np.random.default_rng(20261220),
    }
    for name, split in SPLITS.items():
        for lang, part in split.langs.items():
            rngs[f"{name}:{lang}"] = np.random.default_rng(part.noise_seed)
    todo = [x for name, p in plan_all(args.menus).items() if name in wanted for x in p]
    if revoiced:
        todo = [
            x
            for lang, voices in revoiced.items()
            for x in revoice(todo, lang, voices, seed=20261223)
        ]
    args.out.mkdir(parents=True, exist_ok=True)
    labels_path = args.out / "labels.json"
    labels = []
    built = {x.split for x in todo}
    if args.split != "all" and labels_path.exists():
        labels = [x for x in json.loads(labels_path.read_text()) if x["split"] not in built]
    new_labels = []
    with tempfile.TemporaryDirectory() as tmp_name:
        problems = mbrola_problems([(x.voice, x.text) for x in todo], Path(tmp_name))
        if problems:
            for problem in problems:
                print(f"asr-corpus: {problem}", file=sys.stderr)
            print(
                "asr-corpus: MBROLA voices need scripts/host-deps --mbrola (as root: Debian "
                "contrib/non-free packages mbrola and mbrola-<voice>; corpus only)",
                file=sys.stderr,
            )
            return 2
        for item in todo:
            speech = speak(item, Path(tmp_name))
            gen = rngs.get(f"{item.split}:{item.lang}", rngs.get(item.split, rng))
            audio = render(item, speech, gen)
            (args.out / f"{item.id}.wav").write_bytes(encode_wav(Pcm(RATE, audio)))
            done = {
                **asdict(item),
                "speech_ms": len(speech) * 1000 // RATE,
                "total_ms": len(audio) * 1000 // RATE,
            }
            new_labels.append(done)
    labels += new_labels
    labels_path.write_text(json.dumps(labels, indent=1, ensure_ascii=False) + "\n")
    held = sum(1 for x in labels if x["split"] == "heldout")
    fresh = sum(1 for x in labels if x["split"] == "fresh")
    print(f"asr-corpus: {len(labels)} utterances ({held} held out, {fresh} fresh) in {args.out}")
    if args.sha256:
        for x in sorted(new_labels, key=lambda x: str(x["id"])):
            digest = hashlib.sha256((args.out / f"{x['id']}.wav").read_bytes()).hexdigest()
            print(f"{digest}  {x['id']}.wav")
        for name in sorted(built):
            mine = [x for x in new_labels if x["split"] == name]
            if name in SPLITS:  # one line per language: a language added later adds a line
                for lang in sorted({str(x["lang"]) for x in mine}):
                    rows = [x for x in mine if x["lang"] == lang]
                    print(f"{labels_sha256(rows)}  {name}-{lang}-labels(sorted-json)")
            else:
                print(f"{labels_sha256(mine)}  {name}-labels(sorted-json)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
