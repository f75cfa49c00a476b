"""The train exercise: the learner's passed ops in a short run of the tiny model."""
from npformer.exercise import check_train, files
from npformer.exercise.mistakes import MISTAKES


def test_with_every_passed_op_the_references_the_losses_equal_the_reference_run(tmp_path):
    d = str(tmp_path)
    for i in ("layernorm", "softmax", "attention", "cross_entropy", "embedding"):
        with open(files.path_of(i, d), "w") as f:
            f.write(files.reference_text(i))
        files.record(d, i, "passed")
    assert files.passed(d) == ["softmax", "layernorm", "embedding", "attention", "cross_entropy"]
    report = check_train(d, quiet=True, steps=3)
    assert report.passed, str(report)
    assert [r[3] for r in report.rows] == [0.0, 0.0, 0.0]
    assert "layernorm_backward" in report.notes[0]


def test_a_wrong_op_in_training_shows_in_the_losses():
    wrong = MISTAKES["layernorm"][0].functions  # gamma dropped: the run drifts once gamma moves from 1
    report = check_train("unused", functions={"layernorm": wrong}, quiet=True, steps=4)
    assert not report.passed and report.findings[0].tag == "train"
