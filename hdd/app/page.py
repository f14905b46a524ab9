"""The web page (Gradio) over a `serving.Served` model, its request handlers and the HTTP
server that runs it on 127.0.0.1."""
from __future__ import annotations

import math
import os
import re
import shutil
import socket
import tempfile
from typing import Optional

import ml_collections
from absl import logging

from common.errors import UserError

MAX_STAGES = 4   # the page has a steps control for each of up to this many stages
KEEP_OUTPUTS = 16   # requests whose download files are kept
# Gradio makes a gallery column at least 100 px wide: 6 fit beside the controls in a window
# 1100 px wide or more, and more images scroll down, never sideways.
GALLERY_COLUMNS = 6
GRID_HEIGHT = 560   # pixels: 10 rows of classes at about 50 px per image
# Gradio's copies of the files the page shows: every 10 minutes, those over an hour old go.
GRADIO_CACHE_DELETION = (600, 3600)
REFUSED_WORKDIR = ("**Error:** not a workdir this server offers; choose one from the list "
                   "(its operator sets them with --workdir and --workdirs).")


class StartError(UserError):
  pass


class App:
  """The page's state: the served workdir (or why none is), the workdirs it may switch to,
  and its request handlers."""

  def __init__(self, workdir: str, config: Optional[ml_collections.ConfigDict] = None,
               workdirs=(), keep_outputs: int = KEEP_OUTPUTS):
    self.served = None
    self.status = ""
    self.workdirs = list(dict.fromkeys([workdir, *workdirs]))
    self.keep_outputs = keep_outputs
    self.count = 0
    self.load(workdir, config)
    self.output_root = tempfile.mkdtemp(prefix="hdd-app-")

  def offers(self, workdir) -> bool:
    """Whether a request may load `workdir`: only one the operator listed."""
    return isinstance(workdir, str) and workdir in self.workdirs

  def close(self) -> None:
    """Removes the files kept for download."""
    shutil.rmtree(self.output_root, ignore_errors=True)

  def load(self, workdir: str, config: Optional[ml_collections.ConfigDict] = None) -> str:
    """Serves `workdir` (with `config`, else its config.json); on failure keeps what was
    served and says why."""
    from hdd.app import serving
    try:
      self.served = serving.Served.load((workdir or "").strip(), config)
      self.status = f"Serving {self.served.summary()}."
      logging.info("%s", self.status)
      return self.status
    except UserError as e:
      problem = str(e)
    except Exception as e:  # noqa: BLE001 (a page must report, not crash)
      problem = f"cannot serve {workdir!r}: {type(e).__name__}: {e}"
    kept = f" Still serving {self.served.workdir}." if self.served else ""
    self.status = f"**Error:** {problem}.{kept}"
    logging.error("%s", self.status)
    return self.status

  def generate(self, sampler, steps, handover, gamma, start_step, guidance, label, seed,
               num_images, progress=None):
    """The /generate endpoint: (gallery of the images at their own size, grid, stages,
    the first image's chain, timing, download files)."""
    import gradio as gr

    from common import images
    from hdd import timing_report
    from hdd.app import serving
    served = self.served
    if served is None:
      raise gr.Error(f"Nothing is served ({self.status.replace('**Error:** ', '')}); load "
                     "a trained workdir first.")
    try:
      request = serving.Request(
          sampler=sampler, steps=tuple(integer(s, "steps") for s in steps[:len(served.models)]),
          handover=handover, gamma=number(gamma, "gamma"), start_step=integer(start_step, "t*"),
          guidance=number(guidance, "guidance weight"), label=integer(label, "class"),
          seed=integer(seed, "seed"), num_images=integer(num_images, "number of images"))
      report_progress = None
      if progress is not None:
        report_progress = lambda fraction, name: progress(fraction, desc=f"sampling {name}")
      generated = served.generate(request, report_progress)
    except UserError as e:
      raise gr.Error(str(e)) from None
    self.count += 1
    pictures = serving.draw(generated)
    paths = serving.save_outputs(generated, pictures,
                                 os.path.join(self.output_root, str(self.count)))
    # Gradio has copied the files of older requests to where it serves them from.
    shutil.rmtree(os.path.join(self.output_root, str(self.count - self.keep_outputs)),
                  ignore_errors=True)
    gallery = [(images.without_gray_axis(image), caption) for image, caption in
               zip(generated.images, captions(generated.labels, len(generated.images)))]
    timing = timing_report.timing_markdown(
        timing_report.timing_rows(served.config, served.workdir, generated.report),
        request.num_images)
    return (gallery, images.without_gray_axis(pictures["grid"]),
            images.without_gray_axis(pictures["stages"]),
            images.without_gray_axis(pictures["chain"]), timing,
            [paths["grid.png"], paths["samples.npz"], paths["chain.gif"]])


def integer(value, name: str) -> int:
  """A whole number from a page control, or a RequestError naming the control."""
  from hdd.app.serving import RequestError
  try:
    whole = float(value)
  except (TypeError, ValueError):
    raise RequestError(f"{name} {value!r}: must be a whole number") from None
  if not math.isfinite(whole) or whole != int(whole):
    raise RequestError(f"{name} {value!r}: must be a whole number")
  return int(whole)


def number(value, name: str) -> float:
  """A number from a page control (the config checks refuse nan and inf by name), or a
  RequestError naming the control."""
  from hdd.app.serving import RequestError
  try:
    return float(value)
  except (TypeError, ValueError):
    raise RequestError(f"{name} {value!r}: must be a finite number") from None


def captions(labels, count: int) -> list:
  return [f"class {int(k)}" for k in labels] if labels is not None else [""] * count


def control_updates(served) -> list:
  """gr.update()s that fit the controls to the served model: a steps box per stage, the
  hand-over when there is more than one stage, guidance and class for conditional models,
  its defaults."""
  import gradio as gr
  if served is None:
    return [gr.update()] * (MAX_STAGES + 6)
  defaults = served.defaults()
  updates = [gr.update(value=defaults.sampler)]
  for index in range(MAX_STAGES):
    if index < len(served.models):
      stage = served.models[index]
      updates.append(gr.update(visible=True, value=defaults.steps[index],
                               label=f"{stage.name} steps ({stage.config.data.image_size}px, "
                                     f"T={stage.config.diffusion.num_steps}; 0 = T)"))
    else:
      updates.append(gr.update(visible=False))
  handed_over, conditional = len(served.models) > 1, bool(served.num_classes)
  updates += [gr.update(visible=handed_over, value=defaults.handover or "mix"),
              gr.update(visible=handed_over, value=defaults.gamma),
              gr.update(visible=handed_over, value=defaults.start_step),
              gr.update(visible=conditional, value=defaults.guidance),
              gr.update(visible=conditional, value=defaults.label)]
  return updates


def build(application: App):
  """The page."""
  import gradio as gr

  from hdd.app import serving
  from hdd.maths.handover import HANDOVERS
  from hdd.maths.sampling import SAMPLERS
  with gr.Blocks(title="HDD sampler", delete_cache=GRADIO_CACHE_DELETION) as page:
    gr.Markdown("# HDD: sample a trained diffusion model or cascade")
    choice = None
    if len(application.workdirs) > 1:   # Only the operator's workdirs: no path to type.
      with gr.Row():
        choice = gr.Dropdown(application.workdirs, value=application.workdirs[0],
                             label="workdir", scale=4, elem_id="workdir")
        load = gr.Button("Load", scale=1, elem_id="load")
    status = gr.Markdown(application.status, elem_id="status")
    with gr.Row():
      with gr.Column(scale=1):
        sampler = gr.Radio(list(SAMPLERS), value="ddim", label="sampler", elem_id="sampler")
        steps = [gr.Number(value=0, precision=0, label=f"stage{i + 1} steps",
                           elem_id=f"steps{i + 1}") for i in range(MAX_STAGES)]
        handover = gr.Radio(list(HANDOVERS), value="mix",
                            label="hand-over (later stages; noise: conditional stages)",
                            elem_id="handover")
        gamma = gr.Slider(0.0, 1.0, value=0.3, step=0.01, label="gamma (mix weight; truncate: "
                          "the t* with its SNR)", elem_id="gamma")
        start_step = gr.Number(value=-1, precision=0, label="truncate t* (-1 = from gamma)",
                               elem_id="start_step")
        guidance = gr.Slider(0.0, 8.0, value=0.0, step=0.5, label="guidance weight w",
                             elem_id="guidance")
        label = gr.Number(value=-1, precision=0, label="class (-1 = every class in turn)",
                          elem_id="label")
        seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
        num_images = gr.Number(value=16, precision=0,
                               label=f"number of images (1-{serving.MAX_IMAGES})",
                               elem_id="num_images")
        generate = gr.Button("Generate", variant="primary", elem_id="generate")
      with gr.Column(scale=2):
        gallery = gr.Gallery(label="images", columns=GALLERY_COLUMNS, height=440, format="png",
                             elem_id="gallery")
        # Without the label badge, which would cover the first stage label of the picture.
        stages_picture = gr.Image(label="stages side by side", show_label=False, format="png",
                                  elem_id="stages")
        chain = gr.Image(label="one image's chain through the stages", show_label=False,
                         format="png", elem_id="chain")
        # A row per class makes a tall grid: the page fits it into GRID_HEIGHT; grid.png in
        # the downloads holds it at full size.
        grid = gr.Image(label="grid", format="png", height=GRID_HEIGHT, elem_id="grid")
        timing = gr.Markdown(elem_id="timing")
        downloads = gr.File(label="downloads", file_count="multiple", elem_id="downloads")

    controls = [sampler, *steps, handover, gamma, start_step, guidance, label]

    def fit_controls():
      return [application.status, *control_updates(application.served)]

    def load_workdir(path):
      if not application.offers(path):
        return [REFUSED_WORKDIR, *[gr.update()] * len(controls)]
      application.load(path)
      return fit_controls()

    def run_generate(sampler_value, *values, progress=gr.Progress()):
      stage_steps = values[:MAX_STAGES]
      rest = values[MAX_STAGES:]
      return application.generate(sampler_value, stage_steps, *rest, progress=progress)

    page.load(fit_controls, outputs=[status, *controls], api_visibility="private")
    # Without Gradio's preprocessing the handlers get the values as sent, and check them
    # themselves: a request is answered by the app's own message, naming the control.
    if choice is not None:
      load.click(load_workdir, inputs=choice, outputs=[status, *controls],
                 api_visibility="private", preprocess=False)
    generate.click(run_generate,
                   inputs=[sampler, *steps, handover, gamma, start_step, guidance, label, seed,
                           num_images],
                   outputs=[gallery, grid, stages_picture, chain, timing, downloads],
                   api_name="generate", preprocess=False)
  return page


class RefuseUploads:
  """ASGI middleware that refuses Gradio's upload route: the page has no upload control,
  and the route would store whatever is posted to it."""

  def __init__(self, app):
    self.app = app

  async def __call__(self, scope, receive, send):
    if scope["type"] == "http" and is_upload(scope["path"]):
      from starlette.responses import PlainTextResponse
      await PlainTextResponse("this server takes no uploads", status_code=403)(scope, receive,
                                                                              send)
      return
    await self.app(scope, receive, send)


def is_upload(path: str) -> bool:
  return re.sub("/+", "/", path).rstrip("/").endswith("/gradio_api/upload")


def check_start(port: int, keep_outputs: int) -> None:
  """StartError unless the server can listen on 127.0.0.1:`port` now and keeps the files
  of at least one request: checked before the model loads, which takes a while."""
  if not 1 <= port <= 65535:
    raise StartError(f"--port={port}: must lie in [1, 65535]")
  if keep_outputs < 1:
    raise StartError(f"--keep_outputs={keep_outputs}: must be >= 1")
  with socket.socket() as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      probe.bind(("127.0.0.1", port))
    except OSError as e:
      raise StartError(f"cannot listen on 127.0.0.1:{port} ({e.strerror}): another server "
                       "may use it; stop that one or pick another --port") from None


def serve(application: App, port: int, library_logs: bool = False) -> None:
  """Runs the page until Ctrl-C or SIGTERM, on which Gradio closes its server (and
  deletes its copies of the page's files)."""
  import signal

  from starlette.middleware import Middleware
  page = build(application)
  print(f"Serving on http://127.0.0.1:{port} ({application.status})", flush=True)
  signal.signal(signal.SIGTERM, signal.default_int_handler)
  try:
    page.queue(default_concurrency_limit=1).launch(
        server_name="127.0.0.1", server_port=port, show_error=True,
        allowed_paths=[application.output_root], quiet=not library_logs,
        app_kwargs={"middleware": [Middleware(RefuseUploads)]})
  except OSError as e:
    raise StartError(f"cannot serve on 127.0.0.1:{port} ({e}); pick another --port") from None
