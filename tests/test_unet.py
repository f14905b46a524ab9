"""U-Net shapes for every resolution the project uses, labels, mixed precision, and the
low-resolution input of a conditional cascade stage."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hdd.unet import UNet, count_params, timestep_embedding


@pytest.mark.parametrize("size,channel_mult,channels", [
    (7, (1,), 1), (14, (1, 2), 1), (28, (1, 2, 2), 1), (32, (1, 2, 2, 2), 3),
    (64, (1, 2, 2, 2), 3), (28, (1, 2, 2), 3)])
def test_output_shape(size, channel_mult, channels):
  model = UNet(out_channels=channels, base_channels=8, channel_mult=channel_mult,
               num_res_blocks=1, attention_resolutions=(7, 8), norm_groups=4)
  x = jnp.ones((2, size, size, channels))
  t = jnp.array([0, 999])
  variables = model.init(jax.random.PRNGKey(0), x, t)
  out = model.apply(variables, x, t)
  assert out.shape == x.shape and out.dtype == jnp.float32
  assert count_params(variables["params"]) > 0


def test_size_not_divisible_is_refused():
  model = UNet(out_channels=1, base_channels=8, channel_mult=(1, 2, 2), norm_groups=4)
  with pytest.raises(ValueError, match="not divisible by 4"):
    model.init(jax.random.PRNGKey(0), jnp.ones((1, 14, 14, 1)), jnp.zeros((1,), jnp.int32))


def _trained_like(variables):
  """Random weights everywhere (zero-initialised output layers would hide the inputs)."""
  leaves, tree = jax.tree_util.tree_flatten(variables)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  return jax.tree_util.tree_unflatten(
      tree, [0.2 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves)])


def test_time_and_label_change_the_output():
  model = UNet(out_channels=1, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
               norm_groups=4, num_classes=3)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 1))
  variables = _trained_like(model.init(jax.random.PRNGKey(0), x, jnp.zeros((2,), jnp.int32),
                                       jnp.zeros((2,), jnp.int32)))
  out = lambda t, y: model.apply(variables, x, jnp.full((2,), t), jnp.full((2,), y))
  assert not np.allclose(out(10, 0), out(500, 0))
  assert not np.allclose(out(10, 0), out(10, 1))
  # No label means the null class (index num_classes).
  np.testing.assert_allclose(model.apply(variables, x, jnp.full((2,), 10)), out(10, 3))
  # Class weights: one-hot rows are the classes; a mix adds the mixed embedding rows.
  weights = lambda rows: model.apply(variables, x, jnp.full((2,), 10), jnp.asarray(rows))
  np.testing.assert_allclose(weights([[1, 0, 0, 0], [0, 1, 0, 0]])[1], out(10, 1)[1], atol=1e-5)
  mixed = weights([[0.25, 0.75, 0, 0]] * 2)
  assert not np.allclose(mixed, out(10, 0)) and not np.allclose(mixed, out(10, 1))


def test_bfloat16_compute_keeps_float32_params():
  model = UNet(out_channels=1, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
               norm_groups=4, dtype=jnp.bfloat16)
  x = jnp.ones((2, 8, 8, 1))
  variables = model.init(jax.random.PRNGKey(0), x, jnp.zeros((2,), jnp.int32))
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables))
  assert model.apply(variables, x, jnp.zeros((2,), jnp.int32)).dtype == jnp.float32


def test_timestep_embedding_closed_form():
  t = jnp.array([0, 7])
  emb = timestep_embedding(t, 8)
  freqs = np.exp(-np.log(10_000.0) * np.arange(4) / 4)
  expected = np.concatenate([np.sin(7 * freqs), np.cos(7 * freqs)])
  np.testing.assert_allclose(emb[1], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(emb[0], [0, 0, 0, 0, 1, 1, 1, 1])


def test_dropout_is_active_only_in_training():
  model = UNet(out_channels=1, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
               norm_groups=4, dropout=0.5)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 1))
  t = jnp.array([3, 4])
  variables = _trained_like(model.init(jax.random.PRNGKey(0), x, t))
  a = model.apply(variables, x, t, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
  b = model.apply(variables, x, t, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(model.apply(variables, x, t), model.apply(variables, x, t))


def test_a_conditional_stage_sees_the_low_res_image_and_its_noise_step():
  """low_res_input: the image enters as input channels (the first convolution reads 2C
  channels), and both it and its noise step change the output; without them it refuses."""
  model = UNet(out_channels=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
               norm_groups=4, low_res_input=True)
  rng = np.random.default_rng(0)
  x, low_res = (jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32) for _ in range(2))
  t, step = jnp.array([3, 30]), jnp.array([0, 10])
  variables = model.init(jax.random.PRNGKey(0), x, t, low_res=low_res, low_res_step=step)
  assert variables["params"]["Conv_0"]["kernel"].shape == (3, 3, 6, 8)
  variables = _trained_like(variables)
  out = model.apply(variables, x, t, low_res=low_res, low_res_step=step)
  assert out.shape == x.shape
  other_image = model.apply(variables, x, t, low_res=-low_res, low_res_step=step)
  other_step = model.apply(variables, x, t, low_res=low_res, low_res_step=step + 7)
  for changed in (other_image, other_step):
    assert np.all(np.asarray(jnp.abs(out - changed).mean(axis=(1, 2, 3))) > 1e-3)
  with pytest.raises(ValueError, match="pass low_res and low_res_step"):
    model.apply(variables, x, t)
