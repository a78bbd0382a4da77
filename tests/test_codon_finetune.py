"""Fine-tuning to another genetic code: frozen parameters really stay fixed."""
import numpy as np
import pytest

from minitransformer import Transformer
from minitransformer.codon.data import generate_pairs
from minitransformer.codon.finetune import (FREEZE_CHOICES, finetune_codon_model, frozen_parameter_names,
                                            trainable_parameters)
from minitransformer.codon.train import CodonRecipe

TINY = CodonRecipe(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1, check_size=10,
                   confirm_size=20, max_len=256)


@pytest.mark.parametrize("freeze", FREEZE_CHOICES)
def test_frozen_parameters_do_not_change(freeze):
    model = Transformer(TINY.model_config(seed=1))
    before = model.state_dict()
    data = generate_pairs(40, 1, 10, table=2, seed=0)
    run = finetune_codon_model(model, data=data, freeze=freeze, max_steps=4, check_every=2, recipe=TINY,
                               progress=False)
    assert run.table == 2 and run.trainer.step == 4
    after = model.state_dict()
    frozen = set(frozen_parameter_names(model, freeze))
    for name in before:
        if name in frozen:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
        elif name.endswith("w_in"):  # every trained attention projection moved
            assert not np.array_equal(after[name], before[name]), name


def test_freeze_choices():
    model = Transformer(TINY.model_config())
    assert frozen_parameter_names(model, "none") == []
    assert {"src_embed.weight", "tgt_embed.weight"} == set(frozen_parameter_names(model, "embeddings"))
    encoder_frozen = frozen_parameter_names(model, "encoder")
    assert "src_embed.weight" in encoder_frozen and any(n.startswith("encoder.") for n in encoder_frozen)
    assert not any(n.startswith("decoder.") for n in encoder_frozen)
    assert len(trainable_parameters(model, "encoder")) == len(model.parameters()) - len(encoder_frozen)
    with pytest.raises(ValueError, match="freeze must be one of none, embeddings, encoder"):
        frozen_parameter_names(model, "decoder")
