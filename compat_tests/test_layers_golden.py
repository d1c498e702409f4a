"""Every golden single-layer case (golden/layers) through caffe.Net."""
import pytest
from golden_cases import case_names, run_layer_case


@pytest.mark.parametrize("name", case_names("layers"))
def test_golden_layer(name):
    run_layer_case(name)
