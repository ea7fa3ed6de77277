"""Walking SONGS_DIR for prepare: every real file once, whatever links and names it has.

The real tree is read first, without following links, so a file or folder that is also
reached through a link keeps its own path (and so its song id). Links are then resolved:
one to a folder or file outside the tree is followed (a collection put together from
links), one to something already found is a duplicate, one to a folder it sits in is a
loop, and a link that goes nowhere is broken; each of those is reported once. Identity is
the file's device and inode, so hard links count as one file too.

Names are kept as the file system has them (bytes that are not UTF-8 arrive as surrogates,
os.fsdecode); `shown` writes them with escapes for messages.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

Report = Callable[[Path, str], None]


def shown(path: str | os.PathLike) -> str:
    """A path for one line of text: bytes that are not UTF-8 as `\\xe9`, control characters
    (a newline in a name) as `\\n`, so a message is always one printable line."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def walk_songs(root: Path, report: Report) -> list[tuple[Path, list[Path]]]:
    """Each folder under `root` (itself included; hidden ones left out), sorted, with its
    files, sorted: every real file in one folder only. Links that are loops, broken or
    duplicates, special files and unreadable folders are reported."""
    walker = _Walker(root, report)
    walker.scan(root)
    walker.follow_links()
    return sorted((folder, sorted(files)) for folder, files in walker.found.items())


class _Walker:
    def __init__(self, root: Path, report: Report):
        self.report = report
        self.found: dict[Path, list[Path]] = {}
        self.dirs: dict[tuple[int, int], Path] = {}  # (device, inode) -> path it was found at
        self.files: dict[tuple[int, int], Path] = {}
        self.links: list[Path] = []  # to resolve once the real tree is known
        self.root = root

    def scan(self, top: Path) -> None:
        """Every real folder and file under `top`; links are queued. Of two names of one
        file (hard links), the first in path order is kept."""
        files: list[tuple[Path, os.stat_result]] = []
        stack = [top]
        while stack:
            here = stack.pop()
            try:
                st = here.stat()
                entries = sorted(os.scandir(here), key=lambda e: os.fsencode(e.name))
            except OSError as exc:
                self.report(here, f"cannot read folder ({exc.strerror})")
                continue
            if (st.st_dev, st.st_ino) in self.dirs:  # a folder reached by two links
                self.report(here, f"same folder as {shown(self.dirs[st.st_dev, st.st_ino])}")
                continue
            self.dirs[(st.st_dev, st.st_ino)] = here
            self.found.setdefault(here, [])
            below = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = Path(entry.path)
                try:
                    if entry.is_symlink():
                        self.links.append(path)
                    elif entry.is_dir(follow_symlinks=False):
                        below.append(path)
                    else:
                        files.append((path, entry.stat(follow_symlinks=False)))
                except OSError as exc:
                    self.report(path, f"cannot read ({exc.strerror})")
            stack.extend(reversed(below))  # popped in sorted order
        for path, st in sorted(files, key=lambda f: f[0]):
            self._add_file(path, st)

    def follow_links(self) -> None:
        """Resolve the queued links, in the order found; followed folders may queue more."""
        done = 0
        while done < len(self.links):
            link = self.links[done]
            done += 1
            try:
                st = link.stat()  # follows the whole chain of links
            except OSError as exc:
                self.report(link, _dead_link(link, exc))
                continue
            key = (st.st_dev, st.st_ino)
            target = Path(os.path.realpath(link))
            if stat.S_ISDIR(st.st_mode):
                here = Path(os.path.realpath(link.parent))
                if here == target or target in here.parents:
                    self.report(link, f"symlink loop: it links to "
                                      f"{shown(self.dirs.get(key, target))}, a folder it is in")
                elif key in self.dirs:
                    self.report(link, f"same folder as {shown(self.dirs[key])} (symlink)")
                else:
                    self.scan(link)
            else:
                self._add_file(link, st)

    def _add_file(self, path: Path, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):  # a FIFO named song.wav would block the run
            self.report(path, "not a regular file")
            return
        key = (st.st_dev, st.st_ino)
        if key in self.files:
            how = "symlink" if path.is_symlink() else "hard link"
            self.report(path, f"same file as {shown(self.files[key])} ({how})")
            return
        self.files[key] = path
        self.found.setdefault(path.parent, []).append(path)


def _dead_link(link: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop: its links lead back to each other, never to a file"
    if exc.errno == errno.ENOENT:
        try:
            target = shown(os.readlink(link))
        except OSError:
            target = "its target"
        return f"broken symlink: {target} does not exist"
    return f"cannot follow symlink ({exc.strerror})"
