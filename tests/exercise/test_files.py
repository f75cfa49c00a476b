"""start writes a file to fill in and never overwrites one; list reads the record."""
import pytest

from npformer.exercise import EXERCISES, VARIANT_IDS, ExerciseError, files
from npformer.exercise.catalog import slug


@pytest.mark.parametrize("exercise_id", [i for i, e in EXERCISES.items() if e.kind != "train"] + list(VARIANT_IDS))
def test_start_writes_the_signatures_and_a_body_that_raises(tmp_path, exercise_id):
    path = files.start(exercise_id, str(tmp_path))
    text = open(path).read()
    module = files.load(exercise_id, str(tmp_path))
    names = EXERCISES[exercise_id].functions if exercise_id in EXERCISES else [f"{exercise_id}_backward"]
    for name in names:
        assert f"def {name}(" in text and callable(getattr(module, name))
        with pytest.raises(NotImplementedError):
            getattr(module, name)(None, None) if exercise_id != "positional" else module.sinusoidal_table(4, 4, None)
    assert files.status(exercise_id, str(tmp_path)) == "not started"


def test_start_never_overwrites_without_force(tmp_path):
    path = files.start("relu", str(tmp_path))
    with open(path, "a") as f:
        f.write("# my work\n")
    with pytest.raises(ExerciseError, match="exists: your work is kept"):
        files.start("relu", str(tmp_path))
    assert open(path).read().endswith("# my work\n")
    files.start("relu", str(tmp_path), force=True)
    assert not open(path).read().endswith("# my work\n")


def test_a_malformed_file_is_one_clear_error(tmp_path):
    with open(files.path_of("relu", str(tmp_path)), "w") as f:
        f.write("def relu_backward(dy, cache)\n    return dy\n")
    with pytest.raises(ExerciseError, match=r"relu.py:1: syntax error"):
        files.load("relu", str(tmp_path))
    with pytest.raises(ExerciseError, match="no such file"):
        files.load("softmax", str(tmp_path))


def test_status_follows_the_record_and_the_files_hash(tmp_path):
    d = str(tmp_path)
    with open(files.path_of("relu", d), "w") as f:
        f.write("def relu_backward(dy, cache):\n    return dy * cache.positive\n")
    assert files.status("relu", d) == "changed"
    files.record(d, "relu", "passed")
    assert files.status("relu", d) == "passing" and files.passed(d) == ["relu"]
    with open(files.path_of("relu", d), "a") as f:
        f.write("\n")
    assert files.status("relu", d) == "changed" and files.passed(d) == []


def test_every_section_an_exercise_cites_is_a_heading_of_derivations_md():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "docs" / "derivations.md").read_text()
    anchors = {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    for ex in EXERCISES.values():
        assert slug(ex.section) in anchors, (ex.id, ex.section)
