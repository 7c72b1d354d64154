"""app.py in headless Chromium, used as a person would: record from a (fake) microphone on each
tab, upload a file, read the result in the page, and save screenshots to tests/artifacts/.

Follows shared/BROWSER_TESTING.md: Debian's Chromium driven by Python playwright, the fake
microphone fed from a WAV file that plays once (`%noloop`).
"""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import sync_playwright

from tests.app_server import ARTIFACTS, EXAMPLES, MAX_SECONDS, app_url
from tests.needs import require_whisper_base, whisper_base_present

pytestmark = pytest.mark.slow   # a real Chromium against the app server


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's; never `playwright install`
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FEMALE = EXAMPLES / "ko_female_ava00013.flac"
FAMILY = EXAMPLES / "family_conversation.ogg"
HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")


@pytest.fixture(scope="module")
def url():
    return app_url()


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory):
    """The female example as the WAV that the fake microphone plays: 0.5 s of quiet, the sentence, quiet."""
    audio, sr = sf.read(FEMALE, dtype="float32")
    pad = np.zeros(sr // 2, np.float32)
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    sf.write(path, np.concatenate([pad, audio, pad]), sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def pw():
    with sync_playwright() as p:
        yield p


def _browser(pw, mic_wav=None):
    args = list(FLAGS)
    if mic_wav is not None:
        args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={mic_wav}%noloop"]
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


def _open(browser, url, tab: str | None):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="ko-KR")
    page.goto(url)
    page.wait_for_selector("#stt_btn")
    if tab:
        page.get_by_role("tab", name=re.compile(tab)).click()
    return page


def _fail_on_error_toast(page) -> None:
    toast = page.locator("[data-testid=toast-body].error [data-testid=toast-text]")
    if toast.count():
        pytest.fail(f"the page showed an error: {toast.first.inner_text()}")


def _wait_uploaded(page, audio_id: str) -> None:
    page.wait_for_selector(f"#{audio_id} [data-testid=download-link][href*='/gradio_api/file=']",
                           state="attached", timeout=30_000)


def _upload(page, audio_id: str, path) -> None:
    page.locator(f"#{audio_id}").get_by_role("button", name="Upload file").click()
    page.locator(f"#{audio_id} input[type=file]").set_input_files(str(path))
    _wait_uploaded(page, audio_id)


def _record(page, audio_id: str, seconds: float) -> None:
    root = page.locator(f"#{audio_id}")
    page.wait_for_function(
        f"() => {{ const s = document.querySelector('#{audio_id} select.mic-select');"
        " return s && !s.disabled && s.options.length > 0; }", timeout=20_000)
    root.locator("button.record-button").click()
    page.wait_for_timeout(int(seconds * 1000))
    root.locator("button.stop-button").click()
    _wait_uploaded(page, audio_id)


def _run(page, button_id: str, out_id: str, ready_js: str, timeout: float = 60_000) -> None:
    """Click, wait for the result (or fail fast on an error toast), let the overlay fade."""
    page.click(f"#{button_id}")
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=toast-body].error') || ({ready_js})", timeout=timeout)
    _fail_on_error_toast(page)
    page.wait_for_function(
        f"() => {{ const s = document.querySelector('#{out_id} [data-testid=status-tracker]');"
        " return !s || getComputedStyle(s).opacity === '0'; }", timeout=10_000)


def _plot_img(page, plot_id: str):
    img = page.locator(f"#{plot_id} img")
    assert img.count() == 1, f"#{plot_id} shows no figure"
    box = img.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100, box
    return img


def _shot(page, name: str, full_page: bool = True) -> None:
    """Full page for results; the viewport for errors (the message is a toast fixed to it)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(400)  # toasts and figures fade in
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def _table(page, table_id: str) -> tuple[int, list[list[str]]]:
    """gr.Dataframe is a virtual grid: -> (number of data rows, the rows it has rendered)."""
    n = int(page.get_attribute(f"#{table_id} [role=grid]", "aria-rowcount")) - 1  # minus the header row
    rows = page.eval_on_selector_all(
        f"#{table_id} [role=row].virtual-row",
        "rows => rows.map(r => Array.from(r.querySelectorAll('[role=gridcell]')).map(c => c.innerText.trim()))")
    return n, rows


TEXT_READY = "(() => { const t = document.querySelector('#stt_text textarea'); return t && t.value.length > 0; })()"
COMPARE_READY = "document.querySelectorAll('#stt_compare table tbody tr').length === 2"
GENDER_READY = "document.querySelector('#gender_label [data-testid=label-output-value]') !== null"
# the progress overlay inside #conv_summary shows percentages too: wait for the shares and the table
CONV_READY = ("(() => { const m = document.querySelector('#conv_summary .prose, #conv_summary');"
              " const td = document.querySelector('#conv_turns [data-testid=cell-0-0]');"
              " return m && /여성 \\d/.test(m.innerText) && td && td.innerText.trim().length > 0; })()")


def test_record_on_every_tab(pw, url, mic_wav):
    """Speak one Korean sentence into the microphone on each tab and read each result."""
    browser = _browser(pw, mic_wav)
    try:
        page = _open(browser, url, None)
        _record(page, "stt_audio", 7.5)
        _run(page, "stt_btn", "stt_text", TEXT_READY)
        _shot(page, "stt_microphone")
        text = page.input_value("#stt_text textarea")
        assert HANGUL.search(text), text
        info = page.inner_text("#stt_info")
        assert "0:0" in info, info  # the duration
        if whisper_base_present():   # the best engine answers: Whisper base, named with its measured CER
            assert "Whisper base (OpenAI, 74M) · CER" in info and "어둠" in text, (info, text)
        else:
            assert "DeepSpeech2" in info, info
        seconds = float(re.search(r"길이 (\d+):(\d+\.\d)", info).group(2))
        assert 6.0 <= seconds <= 9.5, info  # the recording holds the whole sentence
        _plot_img(page, "stt_plot")
        assert page.locator("#stt_files a, #stt_files [download]").count() >= 2

        # a new page, so that the fake microphone plays the sentence from its start again
        page.close()
        page = _open(browser, url, "성별")
        _record(page, "gender_audio", 7.5)
        _run(page, "gender_btn", "gender_label", GENDER_READY)
        _shot(page, "gender_microphone")
        top = page.inner_text("#gender_label [data-testid=label-output-value]")
        assert "female" in top, top  # the fake microphone plays a woman's voice
        _plot_img(page, "gender_plot")

        page.close()
        page = _open(browser, url, "대화")
        _record(page, "conv_audio", 7.5)
        _run(page, "conv_btn", "conv_summary", CONV_READY)
        _shot(page, "conversation_microphone")
        summary = page.inner_text("#conv_summary")
        assert re.search(r"여성[^%]*\d+(\.\d)?%", summary), summary
        n, rows = _table(page, "conv_turns")
        assert n >= 1 and rows[0][4] == "여성 female", rows  # one woman speaking
        _plot_img(page, "conv_plot")
    finally:
        browser.close()


def test_compare_engines_side_by_side(pw, url):
    """Whisper preselected; tick 'both engines', upload, and read both transcripts with their times."""
    require_whisper_base()   # fails when absent, unless SPEECH_TEST_NO_WHISPER=1 (tests/needs.py)
    browser = _browser(pw)
    try:
        page = _open(browser, url, None)
        chosen = page.input_value("#stt_engine input")
        assert chosen.startswith("Whisper base (OpenAI, 74M) · CER"), chosen   # first, preselected
        page.locator("#stt_compare_box input[type=checkbox]").check()
        _upload(page, "stt_audio", FEMALE)
        _run(page, "stt_btn", "stt_compare", COMPARE_READY, timeout=120_000)
        _shot(page, "stt_compare")
        rows = page.eval_on_selector_all(
            "#stt_compare table tbody tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))")
        assert len(rows) == 2, rows
        assert rows[0][0].startswith("Whisper base") and rows[1][0].startswith("DeepSpeech2"), rows
        assert rows[0][1] == page.input_value("#stt_text textarea").strip() and HANGUL.search(rows[1][1]), rows
        assert all(re.fullmatch(r"\d+\.\d\d s", r[2]) for r in rows), rows
    finally:
        browser.close()


def test_upload_family_recording(pw, url):
    """The two-minute family recording: shares, timeline and per-turn table in the page."""
    truth = json.loads((EXAMPLES / "family_conversation.json").read_text(encoding="utf-8"))
    browser = _browser(pw)
    try:
        page = _open(browser, url, "대화")
        _upload(page, "conv_audio", FAMILY)
        _run(page, "conv_btn", "conv_summary", CONV_READY, timeout=90_000)
        _shot(page, "conversation_upload")
        summary = page.inner_text("#conv_summary")
        female = float(re.search(r"여성[^%\d]*(\d+(?:\.\d+)?)%", summary).group(1)) / 100
        assert abs(female - truth["female_share"]) < 0.15, (summary, truth["female_share"])
        n, rows = _table(page, "conv_turns")
        assert len(truth["turns"]) // 2 <= n <= 3 * len(truth["turns"]), n
        assert rows and {r[4] for r in rows} == {"여성 female", "남성 male"}, rows
        assert summary.startswith("부모 비율"), summary             # the parents' ratio comes first
        n, speakers = _table(page, "conv_speaker_table")
        assert n == 2 and [r[:2] for r in speakers] == [["S1", "여성 female"], ["S2", "남성 male"]], speakers
        _plot_img(page, "conv_plot")
        assert page.locator("#conv_files a, #conv_files [download]").count() >= 5
    finally:
        browser.close()


def test_gender_tab_two_voices(pw, url, tmp_path):
    """Two voices on the gender tab: the page says so and points to the conversation tab."""
    two = np.concatenate([sf.read(str(FEMALE), dtype="float32")[0], np.zeros(8000, np.float32),
                          sf.read(str(EXAMPLES / "ko_male_emh00003.flac"), dtype="float32")[0]])
    path = tmp_path / "two_voices.wav"
    sf.write(str(path), two, 16000, subtype="PCM_16")
    browser = _browser(pw)
    try:
        page = _open(browser, url, "성별")
        _upload(page, "gender_audio", path)
        _run(page, "gender_btn", "gender_label", GENDER_READY)
        page.wait_for_function("() => /voices are present/.test(document.querySelector('#gender_info').innerText)",
                               timeout=10_000)
        _shot(page, "gender_two_voices")
        info = page.inner_text("#gender_info")
        assert "목소리가 2개" in info and "Conversation" in info, info
    finally:
        browser.close()


def test_upload_errors_show_in_page(pw, url, tmp_path):
    """A file that is not audio and a file over the length limit: a clear message, no traceback."""
    bad = tmp_path / "녹음.mp3"
    bad.write_bytes(b"this is not audio at all" * 50)
    browser = _browser(pw)
    try:
        page = _open(browser, url, None)
        page.locator("#stt_audio").get_by_role("button", name="Upload file").click()
        page.locator("#stt_audio input[type=file]").set_input_files(str(bad))
        page.wait_for_timeout(500)  # the upload itself may already be refused in the browser
        page.click("#stt_btn")
        toast = page.locator("[data-testid=toast-body].error [data-testid=toast-text]").first
        toast.wait_for(timeout=20_000)
        message = toast.inner_text()
        assert "Traceback" not in message
        assert "오디오" in message or "audio" in message.lower(), message
        _shot(page, "stt_error_unreadable", full_page=False)

        page.close()
        page = _open(browser, url, None)
        _upload(page, "stt_audio", FAMILY)
        page.click("#stt_btn")
        toast = page.locator("[data-testid=toast-body].error [data-testid=toast-text]").first
        toast.wait_for(timeout=20_000)
        message = toast.inner_text()
        assert "너무 깁니다" in message and f"{MAX_SECONDS // 60}:00 " in message, message
        _shot(page, "stt_error_too_long", full_page=False)
    finally:
        browser.close()


# -- what a new user tripped on (issue 14) -------------------------------------------------------

ERROR_TOAST = "[data-testid=toast-body].error [data-testid=toast-text]"


def _error_toast(page, timeout: float = 30_000) -> str:
    toast = page.locator(ERROR_TOAST).first
    toast.wait_for(timeout=timeout)
    message = toast.inner_text()
    assert "Traceback" not in message, message
    return message


def _short_clip(path):
    """The first 0.1 s of a spoken word."""
    audio, sr = sf.read(FEMALE, dtype="float32")
    onset = int(np.argmax(np.abs(audio) > 0.1 * np.abs(audio).max()))
    sf.write(path, audio[onset:onset + sr // 10], sr, subtype="PCM_16")
    return path


def test_an_error_has_its_title_and_clears_the_old_result(pw, url, tmp_path):
    """Items 1 and 2: a good transcript, then a file without usable speech: the message shows its
    bilingual title, and the old transcript, info line and downloads are gone."""
    browser = _browser(pw)
    try:
        page = _open(browser, url, None)
        _upload(page, "stt_audio", FEMALE)
        _run(page, "stt_btn", "stt_text", TEXT_READY)
        assert page.input_value("#stt_text textarea") and "CER" in page.inner_text("#stt_info")  # engine label
        page.locator("#stt_audio").get_by_role("button", name=re.compile("Clear|지우기")).first.click()
        _upload(page, "stt_audio", _short_clip(tmp_path / "short.wav"))
        page.click("#stt_btn")
        message = _error_toast(page)
        assert message.startswith("오디오 문제 · Audio problem — "), message
        page.wait_for_function("() => document.querySelector('#stt_text textarea').value === ''", timeout=10_000)
        _shot(page, "stt_error_clears_result")
        assert page.inner_text("#stt_info").strip() == ""
        assert page.locator("#stt_files a, #stt_files [download]").count() == 0
    finally:
        browser.close()


def test_silence_advice_for_an_upload(pw, url, tmp_path):
    """Item 3, a file: no advice about a microphone."""
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, np.int16), 16000, subtype="PCM_16")
    browser = _browser(pw)
    try:
        page = _open(browser, url, "성별")
        _upload(page, "gender_audio", silent)
        page.click("#gender_btn")
        message = _error_toast(page)
        _shot(page, "gender_silent_upload", full_page=False)
        assert "파일에 소리가 없습니다" in message and "마이크" not in message, message
    finally:
        browser.close()


def test_silence_advice_for_a_recording(pw, url, tmp_path):
    """Item 3, the microphone (fed two seconds of digital silence): advice about the microphone."""
    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(2 * 44100, np.int16), 44100, subtype="PCM_16")
    browser = _browser(pw, silent)
    try:
        page = _open(browser, url, "성별")
        _record(page, "gender_audio", 2.5)
        page.click("#gender_btn")
        message = _error_toast(page)
        _shot(page, "gender_silent_microphone", full_page=False)
        assert "마이크" in message and "파일" not in message, message
    finally:
        browser.close()


@pytest.mark.parametrize("tab,audio_id,button_id,files_id", [
    (None, "stt_audio", "stt_btn", "stt_files"), ("성별", "gender_audio", "gender_btn", None),
    ("대화", "conv_audio", "conv_btn", "conv_files")])
def test_a_tenth_of_a_second_is_too_short_on_every_tab(pw, url, tmp_path, tab, audio_id, button_id, files_id):
    """Item 4: one rule, one message, no empty downloads."""
    browser = _browser(pw)
    try:
        page = _open(browser, url, tab)
        _upload(page, audio_id, _short_clip(tmp_path / "tenth.wav"))
        page.click(f"#{button_id}")
        message = _error_toast(page)
        _shot(page, f"{audio_id.split('_')[0]}_too_short", full_page=False)
        assert message.startswith("오디오 문제 · Audio problem — ") and "파일이 너무 짧습니다" in message, message
        assert "too short (0.10 s)" in message, message
        if files_id:
            assert page.locator(f"#{files_id} a, #{files_id} [download]").count() == 0
    finally:
        browser.close()


def _overflow(page) -> list[str]:
    """Elements wider than the viewport (what a phone would scroll sideways to see)."""
    return page.evaluate(
        """() => { const w = document.documentElement.clientWidth, out = [];
        for (const el of document.querySelectorAll('body *')) {
          const r = el.getBoundingClientRect();
          if (r.width > 0 && r.height > 0 && (r.right > w + 1 || r.left < -1) && getComputedStyle(el).position !== 'fixed'
              && !el.closest('[role=grid], .table-wrap, .tab-container, .scroll-hide')) out.push(el.tagName + '#' + el.id + '.' + el.className);
        }
        return out.concat(document.documentElement.scrollWidth > w ? ['page scrolls sideways: ' + document.documentElement.scrollWidth] : []); }""")


def test_phone_width(pw, url):
    """Item 12, and items 6-8 in the page: at 390 px nothing runs off the side on any tab; turn
    texts wrap; the pitch panel and the timeline legend are drawn (see the screenshots)."""
    browser = _browser(pw)
    try:
        page = browser.new_page(viewport={"width": 390, "height": 844}, locale="ko-KR", device_scale_factor=2)
        page.goto(url)
        page.wait_for_selector("#stt_btn")
        assert _overflow(page) == []
        # all three tabs on screen (not behind a "..." menu), none of their labels cut off
        tabs = page.eval_on_selector_all("[role=tab]", "ts => ts.filter(t => t.offsetParent !== null)"
                                                       ".map(t => [t.innerText, t.scrollHeight <= t.clientHeight + 1])")
        assert len(tabs) == 3 and all(whole for _, whole in tabs), tabs
        _upload(page, "stt_audio", FEMALE)
        _run(page, "stt_btn", "stt_text", TEXT_READY)
        _shot(page, "phone_stt")
        assert _overflow(page) == []

        page.get_by_role("tab", name=re.compile("성별")).click()
        _upload(page, "gender_audio", FEMALE)
        _run(page, "gender_btn", "gender_label", GENDER_READY)
        _shot(page, "phone_gender")
        assert _overflow(page) == []

        page.get_by_role("tab", name=re.compile("대화")).click()
        n, rows = _table(page, "conv_turns")
        assert n == 0 and not any(re.fullmatch(r"\d", h) for h in
                                  page.eval_on_selector_all("#conv_turns [role=columnheader]",
                                                            "hs => hs.map(h => h.innerText.trim())")), "placeholder headers"
        _upload(page, "conv_audio", FEMALE)
        page.check("#conv_text input")
        _run(page, "conv_btn", "conv_summary", CONV_READY)
        _shot(page, "phone_conversation")
        assert _overflow(page) == []
        # the transcript cell wraps: all of its text is inside the cell
        clipped = page.eval_on_selector_all(
            "#conv_turns [role=gridcell]", "cs => cs.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.innerText)")
        assert clipped == [], clipped
    finally:
        browser.close()
