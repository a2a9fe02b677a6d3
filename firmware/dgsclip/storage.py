"""Tiny filesystem adapter (the clip's flash on MicroPython, a directory on CPython).

Writes are atomic against a power cut at any point:
  1. write `name.tmp` completely and fsync it (os.sync where the port has it),
  2. rename `name.tmp` over `name` (littlefs and POSIX replace atomically);
     where rename refuses to replace (FAT: EEXIST) the old copy is first renamed to
     `name.bak`, never removed before the new one is in place.
`read_valid(name, check)` then recovers from any interrupted step: the main file if it is
valid, else a complete `.tmp` (the newer copy), else `.bak` (the last good one); a valid
fallback is promoted back to `name`. The os module is injected so tests can cut the power
after every single filesystem operation.
"""

import os as _os

TMP = ".tmp"
BAK = ".bak"


class DirFS:
    def __init__(self, root="", os_mod=None):
        self.root = root
        self.os = os_mod or _os

    def _path(self, name):
        return self.root + "/" + name if self.root else name

    def _read_path(self, path):
        try:
            with self.os_open(path, "r") as f:
                return f.read()
        except OSError:
            return None

    def os_open(self, path, mode):
        op = getattr(self.os, "open_file", None)
        if op is not None:
            return op(path, mode)
        return open(path, mode)

    def _exists(self, path):
        try:
            self.os.stat(path)
            return True
        except OSError:
            return False

    def read(self, name):
        return self._read_path(self._path(name))

    def write(self, name, text):
        path = self._path(name)
        tmp = path + TMP
        with self.os_open(tmp, "w") as f:
            f.write(text)
            f.flush()
            fileno = getattr(f, "fileno", None)
            fsync = getattr(self.os, "fsync", None)
            if fileno is not None and fsync is not None:
                try:
                    fsync(fileno())
                except (OSError, ValueError, AttributeError):
                    pass
        sync = getattr(self.os, "sync", None)  # MicroPython: flush the block device
        if sync is not None:
            sync()
        try:
            self.os.rename(tmp, path)
            return
        except OSError:
            if not self._exists(path):
                raise
        # This filesystem does not replace on rename: keep the old copy as .bak until the
        # new one is in place.
        bak = path + BAK
        try:
            self.os.remove(bak)
        except OSError:
            pass
        self.os.rename(path, bak)
        self.os.rename(tmp, path)
        try:
            self.os.remove(bak)
        except OSError:
            pass

    def read_valid(self, name, check):
        """(text, source) of the newest valid copy: check(text) must not raise ValueError.

        source is "" for the main file, ".tmp" or ".bak" for a recovered copy (then
        promoted to the main name), or None when no valid copy exists (text is then the
        error of the main file, or None if there is no file at all)."""
        path = self._path(name)
        first_err = None
        for suffix in ("", TMP, BAK):
            text = self._read_path(path + suffix)
            if text is None:
                continue
            try:
                check(text)
            except ValueError as exc:
                if first_err is None:
                    first_err = str(exc)
                continue
            if suffix:
                try:
                    self.write(name, text)
                except OSError:
                    pass  # full flash: still usable from the recovered copy this boot
            return text, suffix
        return first_err, None
