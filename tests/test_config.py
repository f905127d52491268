import pytest

from classic_cnns.config import ConfigError, base_config, validate_config


def test_base_config_is_valid():
  validate_config(base_config(), num_devices=1)


@pytest.mark.parametrize("key,value,match", [
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
])
def test_bad_values_rejected(key, value, match):
  c = base_config()
  c.update_from_flattened_dict({key: value})
  if key == "data.streaming.crop":
    c.data.streaming.augment = "resize_crop"
  with pytest.raises(ConfigError, match=match):
    validate_config(c, num_devices=1)


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
