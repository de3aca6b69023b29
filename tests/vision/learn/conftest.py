"""Fixtures of the vision-learning tests: one torch thread, tiny synthetic data sets."""

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def seg_data():
    """Four 96×96 renderer images with binary masks and instance labels."""
    from crystalloop.vision.learn import make_segmentation_set

    return make_segmentation_set(4, shape=(96, 96), classes="binary", n_particles=(6, 10), seed=3)


@pytest.fixture(scope="session")
def blobs():
    """Trivial two-class images: bright squares on dark noise (a U-Net must learn them fast)."""
    rng = np.random.default_rng(0)
    imgs, masks = [], []
    for _ in range(3):
        img = rng.normal(40, 8, (64, 64))
        m = np.zeros((64, 64), np.int64)
        for _ in range(4):
            r, c = rng.integers(4, 52, 2)
            m[r : r + 10, c : c + 10] = 1
        img[m == 1] += 120
        imgs.append(np.clip(img, 0, 255).astype(np.uint8))
        masks.append(m)
    return imgs, masks
