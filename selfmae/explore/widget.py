"""The explorer's JupyterLab controls: `ExplorerWidget` (ipywidgets over one `MaskExplorer`) and
`explorer_widget`. The only module of selfmae that imports ipywidgets."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfmae.explore.checkpoints import UNTRAINED, checkpoint_dims, discover_checkpoints
from selfmae.explore.core import PANELS, ExplorerView, MaskExplorer
from selfmae.explore.render import render_panels
from selfmae.explore.sources import SOURCES, ExplorerError

PANEL_TITLES = {"original": "original", "masked": "masked input", "recon": "reconstruction",
                "pasted": "+ visible pasted", "error": "|error| (hidden)"}
AXES = {"sagittal (x)": 0, "coronal (y)": 1, "axial (z)": 2}


@dataclass
class ExplorerWidget:
    """ipywidgets controls over one MaskExplorer. Every control's callback ends in `refresh()`; errors the user
    can fix appear in `message` (red text), never as a traceback. Attributes are public for tests/benchmarks."""
    core: MaskExplorer
    checkpoints: dict[str, Path] = field(default_factory=dict)
    last_figure: Any = None

    def __post_init__(self) -> None:
        import ipywidgets as W

        core = self.core
        self.source = W.Dropdown(options=list(SOURCES) + ["a file of mine (path below)"], description="image",
                                 value=_source_label(core.source), layout=W.Layout(width="420px"))
        self.path = W.Text(value="" if str(core.source) in SOURCES.values() else str(core.source),
                           placeholder="/path/to/image.png | volume.nii.gz | file.npz | folder",
                           description="file", continuous_update=False, layout=W.Layout(width="420px"))
        self.index = W.BoundedIntText(value=core.index, min=0, max=max(core.image.count - 1, 0), description="image #",
                                      layout=W.Layout(width="180px"))
        self.checkpoint = W.Dropdown(description="model", layout=W.Layout(width="420px"))
        self.checkpoint_path = W.Text(placeholder="or a checkpoint file: runs/.../last.pt", description="checkpoint",
                                      continuous_update=False, layout=W.Layout(width="420px"))
        self.ratio = W.IntSlider(value=round(100 * core.mask_ratio), min=5, max=95, step=5,
                                 description="mask ratio (%)", continuous_update=True, layout=W.Layout(width="420px"))
        self.seed = W.BoundedIntText(value=core.seed, min=0, max=10**6, description="mask seed",
                                     layout=W.Layout(width="180px"))
        self.slice = W.IntSlider(value=0, min=0, max=1, description="slice", continuous_update=True,
                                 layout=W.Layout(width="420px"))
        self.axis = W.Dropdown(options=list(AXES.items()), value=core.axis, description="axis",
                               layout=W.Layout(width="240px"))
        self.plot_button = W.Button(description="plot error vs mask ratio", icon="line-chart",
                                    layout=W.Layout(width="240px"))
        self.status = W.HTML(layout=W.Layout(margin="6px 0 2px 0"))
        self.model_line = W.HTML()   # which model: trained (checkpoint, epochs, steps) or untrained
        self.message = W.HTML()
        self.images = {name: W.Image(format="png", layout=W.Layout(width="180px", height="180px"))
                       for name in PANELS}
        self.curve = W.Output()
        panels = [W.VBox([W.HTML(f"<b>{PANEL_TITLES[n]}</b>"), self.images[n]], layout=W.Layout(width="190px"))
                  for n in PANELS]
        for control in (self.source, self.path, self.index, self.checkpoint, self.checkpoint_path, self.ratio,
                        self.seed, self.slice, self.axis):
            control.style.description_width = "105px"
        self.volume_controls = W.HBox([self.slice, self.axis])
        self.box = W.VBox([
            W.HBox([W.VBox([self.source, self.path, self.index]), W.VBox([self.checkpoint, self.checkpoint_path])]),
            W.HBox([self.ratio, self.seed]), self.volume_controls, self.message, self.model_line, self.status,
            W.HBox(panels), self.plot_button, self.curve,
        ])
        self.box.add_class("selfmae-explorer")
        self._sync_controls()
        self.refresh()
        callbacks = {self.ratio: self.on_ratio, self.seed: self.on_seed, self.slice: self.on_slice,
                     self.axis: self.on_axis, self.source: self.on_source, self.path: self.on_path,
                     self.index: self.on_index, self.checkpoint: self.on_checkpoint,
                     self.checkpoint_path: self.on_checkpoint_path}
        for control, callback in callbacks.items():
            control.observe(self._guard(callback), "value")
        self.plot_button.on_click(self._guard(self.on_plot))

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _guard(self, callback):
        """Wrap a callback: a problem becomes a red message in the widget; the last good picture stays."""
        def run(*args):
            if getattr(self, "_syncing", False):
                return
            try:
                self.message.value = ""
                callback(*args)
            except Exception as err:  # shown, not raised: the widget must keep working
                known = isinstance(err, (ExplorerError, FileNotFoundError))
                text = str(err) if known else f"{type(err).__name__}: {err}"
                self.message.value = f"<span style='color:#b00020'>⚠ {_escape(text)}</span>"
        return run

    def _sync_controls(self) -> None:
        """Controls follow the core (checkpoint list for the image's dimensions, slice range, index range)."""
        core = self.core
        self._syncing = True
        try:
            dims = core.image.spatial_dims
            options = [(f"untrained MAE ({dims}D, random weights)", UNTRAINED)]
            options += [(label, str(path)) for label, path in self.checkpoints.items()
                        if checkpoint_dims(path) in (dims, None)]
            current = str(core.checkpoint)
            if current not in [v for _, v in options]:
                options.append((current, current))
            self.checkpoint.options = options
            self.checkpoint.value = current
            self.index.max = max(core.image.count - 1, 0)
            self.index.value = min(core.index, self.index.max)
            is_volume = dims == 3
            self.volume_controls.layout.display = "" if is_volume else "none"
            if is_volume:
                self.slice.max = core.n_slices - 1
                self.slice.value = core.slice_index
                self.axis.value = core.axis
        finally:
            self._syncing = False

    def refresh(self) -> ExplorerView:
        """Recompute (if needed) and redraw the five panels, the model line and the status line."""
        view = self.core.update()
        for name, png in render_panels(view).items():
            self.images[name].value = png
        colour = "#1b5e20" if self.core.entry.trained else "#b35c00"
        self.model_line.value = (f"<span class='selfmae-model' style='color:{colour}'><b>model:</b> "
                                 f"{_escape(self.core.model_description)}</span>")
        self.status.value = (f"<span class='selfmae-status'>{_escape(self.core.image.name)} · "
                             f"{_escape(self.core.entry.label)} · hidden patches in blue"
                             f"<br><b>{_escape(view.summary())}</b></span>")
        self.view = view
        return view

    # -- callbacks (also called directly by tests and the latency benchmark) ----------------------------------
    def on_ratio(self, change=None) -> None:
        self.core.set_mask_ratio(self.ratio.value / 100)
        self.refresh()

    def on_seed(self, change=None) -> None:
        self.core.set_seed(self.seed.value)
        self.refresh()

    def on_slice(self, change=None) -> None:
        self.core.set_slice(self.slice.value)
        self.refresh()

    def on_axis(self, change=None) -> None:
        self.core.set_axis(self.axis.value)
        self._sync_controls()
        self.refresh()

    def _set_source(self, source: str | Path, index: int = 0) -> None:
        self.core.set_source(source, index)
        self._sync_controls()
        self.refresh()

    def on_source(self, change=None) -> None:
        spec = SOURCES.get(self.source.value)
        if spec is None:   # "a file of mine": wait for the path box
            if self.path.value:
                self._set_source(self.path.value)
            else:
                self.message.value = "<span>type the path of an image, volume, .npz or folder in the file box</span>"
            return
        self._set_source(spec)

    def on_path(self, change=None) -> None:
        if self.path.value.strip():
            self._set_source(self.path.value.strip())

    def on_index(self, change=None) -> None:
        self._set_source(self.core.source, self.index.value)

    def on_checkpoint(self, change=None) -> None:
        self.core.set_checkpoint(self.checkpoint.value)
        self.refresh()

    def on_checkpoint_path(self, change=None) -> None:
        if self.checkpoint_path.value.strip():
            self.core.set_checkpoint(self.checkpoint_path.value.strip())
            self._sync_controls()
            self.refresh()

    def on_plot(self, button=None) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        fig = self.core.plot_error_vs_ratio()
        self.last_figure = fig
        with self.curve:
            self.curve.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)


def _escape(text: str) -> str:
    import html

    return html.escape(str(text))


def _source_label(source: str | Path) -> str:
    for label, spec in SOURCES.items():
        if spec == str(source):
            return label
    return "a file of mine (path below)"


def explorer_widget(source: str | Path = "sample:pneumoniamnist", checkpoint: str | Path | None = None,
                    runs_dir: str | Path | None = None, profile: str = "tiny", mask_ratio: float = 0.75,
                    seed: int = 0, threads: int | None = 1) -> ExplorerWidget:
    """The explorer for JupyterLab: image / model / mask-ratio / seed / slice controls, five panels, the error
    curve button. Checkpoints are discovered under runs_dir (default runs/<profile>); it opens on the trained MAE
    that fits the image (checkpoint=None, see `default_checkpoint`), untrained only when none has run, and its
    model line says which."""
    core = MaskExplorer(source, checkpoint, mask_ratio=mask_ratio, seed=seed, profile=profile, runs_dir=runs_dir,
                        threads=threads)
    return ExplorerWidget(core, discover_checkpoints(core.runs_dir))

