"""``archspec gallery``: a static site of the zoo, viewable from file:// with no network.

:func:`build_gallery` is the one entry point. :mod:`archspec.gallery.pages`
computes the page data (plain values, from the compiled spec and
:mod:`archspec.summary`); :mod:`archspec.gallery.site` renders and publishes it
with the Jinja templates and the CSS and JavaScript in this package.
"""

from archspec.gallery.site import GalleryError, GalleryReport, build_gallery

__all__ = ["GalleryError", "GalleryReport", "build_gallery"]
