from __future__ import annotations

import pytest
import torch

from finmlops.models import VARIANTS, build_network, forward_flops, get_variant


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_maps_windows_to_one_logit_each(name: str) -> None:
    variant = VARIANTS[name]
    net = build_network(variant, n_features=7).eval()
    x = torch.randn(5, variant.seq_len, 7)
    out = net(x)
    assert out.shape == (5,)
    assert out.dtype == torch.float32
    # Logits, not probabilities: shifting the output layer's bias must move outputs below 0, which a network
    # ending in a sigmoid could never do.
    with torch.no_grad():
        [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1].bias.fill_(-20.0)
        assert (net(x) < 0).all()


def test_presets_match_the_specification() -> None:
    adv, tr = VARIANTS["advanced"], VARIANTS["transformer"]
    assert (adv.optimizer, adv.scheduler, adv.weight_decay, adv.seq_len, adv.feature_set) == (
        "adamw", "cosine", 1e-4, 15, "advanced"
    )  # fmt: skip
    assert (tr.hidden_size, tr.num_layers, tr.n_heads, tr.seq_len) == (64, 2, 4, 30)
    assert [VARIANTS[n].lr for n in ("baseline", "lightweight", "enhanced")] == [0.002, 0.001, 0.0008]


def test_multiscale_has_a_shallow_and_a_deep_branch_of_half_width() -> None:
    net = build_network(VARIANTS["advanced"], 4)
    assert (net.shallow.num_layers, net.shallow.hidden_size) == (1, 48)
    assert (net.deep.num_layers, net.deep.hidden_size) == (2, 48)


def test_get_variant_overrides_and_rejects_bad_values() -> None:
    v = get_variant("baseline", hidden_size=8, lr=None)
    assert v.hidden_size == 8 and v.lr == VARIANTS["baseline"].lr
    assert VARIANTS["baseline"].hidden_size == 32  # the registry is not mutated
    with pytest.raises(KeyError, match="known: baseline"):
        get_variant("nope")
    with pytest.raises(ValueError, match="dropout"):
        get_variant("baseline", dropout=1.5)


def test_transformer_rejects_windows_longer_than_its_position_table() -> None:
    net = build_network(get_variant("transformer", seq_len=4), 3)
    with pytest.raises(ValueError, match="positional table"):
        net(torch.randn(2, 5, 3))


def test_lstm_flops_match_the_gate_formula() -> None:
    v = get_variant("baseline")
    assert forward_flops(v, 10) == 10 * 4 * (10 + 32) * 32 * 2 + 2 * 32
    enhanced = forward_flops(get_variant("enhanced"), 10)
    assert enhanced == 10 * (4 * (10 + 96) * 96 * 2 + 4 * 192 * 96 * 2) + 2 * 96
    assert forward_flops(get_variant("transformer"), 10) > forward_flops(get_variant("transformer", seq_len=15), 10)
