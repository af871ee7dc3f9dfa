"""core.files.shared_load: one object per unchanged file while something holds it."""
import gc
import os

from comfyui_infuse.core.files import shared_load


class Loaded:
    def __init__(self, path):
        self.text = open(path).read()


def test_same_file_same_object_while_held_and_a_changed_file_is_read_again(tmp_path):
    path = tmp_path / "encoder.pt"
    path.write_text("a")
    first = shared_load(str(path), Loaded)
    assert shared_load(str(path), Loaded) is first
    path.write_text("bb")
    os.utime(path, ns=(1, 1))
    changed = shared_load(str(path), Loaded)
    assert changed is not first and changed.text == "bb"


def test_nothing_is_kept_once_nothing_holds_it(tmp_path):
    path = tmp_path / "encoder.pt"
    path.write_text("a")
    first_id = id(shared_load(str(path), Loaded))
    gc.collect()
    again = shared_load(str(path), Loaded)
    assert again.text == "a" and len([o for o in gc.get_objects() if isinstance(o, Loaded)]) == 1, first_id
