"""What the experiments share: the dataset of a study, a results file that lets a re-run
skip the finished parts (WORKDIR/study.json records what they were made from, and a
re-run with other inputs is refused), checks of the list flags, and the quality measures
every study reports the same way.

Quality of uint8 samples at the data's full resolution, against the test split:
  fid, inception_kid_x1e3  the FID Inception (pytorch-fid weights), reference statistics of
                           --fid_reference_examples test images (0: the whole split), cached;
  fcd, classifier_kid_x1e3 the Fréchet distance and KID in the 128-d features of the
                           project's classifier (evaluation.classifier), trained once per
                           workdir; never called FID.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
from typing import Callable

import numpy as np
from absl import app, flags

from common import files, runtime
from common.errors import UserError
from evaluation.classifier_recipe import RECIPES, Recipe
from hdd import layout, stages

DATASETS = ("mnist", "fashion_mnist", "cifar10")


def define_data_flags(data_path_required: bool = False) -> None:
  """--dataset, --data_path and --test_data_path (`model_configs` reads them); without
  --data_path a study reads the config's own data, unless `data_path_required`."""
  flags.DEFINE_enum("dataset", "mnist", DATASETS, "Dataset.")
  default = "" if data_path_required else ("; default: the config's (tfds MNIST and "
                                            "CIFAR-10, Debian's Fashion-MNIST)")
  flags.DEFINE_string("data_path", None if data_path_required else "",
                      f"MNIST or CIFAR-10 npz (Keras layout) or Fashion-MNIST idx folder{default}.")
  flags.DEFINE_string("test_data_path", "", "The test images, when --data_path does not hold "
                      "them (e.g. ../shared/data/cifar10_test.npz); default: --data_path.")
  if data_path_required:
    flags.mark_flag_as_required("data_path")


def define_common_flags(num_samples: int) -> None:
  """The flags every study has."""
  define_data_flags()
  flags.DEFINE_string("workdir", None, "Output directory; finished parts are reused.")
  flags.DEFINE_integer("num_samples", num_samples, "Samples per measured model or setting.")
  flags.DEFINE_bool("quick", False, "Run the whole path at toy scale in a few minutes (tiny "
                    "models, a few steps, samples and settings; for tests).")
  flags.mark_flag_as_required("workdir")


def run(main) -> None:
  """app.run(main) with the project's contract for bad input: a UserError (bad data, a
  workdir without what the study needs) is one line on stderr and exit status 2. Every
  study has main.py's quiet terminal, and its --library_logs to show what that drops."""
  flags.DEFINE_bool("library_logs", False, "Also show the INFO logs of orbax, CLU, JAX and "
                    "TensorFlow (quiet by default).")

  def guarded(argv):
    if not flags.FLAGS.library_logs:
      runtime.quiet_library_logs()
    try:
      main(argv)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  app.run(guarded)


def start_runtime() -> None:
  """What a study does once its flags and workdir are found good, before its JAX or
  TensorFlow work: TensorFlow loaded without its start-up notices (unless --library_logs;
  `common.runtime.quiet_logs`), tf.data kept off accelerators and the compilation cache."""
  if not flags.FLAGS.library_logs:
    runtime.quiet_logs()
  runtime.configure_runtime()


def define_quality_flags(fid_reference_examples: int = 0) -> None:
  """The flags of the studies that score samples with `Quality`."""
  flags.DEFINE_integer("classifier_steps", 1000, "Training steps of the feature classifier.")
  flags.DEFINE_integer("fid_reference_examples", fid_reference_examples,
                       "Test images of the FID reference statistics (cached); 0: all of them.")
  flags.DEFINE_bool("fid", True, "Measure FID (the FID Inception runs at a few images/s on "
                    "CPU); --nofid: the classifier distance only.")


def model_configs(dataset: str, data_path: str, variant: str = "quick",
                  test_data_path: str = "", cascade_variant: str = "") -> dict:
  """{'ddpm': the full-resolution DDPM, 'hdd': the cascade (14 -> 28, CIFAR-10 16 -> 32)}
  of a dataset, each from its `variant` config (the cascade from `cascade_variant` when
  given), reading the training data from `data_path` and the test data from
  `test_data_path` when given (`data_source`)."""
  from configs import (ddpm_cifar10, ddpm_fashion_mnist, ddpm_mnist, hdd_cifar10,
                       hdd_fashion_mnist, hdd_mnist)
  modules = {"mnist": (ddpm_mnist, hdd_mnist),
             "fashion_mnist": (ddpm_fashion_mnist, hdd_fashion_mnist),
             "cifar10": (ddpm_cifar10, hdd_cifar10)}[dataset]
  configs = {}
  for name, module in zip(("ddpm", "hdd"), modules):
    config = module.get_config(cascade_variant if name == "hdd" and cascade_variant else variant)
    data_source(config.data, data_path, test_data_path)
    configs[name] = config
  return configs


def model_name(image_sizes: list[int]) -> str:
  """'HDD 16->32' for a cascade of those resolutions, 'DDPM 32x32' for one model."""
  if len(image_sizes) > 1:
    return "HDD " + "->".join(map(str, image_sizes))
  return f"DDPM {image_sizes[0]}x{image_sizes[0]}"


def cascade_sizes(dataset: str) -> list[int]:
  """The resolutions of a dataset's cascade: [14, 28], or CIFAR-10's [16, 32]."""
  return stages.image_sizes(model_configs(dataset, "")["hdd"])


def model_names(dataset: str) -> dict:
  """{'ddpm': 'DDPM 28x28', 'hdd': 'HDD 14->28'}: the names of a dataset's two models."""
  return {name: model_name(stages.image_sizes(config))
          for name, config in model_configs(dataset, "").items()}


def data_source(data_config, data_path: str, test_data_path: str = "") -> None:
  """Points a study's data config at --data_path (a file is read as an npz, a folder with
  the config's own source) and its test split at --test_data_path; '' keeps the config's
  own."""
  if data_path:
    data_config.path = data_path
    if not os.path.isdir(data_path):
      data_config.source = "npz"
  if test_data_path:
    data_config.eval_path = test_data_path


def quick_model(config) -> None:
  """--quick: the smallest U-Net of the family, one resolution level, batches of 16 (the
  study sets a few steps and samples): for tests of the whole path, not for numbers.
  Tracing and compiling the network is most of a quick run's time, and a second level
  doubles it; XLA:CPU's time in a narrow network's convolutions grows with the batch."""
  for model in stages.all_sections(config):
    model.model.update(base_channels=8, channel_mult=(1,), attention_resolutions=(),
                       norm_groups=4)
    model.train.update(batch_size=16, log_every=2, warmup_steps=1)
  config.sample.batch_size = 16


class Results:
  """WORKDIR/results.json as a dict saved after every change, so that a study stopped
  half-way continues where it stopped. A damaged file is refused, never overwritten."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "results.json")
    self.data = load_record(self.path) if os.path.exists(self.path) else {}

  def table(self, name: str) -> dict:
    return self.data.setdefault(name, {})

  def save(self) -> None:
    files.write_json(self.path, self.data)


def load_json(path: str, remedy: str):
  """The JSON value in `path`; a UserError naming the file, why it cannot be read and
  `remedy` when it is missing, unreadable or not JSON."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    reason = e.strerror if isinstance(e, OSError) and e.strerror else " ".join(str(e).split())
    raise UserError(f"cannot read {path} ({reason}): {remedy}") from None


def load_record(path: str, remedy: str = "if it is damaged, remove it or use another "
                "--workdir") -> dict:
  """A JSON object a study wrote in its workdir (results.json, study.json), or a run's
  config.json; a UserError naming the file and `remedy` when it is none."""
  record = load_json(path, remedy)
  if not isinstance(record, dict):
    raise UserError(f"cannot read {path} (not a JSON object): {remedy}")
  return record


def open_workdir(workdir: str, study: str, made_from: dict) -> Results:
  """The results of `study` in `workdir`, once the workdir is known to hold results made
  from `made_from` (the dataset, data paths, --quick and the flags that change every
  result): a new workdir records it in WORKDIR/study.json, one made from anything else
  is refused, so that a re-run never reports another dataset's or setting's numbers as
  its own."""
  record = json.loads(json.dumps({"study": study, **made_from}))
  path = os.path.join(workdir, "study.json")
  results = Results(workdir)
  if os.path.exists(path):
    differences = record_differences(load_record(path), record)
    if differences:
      raise UserError(f"{workdir} holds results made from other inputs "
                      f"({'; '.join(differences)}); use another --workdir or the same flags")
  else:
    os.makedirs(workdir, exist_ok=True)
    files.write_json(path, record)
  return results


def record_differences(recorded: dict, record: dict) -> list[str]:
  """'field: recorded there, given now' for every field of two study records that differs."""
  def shown(values: dict, key: str) -> str:
    return repr(values[key]) if key in values else "(none)"
  missing = object()
  return [f"{key}: {shown(recorded, key)} there, {shown(record, key)} now"
          for key in sorted(set(recorded) | set(record))
          if recorded.get(key, missing) != record.get(key, missing)]


def common_inputs() -> dict:
  """What the common flags make results from, once --quick has set its values; a data path
  made absolute, so that one file named from another directory is the same input."""
  FLAGS = flags.FLAGS
  inputs = {"dataset": FLAGS.dataset, "data_path": absolute_path(FLAGS.data_path),
            "quick": FLAGS.quick, "num_samples": FLAGS.num_samples}
  if FLAGS.test_data_path:   # Absent when not given: older workdirs' records stay valid.
    inputs["test_data_path"] = absolute_path(FLAGS.test_data_path)
  return inputs


def quality_inputs() -> dict:
  """The quality flags that change every score: the classifier and the FID reference."""
  FLAGS = flags.FLAGS
  inputs = {"classifier_steps": FLAGS.classifier_steps,
            "fid_reference_examples": FLAGS.fid_reference_examples}
  if FLAGS.dataset in RECIPES:   # Absent otherwise: older records stay valid.
    inputs["classifier_recipe"] = dataclasses.asdict(classifier_recipe())
  return inputs


def classifier_recipe() -> Recipe:
  """How --dataset's classifier is built and trained (evaluation.classifier_recipe)."""
  return RECIPES.get(flags.FLAGS.dataset, Recipe())


def absolute_path(path: str) -> str:
  """`path` made absolute; '' (the config's default) stays ''."""
  return os.path.abspath(path) if path else ""


def numbers(flag: str, values: list[str], kind: type, example: str, positive: bool = False,
            allow_empty: bool = False) -> list:
  """The values of list flag --`flag` as finite numbers of `kind` (positive, or at least 0);
  a UserError naming the flag and an example otherwise."""
  sign = "positive" if positive else "non-negative"
  wanted = f"{sign} {'integers' if kind is int else 'numbers'}"
  try:
    parsed = [kind(value) for value in values]
  except ValueError:
    parsed = None
  if (parsed is None or (not parsed and not allow_empty) or
      not all(math.isfinite(v) and (v > 0 if positive else v >= 0) for v in parsed)):
    raise UserError(f"--{flag}={','.join(values)}: expected comma-separated {wanted}, "
                    f"e.g. --{flag}={example}")
  return parsed


# A cascade stage's sampling field (the settings of --sample_set in budget.py, guidance.py).
CASCADE_SAMPLING_SETTING = r"stages\.\w+\.sample\.\w+=.*"
CASCADE_SAMPLING_FIELDS = "a sampling field of a cascade stage"
CASCADE_SAMPLING_EXAMPLE = "stages.stage2.sample.low_res_noise=0.3"


def check_settings(flag: str, settings: list[str], pattern: str, fields: str,
                   example: str) -> None:
  """Refuses a FIELD=VALUE setting of --`flag` that does not match `pattern` (FIELD one of
  `fields`), naming `example`."""
  for setting in settings:
    if not re.fullmatch(pattern, setting):
      raise UserError(f"--{flag}={setting}: expected FIELD=VALUE with FIELD {fields}, "
                      f"e.g. {example}")


def apply_settings(config, flag: str, settings: list[str], model: str, example: str) -> None:
  """Sets FIELD=VALUE settings of --`flag` (VALUE a Python literal, else a string) on the
  config of `model`, refusing fields it does not have with `example` of one it has."""
  import ast
  for setting in settings:
    field, sep, text = setting.partition("=")
    *path, key = field.split(".")
    section = config
    for part in path:
      section = section.get(part) if hasattr(section, "get") else None
    if not sep or section is None or key not in section:
      raise UserError(f"--{flag}={setting}: expected FIELD=VALUE with FIELD a field of the "
                      f"{model} config, e.g. {example}")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    section[key] = value


def choices(flag: str, values: list[str], allowed) -> None:
  """Refuses list flag --`flag` unless it names at least one of `allowed` and nothing else."""
  unknown = sorted(set(values) - set(allowed))
  if unknown or not values:
    problem = f"unknown {unknown}" if unknown else "nothing chosen"
    raise UserError(f"--{flag}={','.join(values)}: {problem}; choose from "
                    f"{', '.join(allowed)}")


class Quality:
  """Scores uint8 samples [N, S, S, C] of a dataset against its test split at S, the data
  config's image size."""

  def __init__(self, data_config, workdir: str, classifier_steps: int, with_fid: bool,
               fid_reference_examples: int = 0, seed: int = 0):
    from evaluation import classifier
    from evaluation.statistics import ClassifierReference, FidReference
    size = data_config.image_size
    directory = layout.classifier_dir(workdir, size)
    if not classifier.is_trained(directory):
      classifier.train_classifier(data_config, size, 10, directory, num_steps=classifier_steps,
                                  seed=seed, recipe=classifier_recipe())
    self.classifier = ClassifierReference.load(directory, data_config, "test", size)
    self.description = {"classifier_test_accuracy": self.classifier.test_accuracy,
                        "classifier_reference": self.classifier.description}
    self.fid_reference = None
    if with_fid:
      self.fid_reference = FidReference.load(data_config, "test", size, fid_reference_examples)
      self.description["fid_reference"] = self.fid_reference.description

  def predict(self, samples: np.ndarray) -> np.ndarray:
    """The class the classifier gives each sample."""
    return self.classifier.predict(samples)

  def __call__(self, samples: np.ndarray) -> dict:
    scores = self.classifier.score(samples, num_subsets=50, subset_size=500)
    if self.fid_reference is not None:
      inception = self.fid_reference.score(samples)
      scores.update(fid=inception["fid"], inception_kid_x1e3=inception["kid_x1e3"])
    return scores


def number(value, digits: int = 2) -> str:
  """A table cell: the value, or '-' when it was not measured."""
  return "-" if value is None else f"{value:.{digits}f}"


def write_markdown(workdir: str, text: str) -> None:
  with files.atomic_write(os.path.join(workdir, "results.md")) as f:
    f.write(text)
  print(text)


def train_model(config, workdir: str) -> tuple[dict, list[float]]:
  """Trains (or resumes, or finds finished) every model of `config` with the hooks its
  config asks for (train.fid_every: FID curves), keeping the run's config.json as main.py
  does; returns {model: EMA parameters} and the training seconds of each model, all runs of
  it counted, without the time its FID hook spent measuring (`hdd.clock`)."""
  from hdd import cascade
  params = cascade.train(config, workdir)
  return params, trained_seconds(config, workdir)


def trained_seconds(config, workdir: str) -> list[float]:
  """The training seconds of each model of `config` trained in `workdir`, all runs of it
  counted."""
  seconds = []
  for stage in stages.models(config, workdir):
    with open(layout.train_timing_path(stage.workdir)) as f:
      seconds.append(json.load(f)["total_train_seconds"])
  return seconds


def sample_model(config, params: dict, num_samples: int, label: str) -> tuple[np.ndarray, dict]:
  """uint8 samples of the last model of `config` and their cost: sampling seconds without
  compilation, and network evaluations per image of each model. `label` names the run on
  the progress lines."""
  from hdd import cascade
  outputs, report, _ = cascade.sample_cascade(
      config, params, num_samples, progress=sampling_progress(config, num_samples, label))
  return list(outputs.values())[-1], {
      "sample_seconds": report["sample_seconds"],
      "evaluations": [s["network_evaluations_per_image"] for s in report["stages"]]}


def images_progress(what: str, num_images: int) -> Callable[[float], None]:
  """progress(fraction done) of a step that makes `num_images` images, shown on one
  progress line (`common.progress`)."""
  from common.progress import Progress
  line = Progress(what, num_images, "images")
  return lambda fraction: line.update(round(fraction * num_images))


def sampling_progress(config, num_images: int, label: str) -> Callable[[float, str], None]:
  """progress(fraction of all models, model name) for `hdd.cascade.sample_cascade`: a
  progress line per model of `config` ('Sampling LABEL' for one model, 'Sampling LABEL
  stage2' for a stage), each begun when the one before it ends (its compilation counts)."""
  names = stages.names(config)
  titles = [f"Sampling {label}" + (f" {name}" if len(names) > 1 else "") for name in names]
  lines = [images_progress(titles[0], num_images)]

  def update(fraction: float, name: str) -> None:
    index = names.index(name)
    done = fraction * len(names) - index
    lines[index](done)
    if round(done * num_images) >= num_images and len(lines) == index + 1 < len(names):
      lines.append(images_progress(titles[index + 1], num_images))

  return update


def balanced_subset(labels, count: int, seed: int = 0):
  """Indices of `count` examples, as equal a share of every present class as possible,
  drawn with a seeded permutation."""
  order = np.random.default_rng(seed).permutation(len(labels))
  classes = np.unique(labels)
  per_class = [order[labels[order] == k] for k in classes]
  chosen, rank = [], 0
  while len(chosen) < count and rank < max(len(p) for p in per_class):
    chosen += [int(p[rank]) for p in per_class if rank < len(p)][:count - len(chosen)]
    rank += 1
  return np.sort(np.asarray(chosen))


def load_curve(workdir: str) -> list[dict]:
  """The FID curve of a run (the last model's), with `images` and `seconds` counted over all
  its models: a cascade's earlier stages (trained first) add their steps x batch and
  seconds. The run's models are those of WORKDIR/config.json."""
  import ml_collections
  remedy = "give the workdir of a finished run of main.py"
  config = ml_collections.ConfigDict(load_record(layout.config_path(workdir), remedy))
  *earlier, last = stages.models(config, workdir)
  earlier_images = earlier_seconds = 0.0
  for stage in earlier:
    timing = load_json(layout.train_timing_path(stage.workdir), remedy)
    earlier_images += timing["end_step"] * stage.config.train.batch_size
    earlier_seconds += timing["total_train_seconds"]
  curve_path = layout.fid_curve_path(last.workdir)
  if not os.path.exists(curve_path):
    raise UserError(f"no FID curve in {last.workdir}: train it with "
                    "--config.train.fid_every=N (on the last stage of a cascade)")
  return [{**row, "images": earlier_images + row["step"] * last.config.train.batch_size,
           "seconds": earlier_seconds + row["train_seconds"]}
          for row in load_json(curve_path, remedy)]


def save_figure(figure, path: str) -> None:
  """Writes a matplotlib figure as PNG (tight layout) and frees it."""
  import matplotlib.pyplot as plt
  figure.tight_layout()
  figure.savefig(path)
  plt.close(figure)
