import re

import pytest

from classic_cnns.config import ConfigError, base_config, validate_config


def test_base_config_is_valid():
  validate_config(base_config(), num_devices=1)


@pytest.mark.parametrize(
  "key,value,match",
  [
    ("model.name", "resnet_999", "unknown model"),
    ("data.source", "ftp", "data.source"),
    ("optimizer.name", "lbfgs", "optimizer.name"),
    ("schedule.name", "triangle", "schedule.name"),
    ("batch_size", 0, "batch_size must be positive"),
    ("model.num_classes", 0, "num_classes must be a positive integer"),
    ("bn.stats", "local", "bn.stats"),
    ("data.streaming.augment", "random", "data.streaming.augment"),
    ("data.streaming.scale_max", 100, "scale_max >= scale_min"),
    ("data.streaming.crop", 300, "does not fit"),
  ],
)
def test_bad_values_rejected(key, value, match):
  c = base_config()
  c.update_from_flattened_dict({key: value})
  if key == "data.streaming.crop":
    c.data.streaming.augment = "resize_crop"
  with pytest.raises(ConfigError, match=match):
    validate_config(c, num_devices=1)


@pytest.mark.parametrize(
  "key,value,match",
  [
    ("optimizer.lr", float("nan"), "optimizer.lr must be a finite number"),
    ("optimizer.lr", float("inf"), "optimizer.lr must be a finite number"),
    ("optimizer.lr", 0.0, "optimizer.lr must be in (0, inf)"),
    ("optimizer.momentum", -0.1, "optimizer.momentum must be in [0, 1)"),
    ("optimizer.momentum", float("nan"), "optimizer.momentum must be a finite number"),
    ("optimizer.weight_decay", -1e-4, "optimizer.weight_decay must be in [0, inf)"),
    ("optimizer.weight_decay", float("inf"), "optimizer.weight_decay must be a finite number"),
    ("optimizer.eps", 0.0, "optimizer.eps"),
    ("optimizer.b1", 1.0, "optimizer.b1"),
    ("optimizer.grad_clip_norm", -1.0, "optimizer.grad_clip_norm"),
    ("schedule.warmup", -1.0, "schedule.warmup"),
    ("schedule.decay_factor", 0.0, "schedule.decay_factor"),
    ("schedule.boundaries", (30, 10), "increasing order"),
    ("schedule.boundaries", (10.0, float("nan")), "schedule.boundaries must be a finite number"),
    ("loss.label_smoothing", float("nan"), "label_smoothing"),
    ("loss.aux_weight", -0.3, "loss.aux_weight"),
    ("num_epochs", float("inf"), "num_epochs must be a finite number"),
    ("seed", -1, "config.seed must be an integer in [0, 2**31)"),
    ("data.val_size", -5, "data.val_size"),
    ("data.augment.scale_min", float("nan"), "data.augment.scale_min must be a finite number"),
    ("model.norm_momentum", 1.5, "model.norm_momentum"),
    ("eval_every_epochs", -1.0, "eval_every_epochs"),
  ],
)
def test_non_finite_and_out_of_range_numbers_rejected(key, value, match):
  c = base_config()
  c.update_from_flattened_dict({key: value})
  with pytest.raises(ConfigError, match=re.escape(match)):
    validate_config(c, num_devices=1)


def test_dropout_rates_of_any_model_field_checked():
  c = base_config()
  c.model.head_dropout = 1.0
  with pytest.raises(ConfigError, match="model.head_dropout must be in"):
    validate_config(c, 1)
  c.model.head_dropout = 0.5
  validate_config(c, 1)


def test_batch_must_divide_devices():
  c = base_config()
  c.batch_size = 130
  with pytest.raises(ConfigError, match="not divisible by the 4 devices"):
    validate_config(c, num_devices=4)


def test_npz_needs_path_and_multistep_needs_boundaries():
  c = base_config()
  c.data.source = "npz"
  with pytest.raises(ConfigError, match="needs config.data.path"):
    validate_config(c, 1)
  c = base_config()
  c.schedule.name = "multistep"
  with pytest.raises(ConfigError, match="boundaries"):
    validate_config(c, 1)


def test_locked_config_rejects_unknown_keys():
  c = base_config()
  c.lock()
  with pytest.raises(AttributeError):
    c.optimizer.learning_rate = 0.1
