"""Sampling on request (hdd.app.serving) and the web app (hdd.app) on a tiny trained
conditional cascade: requests checked before anything runs, chains compiled once per
setting, the /generate endpoint through gradio_client, what plain HTTP requests cannot do
(load a workdir the server does not offer, upload, pass a non-number), the files the
server keeps until it exits, and the page in Debian's Chromium (headless, driven by
selenium through Debian's chromedriver; nothing downloads a browser): 64 images in a gallery
that scrolls down, never sideways, a grid of exactly the rows and columns they need, and
the labelled chain.

Screenshots go to $HDD_APP_SCREENSHOTS (default: the test's tmp directory); the README's is
taken by scripts/app_screenshot.py."""
import dataclasses
import glob
import json
import os
import pathlib
import shutil
import signal
import socket
import time
import uuid

import numpy as np
import pytest
import requests

from helpers import COMPILATION_CACHE, BackgroundRun, copy_workdir, free_port

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, trained_cascade):
  """A copy of the session's tiny conditional cascade (4x4 -> 8x8, 2 classes), trained 4
  steps per stage."""
  return copy_workdir(trained_cascade[1], str(tmp_path_factory.mktemp("app")))


@pytest.fixture(scope="module")
def served(workdir):
  from hdd.app import serving
  return serving.Served.load(workdir)


def test_served_describes_the_cascade_and_its_defaults(served):
  from hdd.app import serving
  assert [stage.name for stage in served.models] == ["stage1", "stage2"]
  assert served.num_classes == 2
  assert served.defaults() == serving.Request(sampler="ddim", steps=(5, 5), handover="mix",
                                              gamma=0.3, start_step=-1, guidance=2.0,
                                              label=-1, seed=0, num_images=16)


def test_a_setting_compiles_once_and_seeds_and_classes_do_not_recompile(served):
  from hdd.app import serving
  first = served.generate(serving.Request(num_images=6, label=1, guidance=1.0, seed=3))
  assert first.images.shape == (6, 8, 8, 1) and first.images.dtype == np.uint8
  assert first.outputs["stage1"].shape == (6, 4, 4, 1)
  np.testing.assert_array_equal(first.labels, np.ones(6))
  compiled = len(served.compiled)
  again = served.generate(serving.Request(num_images=6, label=0, guidance=1.0, seed=4))
  assert len(served.compiled) == compiled
  assert all(stage["compile_seconds"] < 0.05 for stage in again.report["stages"])
  same = served.generate(serving.Request(num_images=6, label=1, guidance=1.0, seed=3))
  np.testing.assert_array_equal(same.images, first.images)   # Seeded: reproducible.
  other = served.generate(serving.Request(num_images=6, label=1, guidance=1.0, seed=3,
                                          steps=(3, 5)))
  assert len(served.compiled) == compiled + 1   # Another stage-1 chain; stage 2's is the same.
  assert other.report["stages"][1]["compile_seconds"] < 0.05


def test_truncate_runs_only_the_steps_below_t_star(served):
  from hdd.app import serving
  generated = served.generate(serving.Request(num_images=2, handover="truncate", start_step=9,
                                              steps=(5, 40), guidance=1.0))
  # 40-step DDIM on stage 2 from t* = 9: steps 9, 8, ..., 0, each twice under guidance.
  assert generated.report["stages"][1]["network_evaluations_per_image"] == 2 * 10
  unguided = served.generate(serving.Request(num_images=2, handover="truncate", start_step=9,
                                             steps=(5, 40), guidance=0.0))
  assert unguided.report["stages"][1]["network_evaluations_per_image"] == 10
  for handover in ("truncate", "mix"):   # DPM-Solver++(2M) under both rules and guidance.
    solved = served.generate(serving.Request(sampler="dpm_solver_2m", num_images=2,
                                             handover=handover, start_step=9, steps=(5, 40),
                                             guidance=1.0))
    assert solved.report["stages"][1]["sampler"] == "dpm_solver_2m"
    assert solved.report["stages"][1]["network_evaluations_per_image"] == (
        2 * 10 if handover == "truncate" else 2 * 40)


@pytest.mark.parametrize("fields, message", [
    ({"num_images": 0}, "number of images 0: must lie in [1, 64]"),
    ({"num_images": 65}, "number of images 65: must lie in [1, 64]"),
    ({"steps": (5, 99)}, "stage2 steps 99: must lie in [0, diffusion.num_steps=40]"),
    ({"label": 2}, "class 2: must lie in [0, model.num_classes=2) or be -1"),
    ({"sampler": "euler"}, "sampler 'euler': must be one of ('ddpm', 'ddim'"),
    ({"gamma": 1.5}, "gamma 1.5: must lie in [0, 1]"),
    ({"handover": "truncate", "start_step": 40},
     "stage2 t* 40: must lie in [0, diffusion.num_steps=40) or be -1"),
    ({"handover": "sideways"}, "hand-over 'sideways': must be one of ('mix', 'truncate'"),
    ({"guidance": -1.0}, "guidance weight -1.0: must be >= 0"),
    ({"seed": -2}, "seed -2: must lie in [0, 2**32)"),
    ({"steps": (5,)}, "1 step counts for 2 stages"),
])
def test_out_of_range_requests_are_refused_by_name(served, fields, message):
  from hdd.app import serving
  with pytest.raises(serving.RequestError, match=None) as error:
    served.config_for(serving.Request(**fields))
  assert message in str(error.value) and "\n" not in str(error.value)


def test_a_single_model_is_served_too(tmp_path, trained_ddpm):
  from hdd.app import serving
  workdir = copy_workdir(trained_ddpm[1], str(tmp_path))
  served = serving.Served.load(workdir)
  assert [stage.name for stage in served.models] == ["model"]
  generated = served.generate(serving.Request(num_images=3, steps=(4,)))
  assert generated.images.shape == (3, 8, 8, 1) and generated.labels is None
  assert generated.report["stages"][0]["network_evaluations_per_image"] == 4
  drawn = serving.draw(generated)
  assert drawn["stages"] is drawn["grid"]   # One stage: nothing to put side by side.
  with pytest.raises(serving.RequestError, match="need a class-conditional model"):
    served.config_for(serving.Request(guidance=1.0))
  with pytest.raises(serving.RequestError, match=r"^model steps 99: must lie in \[0, "
                     r"diffusion.num_steps=50\]"):
    served.config_for(serving.Request(steps=(99,)))


def test_workdirs_that_cannot_be_served(tmp_path, workdir):
  from hdd.app import serving
  with pytest.raises(serving.RequestError, match="no directory"):
    serving.Served.load(str(tmp_path / "missing"))
  with pytest.raises(serving.RequestError, match="holds no config.json: it is not a trained"):
    serving.Served.load(str(tmp_path))
  (tmp_path / "config.json").write_text('{"labels": [1, 2]}')
  with pytest.raises(serving.RequestError, match="not the config of a diffusion model"):
    serving.Served.load(str(tmp_path))
  # A config whose model differs from the checkpoints': refused by name, nothing restored.
  shutil.copytree(os.path.join(workdir, "stage1"), tmp_path / "other" / "stage1")
  shutil.copytree(os.path.join(workdir, "stage2"), tmp_path / "other" / "stage2")
  text = open(os.path.join(workdir, "config.json")).read()
  (tmp_path / "other" / "config.json").write_text(text.replace('"base_channels": 8',
                                                               '"base_channels": 16'))
  from common.errors import UserError
  with pytest.raises(UserError, match="was written by a different model configuration"):
    serving.Served.load(str(tmp_path / "other"))


def test_saved_outputs_and_animation(served, tmp_path):
  from PIL import Image

  from hdd.app import serving
  generated = served.generate(serving.Request(num_images=3, seed=1))
  drawn = serving.draw(generated)
  paths = serving.save_outputs(generated, drawn, str(tmp_path))
  with np.load(paths["samples.npz"]) as saved:
    np.testing.assert_array_equal(saved["images"], generated.images)
    np.testing.assert_array_equal(saved["stage_stage1"], generated.outputs["stage1"])
    np.testing.assert_array_equal(saved["labels"], [0, 1, 0])
  # 5 DDIM steps per stage recorded every step: 6 frames each (the start and 5 states),
  # every frame 8 px magnified to 64; the last one held 8 times as long in the GIF (which
  # merges repeated frames into one).
  assert len(generated.animation) == 6 + 6
  assert {frame.shape for frame in generated.animation} == {(64, 64, 1)}
  gif = Image.open(paths["chain.gif"])
  assert 1 < gif.n_frames <= 12 and gif.size == (64, 64)
  gif.seek(gif.n_frames - 1)
  assert gif.info["duration"] >= 8 * 120
  np.testing.assert_array_equal(np.asarray(Image.open(paths["grid.png"]))[..., None],
                                drawn["grid"])
  # A row per class, as many columns as a class has images: classes 0 (2), 1 (1), 8 px
  # tiles with 2 px padding drawn 8 times as large.
  assert drawn["grid"].shape[:2] == (8 * (2 + 2 * 10), 8 * (2 + 2 * 10))
  assert drawn["stages"].shape[1] == 8 * (2 + 6 * 10)   # 3 images x 2 stages, 8 px drawn at 64.
  # The first image's chain: per stage a header of two text lines over its 6 frames.
  chain = drawn["chain"]
  assert chain.shape[:2] == (2 * (2 * 16 + 8 * (2 + 10)), 8 * (2 + 6 * 10))
  assert (chain[:32] < 128).any() and (chain[:32] == 255).mean() > 0.5


@dataclasses.dataclass
class Running:
  url: str
  process: BackgroundRun
  tmp: str      # its TMPDIR: the app's output folder and Gradio's files are made there
  other: str    # the further workdir it offers (--workdirs)


@pytest.fixture(scope="module")
def running(workdir, tmp_path_factory):
  """`python -m hdd.app` on a free port, offering a copy of the workdir too and keeping the
  files of the last 2 requests, until the module's tests are done (or one stops it)."""
  root = tmp_path_factory.mktemp("server")
  other = str(shutil.copytree(workdir, root / "copy"))
  tmp = root / "tmp"
  tmp.mkdir()
  port = free_port()
  env = dict(os.environ, HDD_COMPILATION_CACHE=COMPILATION_CACHE, TMPDIR=str(tmp),
             GRADIO_TEMP_DIR=str(tmp / "gradio"))
  process = BackgroundRun(["-m", "hdd.app", f"--workdir={workdir}", f"--port={port}",
                           f"--workdirs={other}", "--keep_outputs=2"], env, merge_stderr=True)
  deadline = time.time() + 120
  while time.time() < deadline:
    assert process.poll() is None, process.output()[0]
    try:
      socket.create_connection(("127.0.0.1", port), timeout=1).close()
      break
    except OSError:
      time.sleep(0.5)
  yield Running(f"http://127.0.0.1:{port}/", process, str(tmp), other)
  if process.poll() is None:
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(running):
  return running.url


def queue_call(server: str, api_name: str, data: list) -> dict:
  """The event `api_name` called as the page calls it, in plain HTTP (NaN and Infinity
  as Python's json writes them): the message that ends it."""
  dependencies = requests.get(server + "config", timeout=30).json()["dependencies"]
  fn_index = next(d["id"] for d in dependencies if d["api_name"] == api_name)
  session = uuid.uuid4().hex
  requests.post(server + "gradio_api/queue/join", timeout=30,
                data=json.dumps({"fn_index": fn_index, "data": data, "session_hash": session}),
                headers={"Content-Type": "application/json"}).raise_for_status()
  with requests.get(server + "gradio_api/queue/data", params={"session_hash": session},
                    stream=True, timeout=120) as events:
    for line in events.iter_lines(decode_unicode=True):
      message = json.loads(line[len("data:"):]) if line.startswith("data:") else {}
      if message.get("msg") == "process_completed":
        return message
  raise AssertionError(f"{api_name} did not complete")


def timing_row(markdown: str, stage: str) -> dict:
  """{column title: cell} of a stage's row of the timing table."""
  lines = [line for line in markdown.splitlines() if line.startswith("|")]
  cells = lambda line: [cell.strip() for cell in line.strip("|").split("|")]
  return next(dict(zip(cells(lines[0]), cells(line))) for line in lines[2:]
              if cells(line)[0] == stage)


def test_generate_endpoint_returns_the_requested_images(server):
  from gradio_client import Client
  from gradio_client.exceptions import AppError
  from PIL import Image
  client = Client(server, verbose=False)
  # sampler, steps of stages 1-4, hand-over, gamma, t*, w, class, seed, number of images.
  gallery, grid, stages, chain, timing, downloads = client.predict(
      "ddim", 5, 5, 0, 0, "truncate", 0.3, 20, 1.0, 1, 7, 5, api_name="/generate")
  assert len(gallery) == 5 and {item["caption"] for item in gallery} == {"class 1"}
  assert {Image.open(item["image"]).size for item in gallery} == {(8, 8)}
  # The grid: one class, one row of its 5 images (8 px and 2 px padding, drawn at 64).
  assert Image.open(grid).size == (8 * (2 + 5 * 10), 8 * (2 + 1 * 10))
  # The chain: stage 1's 6 frames (noise, 5 steps), stage 2's 5 (t* = 20, then 16, 8, 0, x0),
  # each stage under two lines of text.
  assert Image.open(chain).size == (8 * (2 + 6 * 10), 2 * (2 * 16 + 8 * (2 + 10)))
  # DDIM-5 of T = 40 visits 32, 24, 16, 8, 0; truncated at t* = 20: 20, 16, 8, 0, x2 guided.
  stage2 = timing_row(timing, "stage2")
  assert (stage2["size"], stage2["sampler"], stage2["evals/img"]) == ("8", "ddim", "8")
  assert timing_row(timing, "total")["sample s (5 img)"] != "-"
  assert sorted(os.path.basename(p) for p in downloads) == ["chain.gif", "grid.png",
                                                             "samples.npz"]
  with np.load(downloads[1]) as saved:
    assert saved["images"].shape == (5, 8, 8, 1)
  with pytest.raises(AppError, match=r"stage1 steps 99: must lie in \[0, diffusion.num_steps=40\]"):
    client.predict("ddim", 99, 5, 0, 0, "mix", 0.3, -1, 1.0, 1, 7, 5, api_name="/generate")
  with pytest.raises(AppError, match="number of images 1000"):
    client.predict("ddim", 5, 5, 0, 0, "mix", 0.3, -1, 1.0, 1, 7, 1000, api_name="/generate")
  gallery = client.predict("ddpm", 0, 0, 0, 0, "mix", 0.3, -1, 0.0, -1, 0, 2,
                           api_name="/generate")[0]
  assert len(gallery) == 2   # The server kept running after the bad requests.


def test_values_that_are_not_numbers_are_refused_by_name(server):
  from gradio_client import Client
  from gradio_client.exceptions import AppError
  good = ["ddim", 5, 5, 0, 0, "mix", 0.3, -1, 1.0, 1, 7, 2]

  def with_value(index, value):
    return good[:index] + [value] + good[index + 1:]

  client = Client(server, verbose=False)
  for index, value, message in [(10, "abc", "seed 'abc': must be a whole number"),
                                (8, "nan", "guidance weight nan: must be a finite number"),
                                (11, 2.5, "number of images 2.5: must be a whole number")]:
    with pytest.raises(AppError) as error:
      client.predict(*with_value(index, value), api_name="/generate")
    assert message in str(error.value)
  # NaN and Infinity, which gradio_client's strict JSON cannot send.
  for index, value, message in [(8, float("nan"), "guidance weight nan: must be a finite number"),
                                (6, float("inf"), "gamma inf: must be a finite number"),
                                (7, float("-inf"), "t* -inf: must be a whole number")]:
    answer = queue_call(server, "generate", with_value(index, value))
    assert not answer["success"] and answer["output"]["error"] == message


def test_the_page_loads_no_workdir_but_those_it_offers(running, workdir, tmp_path):
  probe = tmp_path / "probe"
  probe.mkdir()
  shutil.copy(os.path.join(workdir, "config.json"), probe)
  answers = [queue_call(running.url, "load_workdir", [path])["output"]["data"][0]
             for path in (str(probe), "/root", str(tmp_path / "missing"), [running.other])]
  assert len(set(answers)) == 1 and "not a workdir this server offers" in answers[0]
  assert os.listdir(probe) == ["config.json"]   # Nothing was made there.
  status = queue_call(running.url, "fit_controls", [])["output"]["data"][0]
  assert status.startswith(f"Serving {workdir}: cascade")


def test_without_further_workdirs_the_page_has_no_load_control(workdir):
  from hdd.app import page
  application = page.App(workdir)
  try:
    built = page.build(application)
  finally:
    application.close()
  assert not os.path.exists(application.output_root)
  assert not [block for block in built.blocks.values()
              if getattr(block, "elem_id", None) in ("workdir", "load")]
  assert "load_workdir" not in {fn.name for fn in built.fns.values()}
  assert application.offers(workdir) and not application.offers("/root")


def test_uploads_are_refused_and_nothing_is_stored(running):
  answer = requests.post(running.url + "gradio_api/upload", timeout=30,
                         files={"files": ("note.txt", b"kept?")})
  assert answer.status_code == 403
  assert not list(pathlib.Path(running.tmp).rglob("note.txt"))


@pytest.fixture
def browser():
  if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.fail("the browser test needs Debian's chromium and chromium-driver: "
                "apt-get install chromium chromium-driver (scripts/setup.sh does)")
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                   "--window-size=1400,1800"):
    options.add_argument(argument)
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  yield driver
  driver.quit()


def test_the_page_in_chromium(running, workdir, browser, tmp_path):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.keys import Keys
  from selenium.webdriver.support.ui import WebDriverWait
  shots = os.environ.get("HDD_APP_SCREENSHOTS") or str(tmp_path)
  os.makedirs(shots, exist_ok=True)
  wait = WebDriverWait(browser, 120)

  def set_number(elem_id, value):
    field = browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value), Keys.TAB)

  def gallery_images():
    return browser.find_elements(By.CSS_SELECTOR, "#gallery img")

  def natural_size(selector):
    """(width, height) of the image file the page shows, whatever size it is drawn at,
    once it has loaded."""
    return tuple(wait.until(lambda b: b.execute_script(
        "const image = document.querySelector(arguments[0]); return image && "
        "image.naturalWidth ? [image.naturalWidth, image.naturalHeight] : null", selector)))

  browser.get(running.url)
  wait.until(lambda b: "Serving" in b.find_element(By.ID, "status").text)
  assert "cascade of 2 stages" in browser.find_element(By.ID, "status").text
  wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#steps1 input").get_attribute("value")
             == "5")   # The controls fit the served model: its steps per stage.
  assert not browser.find_elements(By.CSS_SELECTOR, "#steps3 input")   # Two stages only.
  set_number("num_images", 64)   # The most a request may ask for, of each class in turn.
  set_number("seed", 3)
  browser.find_element(By.CSS_SELECTOR, "#generate").click()
  wait.until(lambda b: len(gallery_images()) == 64)
  wait.until(lambda b: "stage2" in b.find_element(By.ID, "timing").text)
  assert browser.find_elements(By.CSS_SELECTOR, "#stages img")
  # The gallery scrolls down, not sideways, and so does the page.
  assert browser.execute_script(
      "const wrap = document.querySelector('#gallery .grid-wrap'), page = "
      "document.documentElement; return wrap.scrollWidth <= wrap.clientWidth && "
      "page.scrollWidth <= page.clientWidth")
  # The grid holds the 64 images and no empty column: 32 of each of the 2 classes, wrapped
  # after 10, 8 px tiles with 2 px padding drawn 8 times as large.
  assert natural_size("#grid img") == (8 * (2 + 10 * 10), 8 * (2 + 2 * 4 * 10))
  # The first image's chain, each stage's 6 frames under two lines of text.
  assert natural_size("#chain img") == (8 * (2 + 6 * 10), 2 * (2 * 16 + 8 * (2 + 10)))
  browser.save_screenshot(os.path.join(shots, "app.png"))

  set_number("steps2", 99)
  browser.find_element(By.CSS_SELECTOR, "#generate").click()
  wait.until(lambda b: "stage2 steps 99: must lie in [0, diffusion.num_steps=40]"
             in b.page_source)
  browser.save_screenshot(os.path.join(shots, "app_bad_input.png"))

  # The workdirs the server offers are chosen from a list; the error's toast may still cover
  # the controls: click them as a script does.
  browser.execute_script("arguments[0].focus()",
                         browser.find_element(By.CSS_SELECTOR, "#workdir input"))
  options = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#workdir [role=option]"))
  assert [option.get_attribute("aria-label") for option in options] == [workdir, running.other]
  browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('mousedown', "
                         "{bubbles: true}))", options[1])
  browser.execute_script("arguments[0].click()", browser.find_element(By.CSS_SELECTOR, "#load"))
  wait.until(lambda b: f"Serving {running.other}:" in b.find_element(By.ID, "status").text)
  browser.save_screenshot(os.path.join(shots, "app_other_workdir.png"))


def test_the_server_keeps_the_last_outputs_and_removes_them_on_exit(running):
  """The module's last test: it stops the server."""
  from gradio_client import Client
  client = Client(running.url, verbose=False)
  for seed in range(3):
    client.predict("ddim", 5, 5, 0, 0, "mix", 0.3, -1, 1.0, 1, seed, 1, api_name="/generate")
  [outputs] = glob.glob(os.path.join(running.tmp, "hdd-app-*"))
  assert len(os.listdir(outputs)) == 2   # --keep_outputs=2
  running.process.send_signal(signal.SIGTERM)
  assert running.process.wait(timeout=60) == 0
  assert not os.path.exists(outputs)
  assert not [path for path in pathlib.Path(running.tmp).rglob("*") if path.is_file()]
