import os
import shutil
import tempfile

import pytest

# One persistent XLA compilation cache per test run, shared by the xdist workers and by the
# subprocesses tests start (they inherit the environment): the trainer runs of the reliability,
# multi-host and CLI tests compile the same steps again (a resumed run, a rerun), and compiling is
# most of this suite's time on a 2-core CPU. Created before JAX is imported (JAX reads the variable
# then); a run-private directory, removed at the end, so no test ever sees another run's programs.
# Set JAX_COMPILATION_CACHE_DIR yourself to choose (or keep) the directory.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _OWN_CACHE = tempfile.mkdtemp(prefix="classic_cnns_test_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

# XLA's LLVM backend at optimisation level 0 in tests (CLASSIC_CNNS_TEST_XLA_OPT_LEVEL; "" = XLA's
# default). Compiling, not running, is most of this suite's time on 2 cores: level 0 compiles the
# same optimised HLO with an unoptimised LLVM pass pipeline, about 35% less backend-compile time
# (the full GoogLeNet test: 35 -> 24 s) for slower elementwise kernels (the 470-step LeNet-5 test:
# 13 -> 23 s); the whole suite ~4 min shorter. What the tests check (shapes, counts, gradients,
# thresholds, equality of two runs) holds at any level; bits can differ between levels in the last
# place, so a test comparing bits compiles both sides alike (test_batched_init: as the trainer does).
# Added to the CPU backend's flags, which the CLIs would set (when the user set none); test
# subprocesses inherit XLA_FLAGS. Importing classic_cnns itself never touches the environment.
from classic_cnns.backends import cpu as _cpu_backend  # noqa: E402

if "XLA_FLAGS" not in os.environ:
  os.environ["XLA_FLAGS"] = _cpu_backend.XLA_FLAGS
_OPT_LEVEL = os.environ.get("CLASSIC_CNNS_TEST_XLA_OPT_LEVEL", "0")
if _OPT_LEVEL and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
    f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level={_OPT_LEVEL}".strip()
  )

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared", "datasets"))


@pytest.fixture
def shared_datasets():
  """../shared/datasets, or skip (a fresh clone elsewhere has no shared folder)."""
  if not os.path.isdir(SHARED):
    pytest.skip("../shared/datasets is not present")
  return SHARED


def pytest_unconfigure(config):
  if _OWN_CACHE is not None:  # the process that made it (the xdist controller; workers inherit it)
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


# The heavier tier: tests that take seconds to minutes each on 2 cores (whole-model compiles,
# subprocess end-to-end runs, the fuzz and multi-host runs). They run with `-m slow` (.ci/run runs
# them after the default tier); the default tier keeps one end-to-end train, resume and evaluate per
# data path plus every unit test. A test id without brackets covers all its parameters.
SLOW_TESTS = (
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[alexnet]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[vgg11]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[vgg16]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[vgg16_bn]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[vgg19]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[resnet34]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[resnet50_v1_5]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[resnet101_v1_5]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[resnet152_v1_5]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[densenet121]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[densenet169]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[googlenet_bn]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[googlenet_bn_aux]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[inception_v3_noaux]",
  "tests/convert/test_torchvision.py::test_logits_equal_and_round_trip[inception_v3]",
  "tests/convert/test_torchvision.py::test_train_mode_aux_outputs_equal",
  "tests/convert/test_timm.py::test_timm_logits_equal[resnet50]",
  "tests/convert/test_timm.py::test_timm_logits_equal[densenet121]",
  "tests/convert/test_timm.py::test_timm_logits_equal[inception_v3]",
  "tests/convert/test_cli.py::test_convert_evaluate_predict_finetune_export",
  "tests/backends/test_autotune.py::test_measured_kernels_use_the_table_and_nothing_is_timed_while_tracing",
  "tests/backends/test_batched_init.py::test_same_variables_as_model_init[alexnet-num_classes]",
  "tests/backends/test_batched_init.py::test_same_variables_as_model_init[alexnet_paper-num_classes]",
  "tests/backends/test_batched_init.py::test_same_variables_as_model_init[cbam_resnet20-default]",
  "tests/backends/test_batched_init.py::test_same_variables_as_model_init[densenet40_k12-default]",
  "tests/backends/test_batched_init.py::test_same_variables_as_model_init[googlenet_aux-num_classes-table]",
  "tests/backends/test_batched_init.py::test_same_variables_as_model_init[resnet20-default]",
  "tests/backends/test_batched_init.py::test_same_variables_as_model_init[resnet20-scan_blocks]",
  "tests/backends/test_batched_init.py::test_traced_keys_still_batch_and_match",
  "tests/backends/test_batched_init.py::test_trainer_state_holds_model_init_parameters",
  "tests/backends/test_cpu_backend.py::test_compile_init_is_bit_identical_to_jit",
  "tests/backends/test_cpu_backend.py::test_group_norm_equals_portable[1]",
  "tests/backends/test_cpu_backend.py::test_model_train_pass_equals_portable[onednn-densenet_bc-scan_layers]",
  "tests/backends/test_cpu_backend.py::test_model_train_pass_equals_portable[onednn-nin_cifar_bn]",
  "tests/backends/test_cpu_backend.py::test_model_train_pass_equals_portable[onednn-resnet20-group]",
  "tests/backends/test_cpu_backend.py::test_model_train_pass_equals_portable[onednn-resnet20-scan_blocks]",
  "tests/backends/test_cpu_backend.py::test_model_train_pass_equals_portable[xla-resnet20-group]",
  "tests/backends/test_cpu_backend.py::test_model_train_pass_equals_portable[xla-resnet20-scan_blocks]",
  "tests/backends/test_cpu_backend.py::test_model_train_pass_equals_portable[xla-resnet20]",
  "tests/backends/test_onednn.py::test_kernel_larger_than_input_does_not_crash",
  "tests/backends/test_onednn.py::test_large_kernels_do_not_crash",
  "tests/data/test_augment.py::test_preprocess_config_full_pipeline_train_and_eval",
  "tests/data/test_streaming.py::test_canvas_mode_gives_every_in_jit_op_and_protocol_the_in_memory_numbers",
  "tests/data/test_streaming.py::test_host_crop_streams_support_the_multi_view_protocols",
  "tests/data/test_tfds_stream.py::test_mock_imagenet2012_shapes_determinism_and_resume",
  "tests/data/test_tfds_stream.py::test_tiny_train_epochs_deterministic_resumable_and_disjoint_over_processes",
  "tests/models/test_densenet.py::test_exact_param_count[densenet264]",
  "tests/models/test_densenet.py::test_exact_param_count[densenet_bc_190_40]",
  "tests/models/test_densenet.py::test_exact_param_count[densenet_bc_250_24]",
  "tests/models/test_densenet.py::test_forward_backward_finite",
  "tests/models/test_densenet.py::test_memory_efficient_is_identical",
  "tests/models/test_densenet.py::test_scan_layers_is_the_same_network",
  "tests/models/test_googlenet.py::test_forward_backward_train_vs_eval_googlenet_bn_aux",
  "tests/models/test_inception.py::test_forward_backward_finite_inception_v3_75px",
  "tests/models/test_inception.py::test_gradient_is_plain_autodiff",
  "tests/models/test_inception.py::test_inception_v3_batchnorm_epsilon_is_1e3_numerically",
  "tests/models/test_resnet.py::test_exact_param_count[resnet1202]",
  "tests/models/test_resnet.py::test_forward_backward_finite_resnet20",
  "tests/models/test_resnet.py::test_forward_backward_finite_with_attention",
  "tests/models/test_resnet.py::test_scan_blocks_is_the_same_network",
  "tests/test_benchmark.py::test_tiny_run_numbers_and_json",
  "tests/test_evaluate.py::test_no_or_unreadable_checkpoint_is_one_line_error",
  "tests/test_evaluate.py::test_resnet_multiscale_dense_evaluation_runs_at_any_scale",
  "tests/test_evaluate.py::test_ten_crop",
  "tests/test_experiments.py::test_imagenet_plan_on_a_streamed_folder",
  "tests/test_experiments.py::test_plans_build_valid_configs",
  "tests/test_experiments.py::test_smoke_run_store_and_rerun",
  "tests/test_experiments.py::test_tfds_dataset_offline_at_paper_scale",
  "tests/test_fuzz_config.py::test_cli_refuses_bad_input_on_a_finished_run_cleanly",
  "tests/test_main.py::test_broken_config_file_is_file_line_message",
  "tests/test_main.py::test_compilation_cache_makes_a_rerun_load_the_compiled_steps",
  "tests/test_main.py::test_empty_compilation_cache_dir_turns_the_cache_off",
  "tests/test_main.py::test_two_devices_data_parallel",
  "tests/test_multihost.py::test_two_processes_train_checkpoint_resume_match_one_process",
  "tests/test_parallel.py::test_on_8_devices",
  "tests/test_reliability.py::test_bad_input_leaves_existing_checkpoints_untouched",
  "tests/test_reliability.py::test_corrupt_latest_checkpoint_falls_back_and_is_replaced",
  "tests/test_reliability.py::test_disk_full_while_checkpointing_ends_in_one_line_and_keeps_the_last_checkpoint",
  "tests/test_reliability.py::test_flipped_byte_in_latest_checkpoint_fails_its_checksum_and_the_previous_is_used",
  "tests/test_reliability.py::test_kill_9_then_rerun_is_bit_identical",
  "tests/test_reliability.py::test_resume_mid_window_logs_the_same_and_a_shorter_window_is_marked",
  "tests/test_reliability.py::test_same_config_and_seed_give_identical_metrics",
  "tests/test_reliability.py::test_sigterm_saves_and_exits_cleanly_then_resumes",
  "tests/test_torch_compare.py::test_tiny_run",
  "tests/test_train.py::test_lecun_variant_trains",
)


def pytest_collection_modifyitems(config, items):
  for item in items:
    if item.nodeid in SLOW_TESTS or item.nodeid.split("[")[0] in SLOW_TESTS:
      item.add_marker(pytest.mark.slow)
