"""A web page that samples a trained model or cascade (Gradio, on 127.0.0.1):

  python -m hdd.app --workdir=runs/hdd_fmnist_quick [--port=7860]

Controls: sampler and steps (per stage), a cascade's hand-over (mix gamma / truncate t*),
guidance weight and class of a conditional model, seed, number of images. It shows the
grid, every stage side by side, an animation of one image's chain through the stages,
the timing of each stage, and PNG / npz downloads. Its generate action is also the API
endpoint /generate (gradio_client). Bad input is reported in the page; the server keeps
running. Another workdir can be loaded from the page.
"""
from __future__ import annotations

import os
import tempfile

from absl import app as absl_app, flags, logging

MAX_STAGES = 4   # the page has a steps control for each of up to this many stages

flags.DEFINE_string("workdir", None, "Workdir of a trained model or cascade to serve.")
flags.DEFINE_string("config", "", "Config file[:variant] of a workdir that has no config.json "
                    "(one trained before it was kept).")
flags.DEFINE_integer("port", 7860, "Port on 127.0.0.1.")
flags.DEFINE_bool("library_logs", False, "Also show the INFO logs of gradio, orbax and JAX.")


class App:
  """The page's state: the served workdir (or why none is) and its request handlers."""

  def __init__(self, workdir: str, config_path: str = ""):
    self.served = None
    self.status = ""
    self.output_root = tempfile.mkdtemp(prefix="hdd-app-")
    self.count = 0
    self.load(workdir, config_path)

  def load(self, workdir: str, config_path: str = "") -> str:
    """Serves `workdir` (with the config file `config_path`, else its config.json); on
    failure keeps what was served and says why."""
    from common.errors import UserError
    from hdd import serving
    try:
      config = load_config_file(config_path) if config_path else None
      self.served = serving.Served.load((workdir or "").strip(), config)
      self.status = f"Serving {self.served.describe()}."
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
    chain animation, timing, download files)."""
    import gradio as gr

    from common import images
    from common.errors import UserError
    from hdd import serving
    if self.served is None:
      raise gr.Error(f"Nothing is served ({self.status.replace('**Error:** ', '')}); load "
                     "a trained workdir first.")
    try:
      request = serving.Request(
          sampler=sampler, steps=tuple(integer(s, "steps")
                                       for s in steps[:len(self.served.stage_names)]),
          handover=handover if self.served.is_cascade else "", gamma=float(gamma),
          start_step=integer(start_step, "t*"), guidance=float(guidance),
          label=integer(label, "class"), seed=integer(seed, "seed"),
          num_images=integer(num_images, "number of images"))
      report_progress = None
      if progress is not None:
        report_progress = lambda fraction, name: progress(fraction, desc=f"sampling {name}")
      generated = self.served.generate(request, report_progress)
    except UserError as e:
      raise gr.Error(str(e)) from None
    self.count += 1
    pictures = serving.pictures(generated)
    paths = serving.save_outputs(generated, pictures,
                                 os.path.join(self.output_root, str(self.count)))
    gallery = [(images.without_gray_axis(image), caption) for image, caption in
               zip(generated.images, captions(generated.labels, len(generated.images)))]
    return (gallery, images.without_gray_axis(pictures["grid"]),
            images.without_gray_axis(pictures["stages"]), paths["chain.gif"],
            serving.timing_markdown(generated.report),
            [paths["grid.png"], paths["samples.npz"]])


def load_config_file(path: str):
  """A config file[:variant], as main.py's --config reads it."""
  import importlib.util

  from hdd.serving import RequestError
  filename, _, variant = path.partition(":")
  spec = importlib.util.spec_from_file_location("served_config", filename)
  if spec is None or not os.path.exists(filename):
    raise RequestError(f"--config={path}: no such config file")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


def integer(value, name: str) -> int:
  """A whole number from a page control, or a RequestError naming the control."""
  from hdd.serving import RequestError
  try:
    number = float(value)
  except (TypeError, ValueError):
    raise RequestError(f"{name} {value!r}: must be a whole number") from None
  if number != int(number):
    raise RequestError(f"{name} {value!r}: must be a whole number")
  return int(number)


def captions(labels, count: int) -> list:
  return [f"class {int(k)}" for k in labels] if labels is not None else [""] * count


def control_updates(served) -> list:
  """gr.update()s that fit the controls to the served model: a steps box per stage, the
  hand-over for cascades, guidance and class for conditional models, its defaults."""
  import gradio as gr
  if served is None:
    return [gr.update()] * (MAX_STAGES + 6)
  defaults = served.defaults()
  names = served.stage_names
  updates = [gr.update(value=defaults.sampler)]
  for index in range(MAX_STAGES):
    if index < len(names):
      chain = served.chain(names[index])
      updates.append(gr.update(visible=True, value=defaults.steps[index],
                               label=f"{names[index]} steps ({chain.data.image_size}px, "
                                     f"T={chain.diffusion.num_steps}; 0 = T)"))
    else:
      updates.append(gr.update(visible=False))
  cascade_visible, conditional = served.is_cascade, bool(served.num_classes)
  updates += [gr.update(visible=cascade_visible, value=defaults.handover or "mix"),
              gr.update(visible=cascade_visible, value=defaults.gamma),
              gr.update(visible=cascade_visible, value=defaults.start_step),
              gr.update(visible=conditional, value=defaults.guidance),
              gr.update(visible=conditional, value=defaults.label)]
  return updates


def build(application: App):
  """The page."""
  import gradio as gr

  from hdd import serving
  with gr.Blocks(title="HDD sampler") as page:
    gr.Markdown("# HDD: sample a trained diffusion model or cascade")
    with gr.Row():
      workdir = gr.Textbox(label="workdir", value=application.served.workdir
                           if application.served else "", scale=4, elem_id="workdir")
      load = gr.Button("Load", scale=1, elem_id="load")
    status = gr.Markdown(application.status, elem_id="status")
    with gr.Row():
      with gr.Column(scale=1):
        sampler = gr.Radio(list(serving.SAMPLERS), value="ddim", label="sampler",
                           elem_id="sampler")
        steps = [gr.Number(value=0, precision=0, label=f"stage{i + 1} steps",
                           elem_id=f"steps{i + 1}") for i in range(MAX_STAGES)]
        handover = gr.Radio(list(serving.HANDOVERS), value="mix",
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
        gallery = gr.Gallery(label="images", columns=8, height=300, format="png",
                             elem_id="gallery")
        # Without the label badge, which would cover the first column's stage label.
        stages_picture = gr.Image(label="stages side by side", show_label=False, format="png",
                                  elem_id="stages")
        with gr.Row():
          grid = gr.Image(label="grid", format="png", elem_id="grid")
          animation = gr.Image(label="one image's chain through the stages", type="filepath",
                               elem_id="animation")
        timing = gr.Markdown(elem_id="timing")
        downloads = gr.File(label="downloads", file_count="multiple", elem_id="downloads")

    controls = [sampler, *steps, handover, gamma, start_step, guidance, label]

    def fit_controls():
      return [application.status, *control_updates(application.served)]

    def load_workdir(path):
      application.load(path)
      return fit_controls()

    def run_generate(sampler_value, *values, progress=gr.Progress()):
      stage_steps = values[:MAX_STAGES]
      rest = values[MAX_STAGES:]
      return application.generate(sampler_value, stage_steps, *rest, progress=progress)

    page.load(fit_controls, outputs=[status, *controls], api_visibility="private")
    load.click(load_workdir, inputs=workdir, outputs=[status, *controls],
               api_visibility="private")
    generate.click(run_generate,
                   inputs=[sampler, *steps, handover, gamma, start_step, guidance, label, seed,
                           num_images],
                   outputs=[gallery, grid, stages_picture, animation, timing, downloads],
                   api_name="generate")
  return page


def main(argv):
  del argv
  from common import stderr
  if not flags.FLAGS.library_logs:
    stderr.import_tensorflow_quietly()
    from hdd import console
    console.quiet_libraries()
  from hdd import run
  run.configure_runtime()
  application = App(flags.FLAGS.workdir or "", flags.FLAGS.config)
  page = build(application)
  print(f"Serving on http://127.0.0.1:{flags.FLAGS.port} ({application.status})", flush=True)
  page.queue(default_concurrency_limit=1).launch(
      server_name="127.0.0.1", server_port=flags.FLAGS.port, show_error=True,
      allowed_paths=[application.output_root], quiet=not flags.FLAGS.library_logs)


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  absl_app.run(main)
