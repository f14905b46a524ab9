"""Interpolation (hdd.interpolation): slerp against its closed form, class weights, and
interpolations through a cascade that are exact for a network that knows the data."""
import jax
import jax.numpy as jnp
import numpy as np

from helpers import TemplateDenoiser, half_templates, tiny_cascade, tiny_config
from hdd import interpolation, plan
from hdd.build import create_model


def test_slerp_matches_the_closed_form():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
  b = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
  np.testing.assert_allclose(interpolation.slerp(a, b, 0.0), a, atol=1e-6)
  np.testing.assert_allclose(interpolation.slerp(a, b, 1.0), b, atol=1e-5)
  # Orthogonal unit vectors: the midpoint of the arc is (a + b) / sqrt(2).
  e0, e1 = np.eye(2, dtype=np.float32)[:1], np.eye(2, dtype=np.float32)[1:]
  np.testing.assert_allclose(interpolation.slerp(e0, e1, 0.5), (e0 + e1) / np.sqrt(2), atol=1e-7)
  np.testing.assert_allclose(interpolation.slerp(e0, e1, 1 / 3),
                             [[np.cos(np.pi / 6), np.sin(np.pi / 6)]], atol=1e-7)
  # Equal norms stay equal along the arc (a straight line would shrink them).
  c = b / np.linalg.norm(b.reshape(3, -1), axis=1)[:, None, None, None] * np.linalg.norm(
      a.reshape(3, -1), axis=1)[:, None, None, None]
  middle = interpolation.slerp(a, c, 0.5).reshape(3, -1)
  np.testing.assert_allclose(np.linalg.norm(middle, axis=1),
                             np.linalg.norm(a.reshape(3, -1), axis=1), rtol=1e-5)
  # Parallel rows fall back to the straight line instead of dividing by sin(0).
  np.testing.assert_allclose(interpolation.slerp(a, 2 * a, 0.25), 1.25 * a, rtol=1e-6)


def test_class_weights_mix_two_one_hot_rows():
  weights = interpolation.class_weights(np.array([0, 2]), np.array([1, 0]), 0.25, 3)
  np.testing.assert_allclose(weights, [[0.75, 0.25, 0, 0], [0.25, 0, 0.75, 0]])


def test_interpolation_is_deterministic_ddim_even_for_a_ddpm_config():
  config = tiny_cascade(data_path="unused.npz")
  config.stages.stage1.sample.update(sampler="ddpm", eta=1.0)
  chosen = interpolation.deterministic(config)
  assert all(chosen.stages[n].sample.sampler == "ddim" and chosen.stages[n].sample.eta == 0.0
             for n in ("stage1", "stage2"))
  assert config.stages.stage1.sample.sampler == "ddpm"   # The caller's config is unchanged.


def test_class_interpolation_through_a_cascade_mixes_the_class_embeddings(monkeypatch):
  """For a network exact on one template per class, the class-weight mix (1 - a) y0 + a y1
  predicts x0 = (1 - a) T0 + a T1 at every stage, which deterministic DDIM ends on."""
  config = tiny_cascade(data_path="unused.npz")
  for stage in config.stages.values():
    stage.model.num_classes = 2
  config.pictures.update(interpolation_pairs=2, interpolation_frames=5)
  monkeypatch.setattr(plan, "create_model", lambda c: TemplateDenoiser(c, []))
  result = interpolation.interpolate(config, {"stage1": {}, "stage2": {}})
  np.testing.assert_array_equal(result["labels"], [0, 1])
  np.testing.assert_array_equal(result["class_pairs"], [[0, 1], [1, 0]])
  alphas = np.linspace(0, 1, 5)
  for name, size in (("stage1", 4), ("stage2", 8)):
    templates = half_templates(size)
    assert result["noise"][name].shape == result["classes"][name].shape == (2, 5, size, size, 1)
    for pair, (first, second) in enumerate([(0, 1), (1, 0)]):
      expected = [(1 - a) * templates[first] + a * templates[second] for a in alphas]
      np.testing.assert_allclose(result["classes"][name][pair],
                                 (np.asarray(expected) + 1) * 127.5, atol=1)
      # The noise interpolation keeps the pair's class: the network ignores the noise.
      np.testing.assert_allclose(result["noise"][name][pair],
                                 np.repeat((templates[[first]] + 1) * 127.5, 5, 0), atol=1)


def test_noise_interpolation_depends_only_on_the_endpoints_and_the_weight():
  """Frames at the same weight are identical whatever the number of frames (DDIM with eta
  = 0 is a function of the noise), and the frames move from one endpoint to the other."""
  config = tiny_config("unused.npz")
  config.pictures.interpolation_pairs = 2
  config.sample.batch_size = 2   # One compiled batch shape for both runs.
  model = create_model(config)
  params = model.init(jax.random.PRNGKey(3), jnp.zeros((1, 8, 8, 1)),
                      jnp.zeros((1,), jnp.int32))["params"]
  params = jax.tree_util.tree_map(lambda p: p + 0.05 * jnp.sign(p + 1e-3), params)
  config.pictures.interpolation_frames = 3
  three = interpolation.interpolate(config, {"model": params})["noise"]["model"].astype(int)
  config.pictures.interpolation_frames = 5
  five = interpolation.interpolate(config, {"model": params})["noise"]["model"].astype(int)
  np.testing.assert_array_equal(three, five[:, ::2])
  distance = lambda x, y: np.abs(x - y).mean()
  assert distance(five[:, 0], five[:, -1]) > 0
  for pair in range(2):
    steps = [distance(five[pair, i], five[pair, i + 1]) for i in range(4)]
    assert max(steps) < distance(five[pair, 0], five[pair, -1])

