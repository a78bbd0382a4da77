"""The benchmark configurations: their batch shapes agree with their models, and the
GPU-sized one is timed on a GPU only."""
import dataclasses

import numpy as np

from benchmarks.common import GPU_STEP_CONFIGS, STEP_CONFIGS, Device, gpu_config, make_batch, step_configs


def test_every_configuration_s_shapes_are_those_of_its_proteins():
    for make in {**STEP_CONFIGS, **GPU_STEP_CONFIGS}.values():
        cfg = make()
        assert cfg.tgt_len == cfg.protein_len + 1
        assert cfg.src_len in (3 * cfg.protein_len, 3 * cfg.protein_len + 2)   # with or without start/end
        assert cfg.model.d_model % cfg.model.n_heads == 0


def test_the_gpu_sized_configuration_is_the_issue_s_and_only_for_a_gpu():
    cfg = gpu_config()
    m = cfg.model
    assert (m.d_model, m.n_heads, m.d_ff, m.n_encoder_layers, m.n_decoder_layers) == (512, 8, 2048, 6, 6)
    assert (cfg.batch_size, cfg.protein_len) == (128, 100)
    assert list(step_configs(Device("numpy"))) == list(STEP_CONFIGS)
    # its batches are built like the others' (two sequences here, to stay small)
    batch = make_batch(dataclasses.replace(cfg, batch_size=2))
    assert np.shape(batch.src) == (2, cfg.src_len) and np.shape(batch.tgt_in) == (2, cfg.tgt_len)
