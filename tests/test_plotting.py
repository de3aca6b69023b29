"""Plot helpers: headless by default, never overriding a backend the user chose."""

import subprocess
import sys

CODE = """
import matplotlib
{setup}
from crystalloop._plotting import pyplot, save_figure
plt = pyplot()
fig, ax = plt.subplots()
ax.plot([0, 1], [1, 0])
p = save_figure(fig, r"{path}")
print(matplotlib.get_backend().lower(), p.stat().st_size > 0, plt.get_fignums())
"""


def _run(setup: str, path) -> str:
    out = subprocess.run([sys.executable, "-c", CODE.format(setup=setup, path=path)],
                         capture_output=True, text=True, check=True, env={"PATH": "", "MPLBACKEND": ""})
    return out.stdout.strip()


def test_agg_when_nothing_chosen_and_figure_saved_and_closed(tmp_path):
    assert _run("", tmp_path / "a" / "f.png") == "agg True []"


def test_user_backend_is_left_alone(tmp_path):
    assert _run("matplotlib.use('svg'); import matplotlib.pyplot", tmp_path / "f.png") == "svg True []"


def test_save_png_keeps_integer_images_and_channel_order(tmp_path):
    import imageio.v3 as iio
    import numpy as np

    from crystalloop._plotting import save_png

    labels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000  # > 255: stays 16-bit
    assert np.array_equal(iio.imread(save_png(labels, tmp_path / "a" / "labels.png")), labels)
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 255  # red stays red (OpenCV writes BGR)
    back = iio.imread(save_png(rgb, tmp_path / "rgb.png"))
    assert back.shape == (2, 3, 3) and (back[..., 0] == 255).all() and (back[..., 2] == 0).all()


def test_save_png_scales_floats_and_ignores_nan(tmp_path):
    import imageio.v3 as iio
    import numpy as np

    from crystalloop._plotting import save_png

    img = np.array([[0.5, 1.0], [np.nan, 1.5]])
    back = iio.imread(save_png(img, tmp_path / "f.png"))
    assert back.dtype == np.uint8 and back.tolist() == [[0, 127], [0, 255]]


def test_save_png_and_save_figure_name_the_file_they_cannot_write(tmp_path):
    import errno

    import numpy as np
    import pytest

    from crystalloop._plotting import pyplot, save_figure, save_png

    (tmp_path / "file").write_text("not a folder")
    target = tmp_path / "file" / "out" / "x.png"
    with pytest.raises(OSError) as e:
        save_png(np.zeros((2, 2), np.uint8), target)
    assert e.value.errno == errno.ENOTDIR and str(tmp_path / "file") in str(e.value.filename)
    fig, _ = pyplot().subplots()
    with pytest.raises(OSError) as e:
        save_figure(fig, target)
    assert e.value.errno == errno.ENOTDIR
    pyplot().close(fig)
