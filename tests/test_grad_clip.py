"""grad_clip_method: SimpleTuner's value clipping beside floydtui's norm clipping (issue 14)."""

import pytest
import torch

from floydtui.train.trainer import clip_gradients


@pytest.fixture
def accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


def _params(grads):
    params = [torch.nn.Parameter(torch.zeros(len(g))) for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g)
    return params


def test_value_clips_each_gradient_value(accelerator):
    params = _params([[3.0, -0.5], [-4.0]])
    clip_gradients(accelerator, params, {"max_grad_norm": 1.0, "grad_clip_method": "value"})
    assert params[0].grad.tolist() == [1.0, -0.5] and params[1].grad.tolist() == [-1.0]


def test_norm_scales_the_total_norm(accelerator):
    params = _params([[3.0, 0.0], [4.0]])  # total norm 5
    clip_gradients(accelerator, params, {"max_grad_norm": 1.0, "grad_clip_method": "norm"})
    assert torch.allclose(params[0].grad, torch.tensor([0.6, 0.0]), atol=1e-5)
    assert torch.allclose(params[1].grad, torch.tensor([0.8]), atol=1e-5)


def test_zero_turns_clipping_off(accelerator):
    params = _params([[30.0]])
    clip_gradients(accelerator, params, {"max_grad_norm": 0, "grad_clip_method": "value"})
    assert params[0].grad.tolist() == [30.0]
