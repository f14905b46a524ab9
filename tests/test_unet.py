"""U-Net shapes for every resolution the project uses, labels, mixed precision, and the
low-resolution input of a conditional cascade stage."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hdd.maths.unet import GroupNorm, UNet, count_params, timestep_embedding


@pytest.mark.parametrize("size,channel_mult,channels", [
    (7, (1,), 1), (14, (1, 2), 1), (28, (1, 2, 2), 1), (32, (1, 2, 2, 2), 3),
    (64, (1, 2, 2, 2), 3), (28, (1, 2, 2), 3)])
def test_output_shape(size, channel_mult, channels):
  """Shapes and dtypes of the traced network (jax.eval_shape: nothing compiles or runs)."""
  model = UNet(out_channels=channels, base_channels=8, channel_mult=channel_mult,
               num_res_blocks=1, attention_resolutions=(7, 8), norm_groups=4)
  x = jnp.ones((2, size, size, channels))
  t = jnp.array([0, 999])
  variables = _initial_shapes(model, x, t)
  out = jax.eval_shape(model.apply, variables, x, t)
  assert out.shape == x.shape and out.dtype == jnp.float32
  assert count_params(variables["params"]) > 0


def test_size_not_divisible_is_refused():
  model = UNet(out_channels=1, base_channels=8, channel_mult=(1, 2, 2), norm_groups=4)
  with pytest.raises(ValueError, match="not divisible by 4"):
    model.init(jax.random.PRNGKey(0), jnp.ones((1, 14, 14, 1)), jnp.zeros((1,), jnp.int32))


def _initial_shapes(model, *args, **kwargs):
  """The shapes and dtypes of model.init's variables, traced only: nothing compiles or runs
  (the shape tests need no more, and `_trained_like` replaces every value)."""
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), *args, **kwargs)


def _trained_like(variables):
  """Random weights everywhere (zero-initialised output layers would hide the inputs), in
  the shapes of `variables`, drawn by one compiled program."""
  leaves, tree = jax.tree_util.tree_flatten(variables)
  shapes = [leaf.shape for leaf in leaves]

  @jax.jit
  def draw(key):
    keys = jax.random.split(key, len(shapes))
    return [0.2 * jax.random.normal(keys[i], shape) for i, shape in enumerate(shapes)]

  return jax.tree_util.tree_unflatten(tree, draw(jax.random.PRNGKey(1)))


def test_time_and_label_change_the_output():
  model = UNet(out_channels=1, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
               norm_groups=4, num_classes=3)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 1))
  variables = _trained_like(_initial_shapes(model, x, jnp.zeros((2,), jnp.int32),
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
  variables = _initial_shapes(model, x, jnp.zeros((2,), jnp.int32))
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables))
  assert jax.eval_shape(model.apply, variables, x,
                        jnp.zeros((2,), jnp.int32)).dtype == jnp.float32


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
  variables = _trained_like(_initial_shapes(model, x, t))
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
  variables = _initial_shapes(model, x, t, low_res=low_res, low_res_step=step)
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


def _group_norm_float64(x, scale, bias, groups, upstream, eps=1e-6):
  """GroupNorm (Wu & He 2018, eq. 1) and its gradients in float64: y, dL/dx, dL/dscale,
  dL/dbias for L = sum(y * upstream), with the standard closed-form backward
  dL/dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sigma, g = upstream * scale, means over
  each group's pixels and channels."""
  b, h, w, c = x.shape
  grouped = lambda a: a.reshape(b, h * w, groups, c // groups)
  xg = grouped(x)
  mean = xg.mean(axis=(1, 3), keepdims=True)
  sigma = np.sqrt(xg.var(axis=(1, 3), keepdims=True) + eps)
  x_hat = ((xg - mean) / sigma).reshape(x.shape)
  y = x_hat * scale + bias
  g = grouped(upstream * scale)
  xh = grouped(x_hat)
  dx = (g - g.mean(axis=(1, 3), keepdims=True)
        - xh * (g * xh).mean(axis=(1, 3), keepdims=True)) / sigma
  return (y, dx.reshape(x.shape), (upstream * x_hat).sum(axis=(0, 1, 2)),
          upstream.sum(axis=(0, 1, 2)))


@pytest.mark.parametrize("shape,groups,mean,std", [
    ((3, 7, 7, 12), 4, 3.0, 2.0), ((2, 14, 14, 32), 8, 3.0, 2.0),
    ((2, 4, 4, 6), 6, 0.01, 1e-3),   # var ~ epsilon: epsilon's value matters
    ((2, 49, 16), 4, -1.0, 0.5)])    # attention's [B, L, C]
def test_group_norm_against_float64_closed_form(shape, groups, mean, std):
  """The U-Net's GroupNorm (means as matrix products) against float64 numpy: the output
  and every gradient."""
  rng = np.random.default_rng(0)
  x = rng.normal(mean, std, shape)
  scale, bias = rng.normal(size=shape[-1]), rng.normal(size=shape[-1])
  upstream = rng.normal(size=shape)
  expected = _group_norm_float64(x.reshape(shape[0], -1, 1, shape[-1]), scale, bias, groups,
                                 upstream.reshape(shape[0], -1, 1, shape[-1]))
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  params = {"params": {"scale": f32(scale), "bias": f32(bias)}}
  norm = GroupNorm(groups)
  loss = lambda p, x: jnp.sum(norm.apply(p, x) * f32(upstream))
  grad_params, grad_x = jax.grad(loss, argnums=(0, 1))(params, f32(x))
  got = (norm.apply(params, f32(x)), grad_x, grad_params["params"]["scale"],
         grad_params["params"]["bias"])
  for value, reference in zip(got, expected):
    np.testing.assert_allclose(value, reference.reshape(np.shape(value)), rtol=1e-4,
                               atol=1e-4 * np.abs(reference).max())


def test_group_norm_loads_flax_group_norm_parameters():
  """The same parameter tree as flax.linen.GroupNorm (so checkpoints load either way) and,
  with the same parameters, the same output to float32 rounding."""
  x = jnp.asarray(np.random.default_rng(2).normal(1.0, 2.0, (2, 6, 6, 16)), jnp.float32)
  ours, theirs = GroupNorm(4), nn.GroupNorm(4, epsilon=1e-6)
  shapes = lambda module: jax.tree_util.tree_map(
      lambda p: (p.shape, p.dtype), module.init(jax.random.PRNGKey(0), x))
  assert shapes(ours) == shapes(theirs) == {
      "params": {"scale": ((16,), jnp.float32), "bias": ((16,), jnp.float32)}}
  rng = np.random.default_rng(3)
  params = {"params": {"scale": jnp.asarray(rng.normal(size=16), jnp.float32),
                       "bias": jnp.asarray(rng.normal(size=16), jnp.float32)}}
  np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), atol=1e-5)


def test_group_norm_computes_in_float32_and_returns_its_dtype():
  x = jnp.asarray(np.random.default_rng(1).normal(5.0, 1.0, (2, 4, 4, 8)), jnp.bfloat16)
  norm = GroupNorm(2, dtype=jnp.bfloat16)
  params = norm.init(jax.random.PRNGKey(0), x)
  y = norm.apply(params, x)
  assert y.dtype == jnp.bfloat16
  reference = _group_norm_float64(np.asarray(x, np.float64), np.ones(8), np.zeros(8), 2,
                                  np.zeros((2, 4, 4, 8)))[0]
  # Statistics of the bf16 input taken in float32: only the output's bf16 rounding remains.
  np.testing.assert_allclose(np.asarray(y, np.float64), reference, rtol=2**-8, atol=2**-8)
  with pytest.raises(ValueError, match="8 channels cannot form 3 equal groups"):
    GroupNorm(3).init(jax.random.PRNGKey(0), x)
