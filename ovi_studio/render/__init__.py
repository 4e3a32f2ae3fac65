"""Running the planned takes through an engine and assembling the final cut (docs/render.md
lays out the output folder).

`ovi_studio.render` is also the library's render function, `ovi_studio.render(story, options)`
(ovi_studio.api.render): the package is callable so that one name serves both, whichever is
imported first.
"""
import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from ovi_studio.api import render
        return render(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
