"""Tiny filesystem adapter (the clip's flash on MicroPython, a directory on CPython)."""

import os


class DirFS:
    def __init__(self, root=""):
        self.root = root

    def _path(self, name):
        return self.root + "/" + name if self.root else name

    def read(self, name):
        try:
            with open(self._path(name)) as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, text):
        # Write then rename so a power cut never leaves a half-written file.
        path = self._path(name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(tmp, path)
