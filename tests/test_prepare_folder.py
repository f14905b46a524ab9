"""The preparation command (input_pipeline.prepare_folder) on download-like folders the tests
write: centre crop and resize against closed forms, on mixed sizes and formats; unreadable
files listed and skipped; the source never changed; the output written whole or not at all,
and replaced only when asked; bad arguments refused in one line."""
import hashlib
import os

import numpy as np
import pytest
from PIL import Image

from common.errors import DataError
from helpers import run_python, tiny_data_config
from input_pipeline import pipeline, prepare_folder, sources

SIZE = 16
# The centre square's left half is LEFT and its right half RIGHT; the strips cut off by the
# centre crop are BORDER. LEFT and RIGHT have a green of 40, BORDER one of 200: border in
# the output would show in its green channel.
LEFT, RIGHT, BORDER = (200, 40, 40), (40, 40, 200), (40, 200, 40)
GREY_LEFT, GREY_RIGHT, GREY_BORDER = 200, 50, 120


def halves_image(width: int, height: int, colours) -> np.ndarray:
  """[height, width, C]: the centre square split into left and right halves, the rest border."""
  left, right, border = (np.asarray(c, np.uint8).reshape(-1) for c in colours)
  side = min(width, height)
  top, start = (height - side) // 2, (width - side) // 2
  image = np.empty((height, width, len(border)), np.uint8)
  image[:] = border
  image[top:top + side, start:start + side // 2] = left
  image[top:top + side, start + side // 2:start + side] = right
  return image


def write(pixels: np.ndarray, path, **options) -> None:
  Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path, **options)


def folder_hashes(folder) -> dict:
  """Every file under `folder` (relative path) with the SHA-256 of its bytes."""
  return {os.path.relpath(os.path.join(root, name), folder):
          hashlib.sha256(open(os.path.join(root, name), "rb").read()).hexdigest()
          for root, _, names in os.walk(folder) for name in names}


def write_download(folder) -> dict:
  """A download-like folder: landscape and portrait images in PNG (RGB, RGBA, grey) and
  JPEG (RGB, 4:4:4, every colour edge on a JPEG block edge), one in a sub-folder, a
  truncated JPEG, a text file named .png, and a non-image file. Returns, for each good
  image's output name, its (left, right) colours and the tolerance of its format."""
  os.makedirs(folder / "sub")
  rgb = (LEFT, RIGHT, BORDER)
  with_alpha = tuple((*c, 128) for c in rgb)
  grey = (GREY_LEFT, GREY_RIGHT, GREY_BORDER)
  write(halves_image(96, 64, rgb), folder / "wide.png")
  write(halves_image(64, 112, with_alpha), folder / "tall_alpha.png")
  write(halves_image(112, 64, grey), folder / "sub" / "grey.png")
  write(halves_image(64, 112, rgb), folder / "tall.jpg", quality=95, subsampling=0)
  whole = (folder / "tall.jpg").read_bytes()
  (folder / "truncated.jpg").write_bytes(whole[:len(whole) // 2])
  (folder / "text.png").write_text("not an image")
  (folder / "notes.txt").write_text("not an image either")
  # JPEG keeps a uniform 8x8 block's colour, up to the rounding of its colour conversion.
  return {"wide.png": (LEFT, RIGHT, 0), "tall_alpha.png": (LEFT, RIGHT, 0),
          os.path.join("sub", "grey.png"): ((GREY_LEFT,) * 3, (GREY_RIGHT,) * 3, 0),
          "tall.jpg": (LEFT, RIGHT, 2)}


def test_centre_squares_are_cropped_resized_and_written_beside_a_list_of_the_unreadable(
    tmp_path):
  """Every centre square is 64 pixels; the antialiased bilinear resize to 16 weighs input
  pixels by a triangle of half-width 4 around each output pixel's centre (4i + 2), so output
  columns 0-6 see only the left half, column 7 takes 1/8 of its colour from the right half
  (inputs 32 and 33 weigh 0.375 + 0.125 of 4), column 8 1/8 from the left, columns 9-15
  only the right half, and no column sees the border."""
  expected = write_download(tmp_path / "download")
  before = folder_hashes(tmp_path / "download")
  written, skipped = prepare_folder.prepare(str(tmp_path / "download"), str(tmp_path / "out"),
                                            SIZE)
  assert written == 4
  assert sorted(message.split("'")[1] for message in skipped) == [
      str(tmp_path / "download" / "text.png"), str(tmp_path / "download" / "truncated.jpg")]
  assert folder_hashes(tmp_path / "download") == before
  outputs = sorted(folder_hashes(tmp_path / "out"))
  assert outputs == sorted(os.path.splitext(name)[0] + ".png" for name in expected)
  left_share = np.array([1.0] * 7 + [7 / 8, 1 / 8] + [0.0] * 7)[:, None]
  for name, (left, right, tolerance) in expected.items():
    with Image.open(tmp_path / "out" / (os.path.splitext(name)[0] + ".png")) as image:
      assert (image.format, image.mode, image.size) == ("PNG", "RGB", (SIZE, SIZE))
      pixels = np.asarray(image, np.float64)
    row = np.round(left_share * np.array(left) + (1 - left_share) * np.array(right))
    np.testing.assert_allclose(pixels, np.broadcast_to(row, (SIZE, SIZE, 3)), atol=tolerance,
                               err_msg=name)
  assert sorted(os.listdir(tmp_path)) == ["download", "out"]   # No temporary folder left.


def test_the_prepared_set_is_what_training_reads_unchanged(tmp_path):
  """At the config's size the pipeline's resize is the identity: training reads the PNGs."""
  write_download(tmp_path / "download")
  prepare_folder.prepare(str(tmp_path / "download"), str(tmp_path / "out"), SIZE)
  config = tiny_data_config(source="folder", path=str(tmp_path / "out"), channels=3)
  read, _ = pipeline.real_images(config, "train", SIZE)
  written = [np.asarray(Image.open(path)) for path in sources.image_files(str(tmp_path / "out"))]
  assert len(read) == len(written) == 4
  assert sorted(image.tobytes() for image in read) == sorted(image.tobytes() for image in written)


def test_an_interrupted_run_leaves_the_old_output_and_no_partial_one(tmp_path, monkeypatch):
  write_download(tmp_path / "download")
  os.makedirs(tmp_path / "out")
  (tmp_path / "out" / "old.png").write_bytes(b"the earlier set")
  decode, calls = sources.decode_image, []

  def decode_then_interrupt(path, channels):
    calls.append(path)
    if len(calls) == 3:
      raise KeyboardInterrupt
    return decode(path, channels)

  monkeypatch.setattr(sources, "decode_image", decode_then_interrupt)
  with pytest.raises(KeyboardInterrupt):
    prepare_folder.prepare(str(tmp_path / "download"), str(tmp_path / "out"), SIZE,
                           overwrite=True)
  assert folder_hashes(tmp_path / "out") == {
      "old.png": hashlib.sha256(b"the earlier set").hexdigest()}
  assert sorted(os.listdir(tmp_path)) == ["download", "out"]


def test_a_non_empty_output_is_replaced_only_with_overwrite(tmp_path):
  write_download(tmp_path / "download")
  os.makedirs(tmp_path / "out")
  (tmp_path / "out" / "mine.txt").write_text("keep me")
  with pytest.raises(DataError, match=r"'.*out' is not empty: .* --overwrite to replace it"):
    prepare_folder.prepare(str(tmp_path / "download"), str(tmp_path / "out"), SIZE)
  assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"
  written, _ = prepare_folder.prepare(str(tmp_path / "download"), str(tmp_path / "out"), SIZE,
                                      overwrite=True)
  assert written == 4 and not (tmp_path / "out" / "mine.txt").exists()
  assert len(sources.image_files(str(tmp_path / "out"))) == 4


def test_a_folder_of_only_unreadable_files_writes_nothing(tmp_path):
  os.makedirs(tmp_path / "download")
  (tmp_path / "download" / "a.jpg").write_bytes(b"\xff\xd8 not really")
  with pytest.raises(DataError, match=r"every image file under '.*download' is unreadable"):
    prepare_folder.prepare(str(tmp_path / "download"), str(tmp_path / "out"), SIZE)
  assert sorted(os.listdir(tmp_path)) == ["download"]


def test_two_files_that_would_share_a_name_are_named_before_anything_is_written(tmp_path):
  os.makedirs(tmp_path / "download")
  for extension in ("jpg", "png"):
    write(halves_image(16, 16, (LEFT, RIGHT, BORDER)), tmp_path / "download" / f"a.{extension}")
  with pytest.raises(DataError, match=r"'.*a.jpg' and '.*a.png' would both be written as "
                                      r"'a.png': rename one of them"):
    prepare_folder.prepare(str(tmp_path / "download"), str(tmp_path / "out"), SIZE)
  assert sorted(os.listdir(tmp_path)) == ["download"]


BAD_ARGUMENTS = {
    "no output": (["{src}"], "the following arguments are required: output (usage: "),
    "empty output": (["{src}", ""], "give a source folder and an output folder: python -m "),
    "size not a number": (["{src}", "{out}", "--size=big"], "argument --size: invalid int"),
    "size too small": (["{src}", "{out}", "--size=4"], "--size=4 is too small"),
    "unknown flag": (["{src}", "{out}", "--crop=bbox"], "unrecognized arguments: --crop=bbox"),
    "no source": (["{tmp}/nowhere", "{out}"], "nowhere' does not exist: give the folder"),
    "source a file": (["{src}/wide.png", "{out}"], "wide.png' is not a folder"),
    "output inside": (["{src}", "{src}/prepared"], "overlap: choose an output folder outside"),
    "source inside": (["{src}", "{tmp}"], "overlap: choose an output folder outside"),
    "output a file": (["{src}", "{tmp}/file"], "file' is a file: choose a new folder"),
    "output in use": (["{src}", "{tmp}/used"], "used' is not empty: choose a new folder, or "
                                               "pass --overwrite"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_are_one_line_errors_that_change_nothing(tmp_path, capsys, case):
  write_download(tmp_path / "src")
  (tmp_path / "file").write_text("a file")
  os.makedirs(tmp_path / "used")
  (tmp_path / "used" / "x.png").write_text("in use")
  before = folder_hashes(tmp_path)
  argv, message = BAD_ARGUMENTS[case]
  with pytest.raises(SystemExit) as exit_:
    prepare_folder.main([arg.format(src=tmp_path / "src", out=tmp_path / "out", tmp=tmp_path)
                         for arg in argv])
  assert exit_.value.code == 2
  out, err = capsys.readouterr()
  assert out == "" and len(err.splitlines()) == 1, err
  assert err.startswith("error: ") and message in err, err
  assert folder_hashes(tmp_path) == before and not (tmp_path / "out").exists()


def test_the_command_writes_the_set_and_lists_what_it_skipped(tmp_path):
  """`python -m input_pipeline.prepare_folder` as a user runs it, then again on its output."""
  write_download(tmp_path / "download")
  command = ["-m", "input_pipeline.prepare_folder", str(tmp_path / "download"),
             str(tmp_path / "out"), f"--size={SIZE}"]
  result = run_python(command, dict(os.environ), timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout == (f"Wrote 4 images of {SIZE}x{SIZE} to {tmp_path / 'out'}; skipped 2 "
                           "unreadable file(s), listed above\n")
  listed = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
  assert len(listed) == 2 and "text.png" in listed[0] and "truncated.jpg" in listed[1]
  assert len(sources.image_files(str(tmp_path / "out"))) == 4
  again = run_python(command, dict(os.environ), timeout=300)
  assert again.returncode == 2 and again.stdout == ""
  assert again.stderr.splitlines() == [f"error: output folder {str(tmp_path / 'out')!r} is not "
                                       "empty: choose a new folder, or pass --overwrite to "
                                       "replace it"]
