"""DiffAugment translation (Zhao et al. 2020) against its definition, and its use in the GAN step."""

import pytest
import torch
from common.engines import DiffAugment


def _reference_shift(x, offsets, fill):
    """Output voxel j shows input voxel j - t, or ``fill`` where j - t is outside the image (loops, per voxel)."""
    out = torch.full_like(x, fill)
    spatial = x.shape[2:]
    for b in range(x.shape[0]):
        for j in torch.cartesian_prod(*[torch.arange(n) for n in spatial]).reshape(-1, len(spatial)).tolist():
            src = [a - t for a, t in zip(j, offsets[b])]
            if all(0 <= s < n for s, n in zip(src, spatial)):
                out[(b, slice(None), *j)] = x[(b, slice(None), *src)]
    return out


@pytest.mark.parametrize("shape", [(3, 2, 8, 6), (2, 1, 8, 5, 4)])
def test_translation_matches_definition(shape):
    x = torch.randn(shape)
    augment = DiffAugment(ratio=0.25, fill=-1.0, generator=torch.Generator().manual_seed(3))
    limits = augment.translation_range(shape[2:])
    assert limits == [int(n * 0.25 + 0.5) for n in shape[2:]]
    g = torch.Generator().manual_seed(3)
    drawn = [torch.randint(-m, m + 1, (shape[0],), generator=g).tolist() for m in limits]
    offsets = [[d[b] for d in drawn] for b in range(shape[0])]
    assert any(any(o) for o in offsets)  # the test would not see a no-op
    torch.testing.assert_close(augment(x), _reference_shift(x, offsets, -1.0))


def test_gradients_flow_to_the_input_and_the_range_holds():
    x = torch.randn(16, 2, 8, 8, requires_grad=True)
    y = DiffAugment(ratio=0.125)(x)
    y.sum().backward()
    # each voxel of the input appears at most once; those shifted out get no gradient
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0} and x.grad.sum() > 0
    # shift at most 1 voxel (0.125 * 8): a voxel two away from the border is always kept
    assert (x.grad[:, :, 2:-2, 2:-2] == 1).all()
    assert DiffAugment(ratio=0.0)(x) is x
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        DiffAugment(policy=("color",))


def test_gan_step_augments_what_the_discriminator_sees():
    """Real and generated batches reach the discriminator through the augmentation, in both updates."""
    from types import SimpleNamespace

    from common.engines import GANStep

    seen = []

    class Critic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            seen.append(x.detach().clone())
            return (x.flatten(1).mean(1, keepdim=True)) * self.w

    generator = torch.nn.Sequential(torch.nn.Linear(4, 2 * 8 * 8), torch.nn.Unflatten(1, (2, 8, 8)))
    critic = Critic()
    marks = []

    def augment(x):
        marks.append(x.shape)
        return x + 100.0  # a visible change

    step = GANStep(
        generator,
        critic,
        torch.optim.SGD(generator.parameters(), 0.0),
        torch.optim.SGD(critic.parameters(), 0.0),
        latent_shape=4,
        loss="hinge",
        augment=augment,
    )
    engine = SimpleNamespace(state=SimpleNamespace(iteration=1, epoch=1))
    step(engine, {"image": torch.zeros(3, 2, 8, 8)})
    assert len(marks) == 3 and len(seen) == 3  # real and fake (critic update), fake (generator update)
    assert all(float(s.min()) > 50.0 for s in seen)
