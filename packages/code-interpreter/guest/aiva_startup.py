"""Start-up code of every IPython kernel of aiva's code interpreter (run through
`--IPKernelApp.exec_files`): what E2B's template adds to results with its IPython
start-up scripts.

- `e2b/chart` (the client's `Result.chart`): what a displayed matplotlib figure shows,
  extracted by aiva_charts.py (beside this file) on the first figure.
- `e2b/data` (`Result.data`): a DataFrame's columns, `df.to_dict(orient="list")`.
- PIL: `Image.show()` displays the image in the notebook instead of starting a viewer,
  and `Image.save(path)` displays it too.
- stdout and stderr are published in messages of at most 1 MiB (backpressure).

Nothing heavy is imported here: the formatters look for matplotlib's and pandas'
classes in sys.modules (an object of them exists only once the user imported them),
and PIL is patched by an import hook when the user's code imports it.
"""


def _aiva_setup(here):
    import datetime
    import functools
    import importlib.util
    import math
    import os
    import sys

    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    shell = get_ipython()
    if shell is None:
        return
    display_formatter = shell.display_formatter

    class LazyTypeFormatter(BaseFormatter):
        """Formats instances of one class, found in sys.modules only once the user's code
        imported its module. (Not `for_type_by_name`: matplotlib's inline backend pops
        every formatter's Figure printer when pyplot is imported.)"""

        _return_type = (dict,)

        def __init__(self, module, name, to_dict, **kwargs):
            super().__init__(**kwargs)
            self._target = (module, name, to_dict)

        def __call__(self, obj):
            module, name, to_dict = self._target
            cls = getattr(sys.modules.get(module), name, None)
            if cls is not None and isinstance(obj, cls):
                return to_dict(obj)
            return super().__call__(obj)

    class ChartFormatter(LazyTypeFormatter):
        format_type = Unicode("e2b/chart")
        print_method = ObjectName("_repr_e2b_chart_")

    class DataFormatter(LazyTypeFormatter):
        format_type = Unicode("e2b/data")
        print_method = ObjectName("_repr_e2b_data_")

    charts = []

    def figure_chart(figure):
        try:
            if not charts:
                spec = importlib.util.spec_from_file_location("aiva_charts", os.path.join(here, "aiva_charts.py"))
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                charts.append(module)
            return charts[0].chart_figure_to_dict(figure)
        except Exception:  # a figure the extractor does not understand has no chart
            return None

    def cell(value, pandas):
        # JSON values: NaN/NaT become null, timestamps ISO strings, numpy scalars numbers.
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if value is pandas.NaT:
            return None
        if isinstance(value, (pandas.Timestamp, datetime.date, datetime.time)):
            return value.isoformat()
        item = getattr(value, "item", None)
        if item is not None and type(value).__module__ == "numpy":
            return cell(item(), pandas)
        return str(value)

    def frame_data(frame):
        pandas = sys.modules["pandas"]
        try:
            columns = frame.to_dict(orient="list")
            return {str(k): [cell(v, pandas) for v in vs] for k, vs in columns.items()}
        except Exception:
            return None

    display_formatter.formatters["e2b/chart"] = ChartFormatter(
        "matplotlib.figure", "Figure", figure_chart, parent=display_formatter
    )
    display_formatter.formatters["e2b/data"] = DataFormatter(
        "pandas", "DataFrame", frame_data, parent=display_formatter
    )

    def patch_image(module):
        original = module.Image.save

        @functools.wraps(original)
        def save(self, fp, format=None, **params):
            result = original(self, fp, format, **params)
            # Saved to a file by the user's code (not by matplotlib's savefig): show it too.
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if isinstance(fp, (str, os.PathLike)) and not caller.startswith(("matplotlib", "PIL")):
                from IPython.display import display

                display(self)
            return result

        module.Image.save = save

    def patch_image_show(module):
        # Pillow shows images in IPython with its IPythonViewer; put it before the
        # desktop viewers, which would start a program nobody sees.
        viewer = getattr(module, "IPythonViewer", None)
        if viewer is not None:
            module.register(viewer, order=0)

    hooks = {"PIL.Image": patch_image, "PIL.ImageShow": patch_image_show}

    class AfterImport:
        """Runs a hook on a module right after it is first imported."""

        def find_spec(self, name, path, target=None):
            hook = hooks.get(name)
            if hook is None:
                return None
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None:
                    break
            else:
                return None
            if spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_hook(module):
                exec_module(module)
                if hooks.pop(name, None) is not None:
                    hook(module)
                if not hooks and self in sys.meta_path:
                    sys.meta_path.remove(self)

            spec.loader.exec_module = exec_and_hook
            return spec

    for name in list(hooks):
        if name in sys.modules:
            hooks.pop(name)(sys.modules[name])
    if hooks:
        sys.meta_path.insert(0, AfterImport())


def _aiva_bounded_output():
    """ipykernel gathers a cell's stdout and stderr for 0.2 s and publishes what it
    gathered as one message, however large: a loop printing 100 MiB becomes one 100 MiB
    message, held whole by the kernel and then by the server. Flushing once a stream has
    gathered 1 MiB keeps every message small, so output streams through, and the server
    can hold the kernel (it stops its process group) while a slow client catches up."""
    from ipykernel.iostream import OutStream

    limit = 1 << 20
    write = OutStream.write

    def bounded_write(self, string):
        n = write(self, string)
        buffer = getattr(self, "_buffer", None)
        if buffer is not None and buffer.tell() >= limit and self._is_master_process():
            self.flush()
        return n

    OutStream.write = bounded_write


_aiva_setup(__import__("os").path.dirname(__file__))
_aiva_bounded_output()
del _aiva_setup, _aiva_bounded_output
