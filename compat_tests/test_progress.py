"""Progress bars: tqdm on a terminal, nothing when piped; ``caffe train``'s bar
counts the iterations between display lines."""
import io

import caffe
from caffe import _common, _progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def _solver(tmp_path, display):
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "d" type: "DummyData" top: "x" top: "y" '
                   'dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 1 } } }'
                   'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" '
                   'inner_product_param { num_output: 1 } }'
                   'layer { name: "l" type: "EuclideanLoss" bottom: "ip" bottom: "y" '
                   'top: "l" }')
    s = tmp_path / "solver.prototxt"
    s.write_text('net: "%s" base_lr: 0.01 lr_policy: "fixed" max_iter: 7 display: %d '
                 'snapshot_after_train: false' % (net, display))
    return caffe.get_solver(str(s))


def test_training_bar_between_display_lines(tmp_path):
    solver = _solver(tmp_path, display=5)
    stream = _Tty()
    seen = []
    with _progress.TrainingBar(solver, file=stream) as tb:
        assert not tb.bar.disable and tb.bar.total == 5
        solver.add_callback(lambda: None, lambda: seen.append(tb.bar.n))
        solver.step(7)
    # on_gradients_ready of iterations 0..6: the bar restarts after each display line
    assert seen == [1, 2, 3, 4, 5, 1, 2]
    assert "Iteration 5" in stream.getvalue()
    assert _common._log_state["line_writer"] is None


def test_training_bar_disabled_when_piped(tmp_path):
    solver = _solver(tmp_path, display=0)
    stream = io.StringIO()
    with _progress.TrainingBar(solver, file=stream) as tb:
        assert tb.bar.disable and tb.every == 7
        solver.step(2)
    assert stream.getvalue() == ""


def test_tools_bar_is_tqdm_and_off_when_piped(capsys):
    from caffe.tools import progress
    bar = progress(3, "convert_imageset")
    bar.update(3)
    bar.close()
    assert bar.disable                      # pytest's captured stderr is not a terminal
    assert capsys.readouterr().err == ""
