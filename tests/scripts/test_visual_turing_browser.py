"""The Visual Turing Test app in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
driven by selenium, with the driver path given so that selenium-manager never downloads anything.

Without the browser the test is skipped, except where ``GDA_REQUIRE_BROWSER=1`` (``.ci/run`` sets it), where it
fails.
"""

import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from common.data import make_brain_mr
from common.evaluation.visual_turing import make_study
from common.evaluation.visual_turing_score import score_study
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _browser_or_skip():
    problems = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        problems.append("selenium is not installed (pip install -e '.[test]')")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.path.isfile(path):
            problems.append(f"{path} is missing (apt-get install {package})")
    if problems:
        message = "no headless browser: " + "; ".join(problems)
        if os.environ.get("GDA_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (GDA_REQUIRE_BROWSER=1)")
        pytest.skip(message)


@pytest.fixture()
def driver(tmp_path):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path / "dl")})
    yield browser
    browser.quit()


def _study(tmp_path):
    real = make_brain_mr(
        tmp_path / "real", num_patients=2, cases_per_patient=2, image_size=32, split_fractions=(1, 0, 0)
    )
    rng = np.random.default_rng(0)
    (tmp_path / "syn" / "images").mkdir(parents=True)
    entries = []
    for i in range(4):
        nib.save(nib.Nifti1Image(rng.random((32, 32)).astype(np.float32), np.eye(4)), tmp_path / f"syn/images/s{i}.nii")
        entries.append({"image": f"images/s{i}.nii", "class": i % 2, "synthetic": True})
    (tmp_path / "syn" / "datalist.json").write_text(json.dumps({"training": entries}))
    return make_study(real, tmp_path / "syn" / "datalist.json", tmp_path / "study", 4, 4, classes=True, channel=1)


def test_reader_answers_every_case_reloads_exports_and_the_score_matches(driver, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    made = _study(tmp_path)
    key = json.loads(Path(made["key"]).read_text())
    n = len(key["cases"])
    # the test's own answers: origin, class (0 non-tumour, 1 tumour), confidence (None: not rated)
    plan = [
        ("real", 1, 5),
        ("synthetic", 0, None),
        ("synthetic", 1, 2),
        ("real", 0, None),
        ("real", 1, 4),
        ("synthetic", 1, None),
        ("real", 0, 1),
        ("synthetic", 0, 3),
    ]

    def by_id(element_id):
        return driver.find_element(By.ID, element_id)

    def keys(text):
        ActionChains(driver).send_keys(text).perform()

    def label():
        return by_id("case-label").text

    driver.get(Path(made["app"]).as_uri())
    by_id("start").click()
    assert "enter your name" in by_id("start-message").text  # a reader name is required
    by_id("reader-name").send_keys("Dr Test")
    by_id("start").click()
    assert label() == f"Case 1 of {n}"

    # the first case: the image is drawn (not uniform) and the controls are visible
    image = by_id("case-image")
    assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) == 256
    shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L"), dtype=np.float32)
    ratio = driver.execute_script("return window.devicePixelRatio")
    r = image.rect
    x0, y0 = int(r["x"] * ratio), int(r["y"] * ratio)
    region = shot[y0 : y0 + int(r["height"] * ratio), x0 : x0 + int(r["width"] * ratio)]
    assert region.shape[0] > 100 and region.shape[1] > 100
    assert region.std() > 10 and len(np.unique(region)) > 20
    for control in ("answer-real", "answer-synthetic", "class-0", "class-1", "confidence-3", "next", "back"):
        assert by_id(control).is_displayed()

    # Next without an answer does not advance
    by_id("next").click()
    assert label() == f"Case 1 of {n}" and "Answer both" in by_id("case-message").text

    # cases 1-4 by clicking
    for origin, cls, conf in plan[:4]:
        by_id(f"answer-{origin}").click()
        by_id(f"class-{cls}").click()
        if conf is not None:
            by_id(f"confidence-{conf}").click()
        by_id("next").click()
    assert label() == f"Case 5 of {n}"
    assert by_id("progress-text").text == f"4 / {n} answered"

    # reload midway: nothing lost, the reader continues where they were
    driver.refresh()
    assert label() == f"Case 5 of {n}"
    assert by_id("progress-text").text == f"4 / {n} answered"
    keys("\ue012")  # ArrowLeft: back to case 4, its answers still selected
    assert label() == f"Case 4 of {n}"
    assert by_id("answer-real").get_attribute("aria-pressed") == "true"
    assert by_id("class-0").get_attribute("aria-pressed") == "true"
    # change an answer with the keyboard, then go on
    keys("s")
    plan[3] = ("synthetic", 0, None)
    keys("\ue007")  # Enter

    # cases 5-8 by keyboard: R/S, T/N (tumour / non-tumour), 1-5, Enter
    for origin, cls, conf in plan[4:]:
        text = origin[0] + ("t" if cls == 1 else "n") + ("" if conf is None else str(conf))
        keys(text)
        keys("\ue007")
    assert by_id("screen-done").is_displayed()

    exported = json.loads(by_id("export-json").get_attribute("value"))
    assert exported["study_id"] == key["study_id"] and exported["reader"] == "Dr Test"
    got = [(a["origin"], a["class"], a["confidence"]) for a in exported["answers"]]
    assert got == plan
    assert [a["case"] for a in exported["answers"]] == [c["case"] for c in key["cases"]]

    # the download link gives the same file
    by_id("download-json").click()
    deadline, files = time.time() + 10, []
    while time.time() < deadline:
        files = list((tmp_path / "dl").glob("*.json")) if (tmp_path / "dl").is_dir() else []
        if files:
            break
        time.sleep(0.1)
    assert len(files) == 1 and files[0].name == f"vtt_answers_{key['study_id']}_Dr_Test.json"
    assert json.loads(files[0].read_text()) == exported
    # the page made no request: everything it shows is inside it
    entries = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(e.startswith(("data:", "blob:")) for e in entries)

    # the score equals what the answers above imply
    result = score_study([files[0]], made["key"], tmp_path / "scores")
    truth = [(c["origin"], c["class"]) for c in key["cases"]]
    origin_counts = [[0, 0], [0, 0]]
    class_counts = [[0, 0], [0, 0]]
    for (t_origin, t_class), (a_origin, a_class, _) in zip(truth, plan):
        o = ["real", "synthetic"]
        origin_counts[o.index(t_origin)][o.index(a_origin)] += 1
        class_counts[t_class][a_class] += 1
    scores = result["readers"]["Dr Test"]
    assert scores["origin"]["counts"] == origin_counts
    assert scores["class"]["counts"] == class_counts
    correct = sum(t[0] == a[0] for t, a in zip(truth, plan))
    assert scores["origin"]["accuracy"]["accuracy"] == correct / n
    rated = [c for _, _, c in plan if c is not None]
    assert scores["confidence"]["mean"] == pytest.approx(np.mean(rated))

    # a study without classes or confidence shows neither question
    plain = make_study(
        tmp_path / "real" / "datalist.json",
        tmp_path / "syn" / "datalist.json",
        tmp_path / "plain",
        2,
        2,
        channel=1,
        confidence=False,
    )
    driver.get(Path(plain["app"]).as_uri())
    by_id("reader-name").send_keys("Dr Test")
    by_id("start").click()
    assert by_id("answer-real").is_displayed()
    assert not by_id("q-class").is_displayed() and not by_id("q-confidence").is_displayed()
    hidden_shown = (
        "return [...document.querySelectorAll('[hidden]')].filter(e => getComputedStyle(e).display !== 'none').length"
    )
    assert driver.execute_script(hidden_shown) == 0


def test_a_missing_browser_skips_locally_and_fails_where_required(monkeypatch, tmp_path):
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.delenv("GDA_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-chromium is missing"):
        module._browser_or_skip()
    monkeypatch.setenv("GDA_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="GDA_REQUIRE_BROWSER=1"):
        module._browser_or_skip()
