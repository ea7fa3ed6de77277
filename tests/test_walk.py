"""corpus.walk: every real file once, links resolved and reported once each."""

import os
from pathlib import Path

from stemcodec.corpus.walk import shown, walk_songs


def walk(root: Path):
    lines: list[str] = []
    found = walk_songs(root, lambda path, why: lines.append(f"{path.relative_to(root)}: {why}"))
    files = [p.relative_to(root).as_posix() for _, entries in found for p in entries]
    return files, lines


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_a_folder_linked_into_itself_is_walked_once_and_told_once(tmp_path):
    touch(tmp_path / "a" / "b" / "song.wav")
    (tmp_path / "a" / "b" / "up").symlink_to("../..", target_is_directory=True)  # the root
    (tmp_path / "a" / "here").symlink_to(".", target_is_directory=True)
    files, lines = walk(tmp_path)
    assert files == ["a/b/song.wav"]
    assert sorted(lines) == [f"a/b/up: symlink loop: it links to {tmp_path}, a folder it is in",
                             f"a/here: symlink loop: it links to {tmp_path / 'a'}, a folder "
                             "it is in"]


def test_the_real_path_wins_over_a_link_that_sorts_first(tmp_path):
    touch(tmp_path / "z-real" / "song.wav")
    (tmp_path / "a-link").symlink_to("z-real", target_is_directory=True)
    (tmp_path / "0.wav").symlink_to("z-real/song.wav")
    files, lines = walk(tmp_path)
    assert files == ["z-real/song.wav"]
    assert lines == [f"0.wav: same file as {tmp_path / 'z-real' / 'song.wav'} (symlink)",
                     f"a-link: same folder as {tmp_path / 'z-real'} (symlink)"]


def test_links_out_of_the_tree_are_followed_once(tmp_path):
    outside = tmp_path / "elsewhere"
    touch(outside / "deep" / "track.flac")
    root = tmp_path / "songs"
    root.mkdir()
    (root / "one").symlink_to(outside, target_is_directory=True)
    (root / "two").symlink_to(outside / "deep", target_is_directory=True)
    files, lines = walk(root)
    assert files == ["one/deep/track.flac"]
    assert lines == [f"two: same folder as {root / 'one' / 'deep'} (symlink)"]


def test_cycles_and_broken_links_are_one_line_each(tmp_path):
    (tmp_path / "a.wav").symlink_to("b.wav")
    (tmp_path / "b.wav").symlink_to("a.wav")
    (tmp_path / "gone").symlink_to("missing", target_is_directory=True)
    touch(tmp_path / ".hidden" / "x.wav")
    (tmp_path / ".dot.wav").symlink_to("nowhere")  # hidden: not read, not told
    files, lines = walk(tmp_path)
    assert files == []
    assert lines == ["a.wav: symlink loop: its links lead back to each other, never to a file",
                     "b.wav: symlink loop: its links lead back to each other, never to a file",
                     "gone: broken symlink: missing does not exist"]


def test_names_are_shown_on_one_printable_line():
    assert shown(os.fsdecode(b"/x/caf\xe9.wav")) == "/x/caf\\xe9.wav"
    assert shown("/x/two\nlines\t.wav") == "/x/two\\nlines\\t.wav"
    assert shown("/x/café.wav") == "/x/café.wav"
