"""Models: name resolution (``resolve``: model names → folders, the built-in tiny models), loaders and builders."""
