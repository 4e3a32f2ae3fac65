"""ovi-studio: declarative storyboards and batch production for Ovi.

The library API (ovi_studio.api, docs/python-api.md): `load_storyboard`, `check`, `build_plan`,
`render`, `pick`, `batch`, `collect_garbage`, with `RenderOptions` and `LintOptions`. Loaded on first use, so `import ovi_studio`
and the command line stay light.
"""
__version__ = "0.1.0"

_API = ("load_storyboard", "check", "build_plan", "collect_garbage", "pick", "batch", "RenderOptions", "LintOptions", "RenderOutcome")
__all__ = ["__version__", "render", *_API]


def __getattr__(name: str):
    if name == "render":  # the subpackage, callable as the render function
        import ovi_studio.render
        return ovi_studio.render
    if name in _API:
        from ovi_studio import api
        return getattr(api, name)
    raise AttributeError(f"module 'ovi_studio' has no attribute {name!r}")
