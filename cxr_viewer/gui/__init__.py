"""The CXR Lens desktop viewer (PySide6). The only package that imports Qt."""
