"""SML's transfer network f_Θ: the paper's shapes, the stack layer, and gradients to every input and Θ."""

import torch

from recbole_transfer.model.sml_transfer import TransferNetwork


def test_shapes_and_parameter_set_follow_the_paper():
    torch.manual_seed(0)
    net = TransferNetwork(embedding_size=16, n1=10, n2=5, hidden=32)
    out = net(torch.randn(7, 16), torch.randn(7, 16))
    assert out.shape == (7, 16)
    shapes = {n: tuple(p.shape) for n, p in net.named_parameters()}
    assert shapes == {
        "conv1.weight": (10, 3, 1), "conv2.weight": (5, 10, 1),  # F1 in R^{n1 x 3}, F2 in R^{n2 x n1}
        "fc.weight": (32, 5 * 16), "fc.bias": (32,), "out.weight": (16, 32), "out.bias": (16,),
    }


def test_stack_layer_is_previous_new_and_normalised_product():
    net = TransferNetwork(embedding_size=3)
    w_prev, w_hat = torch.tensor([[3.0, 0.0, 4.0]]), torch.tensor([[1.0, 2.0, 0.5]])
    h0 = net.stack(w_prev, w_hat)
    assert torch.equal(h0[:, 0], w_prev) and torch.equal(h0[:, 1], w_hat)
    assert torch.allclose(h0[:, 2], torch.tensor([[3.0 / 5, 0.0, 2.0 / 5]]))


def test_rows_are_transformed_independently_and_gradients_reach_inputs_and_theta():
    torch.manual_seed(1)
    net = TransferNetwork(embedding_size=8, hidden=16)
    w_prev = torch.randn(5, 8, requires_grad=True)
    w_hat = torch.randn(5, 8, requires_grad=True)
    out = net(w_prev, w_hat)
    assert torch.allclose(net(w_prev[2:3], w_hat[2:3]), out[2:3], atol=1e-6)  # one row does not see another
    out.pow(2).sum().backward()
    assert w_prev.grad.abs().sum() > 0 and w_hat.grad.abs().sum() > 0  # Step 1 learns Ŵ_t through f_Θ
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())  # Step 2 learns Θ
