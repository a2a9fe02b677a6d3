"""Power cuts for the clip's filesystem code: an `os` stand-in that dies after N operations.

Runs on CPython and MicroPython (copied next to the firmware in the WebAssembly tests).
`CutOs(base, budget)` wraps a real os module (the WebAssembly port's filesystem, or a
directory on CPython) or `MemOs` (an in-memory flash): every mutating step counts one
operation (open/truncate, each half of a write - a torn write -, flush, fsync, close, sync,
rename, remove) and the operation that exceeds `budget` raises PowerCut before it happens,
so whatever is on the "flash" is exactly what a power cut at that instant would leave.
`MemOs(replace=False)` models a filesystem whose rename refuses an existing target (FAT).
"""


class PowerCut(Exception):
    pass


class _MemFile:
    def __init__(self, fs, path, mode):
        self._fs = fs
        self._path = path
        if "w" in mode:
            fs.files[path] = ""
        elif path not in fs.files:
            raise OSError(2)
        self._pos = 0

    def read(self):
        return self._fs.files[self._path]

    def write(self, text):
        self._fs.files[self._path] += text
        return len(text)

    def flush(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class MemOs:
    """In-memory flash: files are str, renames replace unless replace=False (FAT)."""

    def __init__(self, replace=True):
        self.files = {}
        self.replace = replace

    def open_file(self, path, mode):
        return _MemFile(self, path, mode)

    def stat(self, path):
        if path not in self.files:
            raise OSError(2)
        return (0o100000, 0, 0, 0, 0, 0, len(self.files[path]), 0, 0, 0)

    def rename(self, a, b):
        if a not in self.files:
            raise OSError(2)
        if b in self.files and not self.replace:
            raise OSError(17)  # EEXIST, as FatFs f_rename
        self.files[b] = self.files.pop(a)

    def remove(self, path):
        if path not in self.files:
            raise OSError(2)
        del self.files[path]


class _CutFile:
    def __init__(self, cut, f, writing):
        self._cut = cut
        self._f = f
        self._w = writing

    def read(self):
        return self._f.read()

    def write(self, text):
        h = len(text) // 2
        self._cut.op("write-1")
        self._f.write(text[:h])
        self._f.flush()  # the half really reaches the flash before the cut
        self._cut.op("write-2")
        return h + self._f.write(text[h:])

    def flush(self):
        self._cut.op("flush")
        self._f.flush()

    def fileno(self):
        return self._f.fileno()

    def close(self):
        if self._w:
            self._cut.op("close")
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class CutOs:
    def __init__(self, base, budget=-1, opener=None):
        """base: os module or MemOs; budget: operations allowed (-1: unlimited);
        opener: open() for a real os module (builtins.open)."""
        self._b = base
        self.budget = budget
        self.ops = []
        self._open = opener
        if hasattr(base, "fsync"):
            self.fsync = self._fsync
        if hasattr(base, "sync"):
            self.sync = self._sync

    def op(self, name):
        if self.budget >= 0 and len(self.ops) >= self.budget:
            raise PowerCut(name)
        self.ops.append(name)

    def open_file(self, path, mode):
        w = "r" not in mode
        if w:
            self.op("open")
        if self._open is not None:
            return _CutFile(self, self._open(path, mode), w)
        return _CutFile(self, self._b.open_file(path, mode), w)

    def stat(self, path):
        return self._b.stat(path)

    def rename(self, a, b):
        self.op("rename")
        self._b.rename(a, b)

    def remove(self, path):
        self.op("remove")
        self._b.remove(path)

    def _fsync(self, fd):
        self.op("fsync")
        self._b.fsync(fd)

    def _sync(self):
        self.op("sync")
        self._b.sync()
