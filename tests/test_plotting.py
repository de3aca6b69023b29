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
