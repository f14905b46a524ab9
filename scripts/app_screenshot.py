"""Takes the README's screenshot of the web app (docs/app.png): serves a trained workdir with
`python -m hdd.app`, opens the page in Debian's headless Chromium (selenium through Debian's
chromedriver, as tests/test_app.py does), generates with the workdir's own settings and
saves the page down to the grid (the timing table and downloads are left out). Give the
workdir as a relative path: the page shows it as given.

  python scripts/app_screenshot.py --workdir=runs/hdd_fmnist_cond_quick \\
      [--workdirs=runs/other] [--num_images=20] [--seed=1] [--out=docs/app.png]
"""
import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WIDTH = 1400   # pixels: the page's controls and outputs side by side


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_server(workdir: str, workdirs: str, port: int, log) -> subprocess.Popen:
  """`python -m hdd.app` in the checkout, once it accepts connections."""
  args = [sys.executable, "-m", "hdd.app", f"--workdir={workdir}", f"--port={port}"]
  if workdirs:
    args.append(f"--workdirs={workdirs}")
  server = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
  deadline = time.time() + 300
  while time.time() < deadline:
    if server.poll() is not None:
      raise SystemExit(f"error: the app stopped (exit {server.returncode}); see {log.name}")
    try:
      socket.create_connection(("127.0.0.1", port), timeout=1).close()
      return server
    except OSError:
      time.sleep(0.5)
  server.terminate()
  raise SystemExit(f"error: the app did not start within 300 s; see {log.name}")


def screenshot(url: str, num_images: int, seed: int, out: str) -> None:
  """Generates `num_images` with `seed` on the page at `url` and saves the whole page."""
  from PIL import Image
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.keys import Keys
  from selenium.webdriver.support.ui import WebDriverWait
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                   f"--window-size={WIDTH},1800", "--hide-scrollbars"):
    options.add_argument(argument)
  browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  try:
    wait = WebDriverWait(browser, 600)
    browser.get(url)
    wait.until(lambda b: "Serving" in b.find_element(By.ID, "status").text)
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#steps1 input").get_attribute(
        "value") not in ("", "0"))   # The controls hold the served model's settings.
    for elem_id, value in (("num_images", num_images), ("seed", seed)):
      field = browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input")
      field.send_keys(Keys.CONTROL, "a")
      field.send_keys(str(value), Keys.TAB)
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#gallery img")) == num_images)
    wait.until(lambda b: "total" in b.find_element(By.ID, "timing").text)
    wait.until(lambda b: b.execute_script(
        "return ['#grid img', '#chain img', '#stages img'].every(selector => {"
        "const image = document.querySelector(selector);"
        "return image && image.complete && image.naturalWidth > 0; })"))
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(WIDTH, height + 100)
    time.sleep(1)   # The page lays itself out at the new size.
    bottom = browser.execute_script(
        "return document.querySelector('#grid').getBoundingClientRect().bottom")
    page = Image.open(io.BytesIO(browser.get_screenshot_as_png()))
    page.crop((0, 0, page.width, min(page.height, int(bottom) + 16))).save(out)
  finally:
    browser.quit()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="a trained workdir, relative")
  parser.add_argument("--workdirs", default="", help="further workdirs the page offers")
  parser.add_argument("--num_images", type=int, default=20)
  parser.add_argument("--seed", type=int, default=1)
  parser.add_argument("--out", default=os.path.join(ROOT, "docs", "app.png"))
  args = parser.parse_args()
  if os.path.isabs(args.workdir):
    raise SystemExit(f"error: --workdir={args.workdir} is absolute; give it relative to the "
                     "checkout, as a reader of the README would")
  if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    raise SystemExit("error: needs Debian's chromium and chromium-driver: apt-get install "
                     "chromium chromium-driver (scripts/setup.sh does)")
  port = free_port()
  with tempfile.NamedTemporaryFile("w", prefix="hdd-app-", suffix=".log", delete=False) as log:
    server = start_server(args.workdir, args.workdirs, port, log)
    try:
      screenshot(f"http://127.0.0.1:{port}/", args.num_images, args.seed,
                 os.path.abspath(args.out))
    finally:
      server.terminate()
      server.wait(timeout=60)
  print(f"Saved {args.out}")


if __name__ == "__main__":
  main()
